"""Metrics, pictures and the report of a real tiny run: what a user looks at after a run."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import TINY_SEG
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

from dlsteps.config import build_config
from dlsteps.ladder.runner import RunOptions, run_ladder
from dlsteps.logbook.curves import read_curves
from dlsteps.report.console import Reporter
from dlsteps.report.html import write_report
from dlsteps.rundir.run import RunDir
from dlsteps.train.engine import Progress

pytestmark = pytest.mark.xdist_group("report")  # one worker builds the shared run once
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
TRAINED = ("overfit-one", "overfit-few", "full-data")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny segmentation ladder up to full-data, metrics every 10 steps, pictures every
    20 (overfit-few kept short, --keep-going: the report shows every stage whatever its
    verdict)."""
    raw = json.loads(json.dumps(TINY_SEG))
    raw["metrics"] = {"every": 10, "images_every": 20, "images": 4}
    raw["stages"] = {
        "overfit-one": {"steps": 150},  # stops early once passed
        "overfit-few": {"samples": 4, "steps": 40},
        "full-data": {"epochs": 3},
    }
    out = tmp_path_factory.mktemp("report") / "run"
    opts = RunOptions(to_stage="full-data", run_dir=out, keep_going=True, quiet=True)
    run_ladder(build_config(raw, "<test>"), opts)
    return out


def _rows(stage_dir: Path, prefix: str) -> list[dict]:
    lines = (stage_dir / "scalars.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["tag"].startswith(prefix)]


@pytest.mark.slow
def test_metrics_are_logged_periodically_and_feed_the_primary_metric(run_dir: Path) -> None:
    summary = json.loads((run_dir / "summary.json").read_text())
    for entry in summary["stages"][1:]:
        stage_dir = run_dir / entry["name"]
        steps = sorted({r["step"] for r in _rows(stage_dir, "metrics/miou")})
        last = entry["figures"]["steps"]
        assert steps == sorted({*range(10, last + 1, 10), last})  # every 10 and at the end
        tags = {r["tag"] for r in _rows(stage_dir, "metrics/")}
        assert {"metrics/miou", "metrics/pixel_accuracy", "metrics/f1", "metrics/iou/0"} <= tags
        primary = entry["figures"]["primary_metric"]
        miou = read_curves(stage_dir)["metrics/miou"]
        assert primary == {"name": "miou", "value": miou.last, "higher_is_better": True}
        saved = json.loads((stage_dir / "metrics.json").read_text())
        assert saved["step"] == last and saved["scalars"]["miou"] == pytest.approx(miou.last)
        # confusion counts every non-ignored val pixel: 16 images of 16 x 16
        assert sum(map(sum, saved["confusion"])) == 16 * 16 * 16
        assert (stage_dir / "samples.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_tensorboard_gets_sample_pictures_and_hparams(run_dir: Path) -> None:
    acc = EventAccumulator(str(run_dir / "full-data"), size_guidance={"images": 0})
    acc.Reload()
    tags = acc.Tags()
    images = acc.Images("samples")
    last = json.loads((run_dir / "full-data" / "verdict.json").read_text())["figures"]["steps"]
    assert [i.step for i in images] == [*range(20, last, 20), last]
    assert images[0].width == 3 * 64 + 4 * 2  # input, target, prediction (16 px -> 64 px)
    hparams = acc.PluginTagToContent("hparams")
    start = HParamsPluginData.FromString(hparams["_hparams_/session_start_info"])
    assert start.session_start_info.hparams["stage"].string_value == "full-data"
    assert start.session_start_info.hparams["lr"].number_value == pytest.approx(0.003)
    experiment = HParamsPluginData.FromString(hparams["_hparams_/experiment"]).experiment
    assert "metrics/miou" in {m.name.tag for m in experiment.metric_infos}
    assert "metrics/miou" in tags["scalars"]


@pytest.mark.slow
def test_report_is_self_contained_and_shows_every_stage(run_dir: Path, cli) -> None:
    result = cli("report", run_dir)
    assert result.code == 0, result.err
    assert "report:" in result.out and "full-data" in result.out
    html = (run_dir / "report.html").read_text()
    for stage in ("preflight", *TRAINED):
        assert f"id='stage-{stage}'" in html
    # nothing fetched from anywhere: no scripts, no links, every image a data URI
    assert "<script" not in html and "<link" not in html
    assert re.findall(r"src='([a-z]+):", html) == ["data"] * html.count("src='")
    assert "default-src 'none'" in html
    assert html.count('<svg class="plot"') >= 3 * len(TRAINED)
    assert "gate: train ≤ 0.01" in html  # the overfit gate threshold drawn on the loss plot
    assert "confusion matrix" in html and "seconds per batch" in html


@pytest.mark.slow
def test_report_rejudges_from_the_logbook(run_dir: Path, tmp_path: Path, cli) -> None:
    recorded = json.loads((run_dir / "summary.json").read_text())
    assert recorded["stages"][1]["status"] == "passed"
    summary, _, notes = write_report(RunDir(run_dir))
    assert [s["status"] for s in summary["stages"]] == [s["status"] for s in recorded["stages"]]
    assert not notes
    # the same curves judged with an impossible overfit threshold must now fail
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    config = yaml.safe_load((copy / "config.yaml").read_text())
    config["stages"]["overfit-one"]["gate"]["train_loss_below"] = 1e-12
    (copy / "config.yaml").write_text(yaml.safe_dump(config))
    result = cli("report", copy)
    assert result.code == 0
    assert "overfit-one: re-judged from its logbook as failed" in result.out
    summary = json.loads(json.dumps(write_report(RunDir(copy))[0]))
    overfit = summary["stages"][1]
    assert overfit["status"] == "failed"
    # (still falling when the gate's own early stop ended it: still_improving since issue 13)
    codes = {d["code"] for d in overfit["diagnoses"]}
    assert codes & {"loss_plateau", "loss_not_decreasing", "still_improving"}
    assert "recorded as" in (copy / "report.html").read_text()


def test_report_of_a_directory_without_a_run_exits_2(cli, tmp_path: Path) -> None:
    result = cli("report", tmp_path)
    assert result.code == 2
    assert "no summary.json" in " ".join(result.err.split())  # rich wraps long lines


def test_plain_progress_lines_show_an_eta(capsys: pytest.CaptureFixture[str]) -> None:
    reporter = Reporter()  # stderr is captured, not a terminal: plain lines
    assert not reporter.live
    reporter.every = 10
    reporter.stage_started("full-data", 40, [])
    for step in (10, 20):
        reporter.progress(Progress(step, 40, 0.5, 0.6, elapsed=step * 0.5))
    err = capsys.readouterr().err
    assert "step 20/40  train 0.5000  val 0.6000  10.0s  eta 0:10" in err
    quiet = Reporter(quiet=True)
    quiet.stage_started("full-data", 40, [])
    quiet.progress(Progress(10, 40, 0.5, None, elapsed=1.0))
    assert capsys.readouterr().err == ""


CHECK = """<script nonce="test">
window.addEventListener("load", () => {
  const plots = [...document.querySelectorAll("svg.plot")].map(s => {
    const marks = [...s.querySelectorAll("polyline, circle")];  // lines, and dots of short ones
    return {title: s.querySelector("title").textContent, width: s.getBoundingClientRect().width,
            drawn: marks.filter(m => m.getBBox().width > 0).length};
  });
  const images = [...document.querySelectorAll("img")].map(i => i.complete && i.naturalWidth);
  document.body.setAttribute("data-check", JSON.stringify({plots, images}));
});
</script></body>"""


@pytest.mark.slow
@pytest.mark.skipif(
    CHROMIUM is None,
    reason="Chromium not installed (apt-get install chromium; .ci/run installs it in CI)",
)
def test_report_renders_in_headless_chromium_without_console_errors(
    run_dir: Path, tmp_path: Path
) -> None:
    html = (write_report(RunDir(run_dir))[1]).read_text()  # this test's own report, not another's
    # the page plus a measuring script, allowed by nonce; the page's own policy stays on
    page = tmp_path / "check.html"
    page.write_text(
        html.replace("default-src 'none';", "default-src 'none'; script-src 'nonce-test';").replace(
            "</body>", CHECK
        )
    )
    proc = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=5000",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    console = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]
    assert console == [], console
    found = re.search(r'data-check="([^"]*)"', proc.stdout)
    assert found, f"page did not load: {proc.stderr[-2000:]}"
    check = json.loads(found.group(1).replace("&quot;", '"'))
    assert len(check["plots"]) == html.count('<svg class="plot"')
    for plot in check["plots"]:
        assert plot["width"] > 100
        assert plot["drawn"] >= 1, plot  # at least one curve or dot has an extent on screen
    # per trained stage its first train batch and its sample predictions; full-data's
    # highest-loss val samples too
    assert len(check["images"]) == 2 * len(TRAINED) + 1
    assert all(w > 0 for w in check["images"])
