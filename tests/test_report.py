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
from dlsteps.judge.diagnoses import hint
from dlsteps.ladder.runner import RunOptions, run_ladder
from dlsteps.logbook.curves import read_curves
from dlsteps.report.closing import closing
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
  const box = e => { const r = e.getBoundingClientRect();
                     return {left: r.left, right: r.right, top: r.top, bottom: r.bottom,
                             width: r.width, height: r.height}; };
  const texts = (s, sel) => [...s.querySelectorAll(sel)].map(t => t.textContent);
  const plots = [...document.querySelectorAll("svg.plot")].map(s => {
    const marks = [...s.querySelectorAll("polyline, circle")];  // lines, and dots of short ones
    return {title: s.querySelector("title").textContent, width: box(s).width, box: box(s),
            drawn: marks.filter(m => m.getBBox().width > 0).length,
            yticks: texts(s, ".ytick"), xticks: texts(s, ".xtick"),
            notes: [...s.querySelectorAll(".pnote")].map(n => ({text: n.textContent, box: box(n)})),
            xtickBoxes: [...s.querySelectorAll(".xtick")].map(box)};
  });
  const first = sel => { const e = document.querySelector(sel); return e ? box(e) : null; };
  const images = [...document.querySelectorAll("img")].map(i => i.complete && i.naturalWidth);
  const figures = [...document.querySelectorAll(".figure")].map(box);
  const pruner = [...document.querySelectorAll("svg.pruner")].map(s => ({
    box: box(s), labels: [...s.querySelectorAll(".xlabel, .ylabel")].map(
      t => ({text: t.textContent, box: box(t)})),
    yticks: texts(s, ".ytick"), xticks: texts(s, ".xtick")}));
  const links = [...document.querySelectorAll("td a[href]")].map(a => a.getAttribute("href"));
  document.body.setAttribute("data-check", JSON.stringify({
    plots, images, figures, pruner, links, verdict: first(".verdict"), table: first("table"),
    section: first("section")}));
});
</script></body>"""
NEEDS_CHROMIUM = pytest.mark.skipif(
    CHROMIUM is None,
    reason="Chromium not installed (apt-get install chromium; .ci/run installs it in CI)",
)


def _in_chromium(html: str, page: Path) -> dict:
    """``html`` loaded in headless Chromium with the measuring script (allowed by nonce; the
    page's own policy stays on); what the script measured. No console errors allowed."""
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
            f"--user-data-dir={page.parent / 'profile'}",
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
    return json.loads(found.group(1).replace("&quot;", '"'))


@pytest.mark.slow
@NEEDS_CHROMIUM
def test_report_renders_in_headless_chromium_without_console_errors(
    run_dir: Path, tmp_path: Path
) -> None:
    html = (write_report(RunDir(run_dir))[1]).read_text()  # this test's own report, not another's
    check = _in_chromium(html, tmp_path / "check.html")
    assert len(check["plots"]) == html.count('<svg class="plot"')
    for plot in check["plots"]:
        assert plot["width"] > 100
        assert plot["drawn"] >= 1, plot  # at least one curve or dot has an extent on screen
    # per trained stage its first train batch and its sample predictions; full-data's
    # highest-loss val samples too
    assert len(check["images"]) == 2 * len(TRAINED) + 1
    assert all(w > 0 for w in check["images"])


def _inside(inner: dict, outer: dict) -> bool:
    return (
        inner["width"] > 0
        and inner["left"] >= outer["left"] - 0.5
        and inner["right"] <= outer["right"] + 0.5
        and inner["top"] >= outer["top"] - 0.5
        and inner["bottom"] <= outer["bottom"] + 0.5
    )


def _overlap(a: dict, b: dict) -> bool:
    return not (
        a["right"] <= b["left"]
        or b["right"] <= a["left"]
        or a["bottom"] <= b["top"]
        or b["bottom"] <= a["top"]
    )


@NEEDS_CHROMIUM
def test_a_newcomer_sees_the_failure_first_figures_notes_and_distinct_ticks(
    tmp_path: Path,
) -> None:
    html = write_report(RunDir(synthetic_run(tmp_path, failing=True)))[1].read_text()
    check = _in_chromium(html, tmp_path / "check.html")
    verdict = check["verdict"]
    assert verdict is not None and verdict["height"] > 20
    assert (
        verdict["bottom"] <= check["table"]["top"] and verdict["bottom"] <= check["section"]["top"]
    )
    assert verdict["top"] < 200  # on the first screen, under the title
    assert check["figures"] and all(f["width"] > 100 and f["height"] > 20 for f in check["figures"])
    for plot in check["plots"]:
        assert len(plot["yticks"]) == len(set(plot["yticks"])), plot["yticks"]
        ticks = [t for t in plot["xticks"] if t != "step"]
        assert len(ticks) == len(set(ticks)), ticks
    notes = [(p, n) for p in check["plots"] for n in p["notes"]]
    assert [n["text"][:30] for _, n in notes] == ["a rising val loss is expected:"] * 2
    for plot, note in notes:
        assert _inside(note["box"], plot["box"]), (note, plot["box"])
        assert not any(_overlap(note["box"], tick) for tick in plot["xtickBoxes"])


@NEEDS_CHROMIUM
def test_ablate_html_labels_its_axes_and_links_every_trial(tmp_path: Path) -> None:
    from dlsteps.ablate import results
    from dlsteps.ablate.study import StudySpec

    directory = tmp_path / "ablation"
    board = []
    for n in range(3):
        trial = directory / "trials" / f"{n:03d}"
        trial.mkdir(parents=True)
        (trial / "report.html").write_text("<!doctype html><title>trial</title>")
        curve = {s: 1.0 - 0.1 * n - 0.001 * s for s in (18, 54, 160) if n or s < 60}
        state = "pruned" if n == 0 else "complete"
        board.append(
            results.Row(
                None,
                n,
                state,
                min(curve.values()),
                max(curve),
                None,
                "passed",
                {"optim.lr": 10.0**-n},
                str(trial),
                "",
                curve,
            )
        )
    spec = StudySpec(
        {},
        None,
        "full-data",
        "val/loss",
        False,
        5,
        {"optim.lr": [1, 0.1, 0.01]},
        {},
        "tpe",
        3,
        {"name": "successive_halving"},
        0,
        str(directory),
    )
    results.write_files(directory, board, spec, "study")
    check = _in_chromium((directory / results.HTML).read_text(), directory / "check.html")
    (pruner,) = check["pruner"]
    assert sorted(label["text"] for label in pruner["labels"]) == [
        "best smoothed val/loss",
        "optimizer step",
    ]
    assert all(_inside(label["box"], pruner["box"]) for label in pruner["labels"])
    assert len(pruner["yticks"]) >= 2 and len(set(pruner["yticks"])) == len(pruner["yticks"])
    assert len(check["links"]) == 3
    for href in check["links"]:
        assert (directory / href).resolve().is_file(), href


# --- what a newcomer reads: a synthetic run, curves written by hand ---------------------


def _write_stage(run: Path, name: str, curves: dict[str, list[tuple[int, float]]]) -> None:
    stage = run / name
    stage.mkdir(parents=True)
    rows = [
        json.dumps({"step": step, "tag": tag, "value": value, "time": 0.0})
        for tag, points in curves.items()
        for step, value in points
    ]
    (stage / "scalars.jsonl").write_text("\n".join(rows) + "\n")


def _timings(steps: int) -> dict[str, list[tuple[int, float]]]:
    return {
        "time/data": [(s, 0.001) for s in range(1, steps + 1)],
        "time/compute": [(s, 0.02 + 0.001 * (s % 3)) for s in range(1, steps + 1)],
    }


def synthetic_run(root: Path, failing: bool) -> Path:
    """A run that climbed to overfit-few: overfit-one memorised its sample (val rising),
    overfit-few stalled (``failing``) or passed. The miou was measured once per stage (the
    default ``metrics.every: 0``) and host memory crept up by a fraction of a MB."""
    run = root / ("failed" if failing else "passed")
    run.mkdir(parents=True)
    config = json.loads(json.dumps(TINY_SEG))
    config["stages"] = {"overfit-one": {"steps": 60}, "overfit-few": {"samples": 4, "steps": 60}}
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    one = {
        "train/loss": [(s, 1.2 * 0.88**s) for s in range(1, 61)],
        "val/loss": [(s, 1.0 + s / 60) for s in range(1, 61)],
        "metrics/miou": [(60, 0.21)],
        "mem/host_peak_mb": [(25, 839.05), (50, 839.12), (60, 839.2)],
        **_timings(60),
    }
    few_loss = [(s, 0.9 + 0.01 * (s % 2)) for s in range(1, 61)] if failing else one["train/loss"]
    few = {
        "train/loss": few_loss,
        "val/loss": [(s, 1.1) for s in range(1, 61)],
        "metrics/miou": [(60, 0.25)],
        **_timings(60),
    }
    _write_stage(run, "overfit-one", one)
    _write_stage(run, "overfit-few", few)
    (run / "preflight").mkdir()
    stages = [
        {"name": "preflight", "status": "passed", "diagnoses": [], "figures": {}},
        {"name": "overfit-one", "status": "passed", "seconds": 2.0, "diagnoses": []},
        {"name": "overfit-few", "status": "failed" if failing else "passed", "seconds": 3.0},
    ]
    summary = {
        "status": "failed" if failing else "passed",
        "run_dir": str(run),
        "name": "tiny",
        "selected": ["preflight", "overfit-one", "overfit-few"],
        "stages": stages,
    }
    (run / "summary.json").write_text(json.dumps(summary))
    return run


def _svgs(html: str) -> list[str]:
    return re.findall(r'<svg class="plot".*?</svg>', html, re.DOTALL)


def test_the_report_opens_with_the_failed_stage_and_its_advice(tmp_path: Path) -> None:
    summary, page, _ = write_report(RunDir(synthetic_run(tmp_path, failing=True)))
    html = page.read_text()
    assert summary["stages"][2]["status"] == "failed"
    verdict = html.index("class='verdict failed'")
    assert verdict < html.index("<table") and verdict < html.index("<section")
    top = html[verdict : html.index("</div>", verdict)]
    code = next(d["code"] for d in summary["stages"][2]["diagnoses"] if d["severity"] == "fail")
    assert f"overfit-few failed: {code}" in top
    assert "First thing to try:" in top and "href='#stage-overfit-few'" in top


def test_the_report_of_a_clean_climb_says_so_and_what_comes_next(tmp_path: Path) -> None:
    html = write_report(RunDir(synthetic_run(tmp_path, failing=False)))[1].read_text()
    verdict = html.index("class='verdict passed'")
    top = html[verdict : html.index("</div>", verdict)]
    assert "every stage passed: preflight, overfit-one, overfit-few" in top
    assert "next: the full-data stage (the whole train set;" in top
    assert f"<code>dlsteps stage full-data --run-dir {tmp_path / 'passed'}</code>" in top


def test_a_metric_measured_once_is_a_figure_and_ticks_are_distinct(tmp_path: Path) -> None:
    html = write_report(RunDir(synthetic_run(tmp_path, failing=True)))[1].read_text()
    section = html[html.index("id='stage-overfit-one'") : html.index("id='stage-overfit-few'")]
    assert "<div class='figure'><h3>val metrics (full val set)</h3>" in section
    assert "<th>miou</th><td class='value'>0.21</td><td>at step 60</td>" in section
    assert not any("<title>val metrics" in svg for svg in _svgs(section))
    for svg in _svgs(html):
        for kind in ("ytick", "xtick"):
            labels = re.findall(rf'class="{kind}">([^<]+)</text>', svg)
            ticks = [t for t in labels if t != "step"]
            assert len(ticks) == len(set(ticks)), (kind, ticks)
    memory = next(svg for svg in _svgs(section) if "<title>mem</title>" in svg)
    assert {"839.1", "839.15"} <= set(re.findall(r'class="ytick">([^<]+)<', memory))


def test_the_overfit_loss_chart_says_a_rising_val_loss_is_expected(tmp_path: Path) -> None:
    html = write_report(RunDir(synthetic_run(tmp_path, failing=True)))[1].read_text()
    one = html[html.index("id='stage-overfit-one'") : html.index("id='stage-overfit-few'")]
    loss = next(svg for svg in _svgs(one) if "<title>loss" in svg)
    assert "a rising val loss is expected: 1 train sample memorised," in loss
    few = html[html.index("id='stage-overfit-few'") :]
    assert "4 train samples memorised" in next(s for s in _svgs(few) if "<title>loss" in s)


def test_the_console_says_a_clean_climb_passed_and_names_the_next_step(
    capsys: pytest.CaptureFixture[str],
) -> None:
    entries = [{"name": n, "status": "passed", "seconds": 1.0} for n in TRAINED]
    Reporter().table({"run_dir": "runs/x", "stages": entries})
    err = capsys.readouterr().err
    table_end = err.index("└")
    assert err.index("✓ every stage passed: overfit-one, overfit-few, full-data") > table_end
    assert "next: the augment stage (class weights and train-only augmentation)" in err
    assert "\n    dlsteps stage augment --run-dir runs/x\n" in err


def test_the_console_puts_a_failure_and_its_advice_before_the_table(
    capsys: pytest.CaptureFixture[str],
) -> None:
    tip = hint("input_ignored")  # how every diagnosis message ends
    failed = {
        "name": "overfit-few",
        "status": "failed",
        "diagnoses": [
            {"code": "input_ignored", "severity": "fail", "step": 40, "message": f"seen. {tip}"},
            {"code": "fancy_features", "severity": "warn", "step": None, "message": "w"},
        ],
    }
    Reporter().table(
        {"run_dir": "runs/x", "stages": [{"name": "preflight", "status": "passed"}, failed]}
    )
    err = capsys.readouterr().err
    head = err.index("✗ overfit-few failed: input_ignored at step 40: seen.\n")
    assert err.count("feed two different inputs") == 1  # the advice, said once
    advice = err.index("  try: feed two different inputs")
    assert head < advice < err.index("more: dlsteps explain input_ignored") < err.index("┏")
    assert "every stage passed" not in err


@pytest.mark.parametrize(
    ("statuses", "next_words", "command"),
    [
        ({"preflight": "passed"}, "the overfit-one stage", "dlsteps stage overfit-one --run-dir R"),
        (
            {"augment": "passed", "scale-up": "skipped"},
            "set stages.scale-up (a bigger model",
            "dlsteps stage scale-up --run-dir R",
        ),
        ({"scale-up": "passed"}, "the whole ladder is climbed", "dlsteps ablate c.yaml --grid"),
    ],
)
def test_the_next_thing_to_try_follows_the_ladder(
    statuses: dict[str, str], next_words: str, command: str
) -> None:
    stages = [{"name": n, "status": s} for n, s in statuses.items()]
    end = closing({"run_dir": "R", "config": "c.yaml", "stages": stages})
    assert end is not None and end.passed
    assert next_words in (end.next or "") and (end.command or "").startswith(command)
    assert closing({"stages": [{"name": "full-data", "status": "interrupted"}]}) is None


def test_speed_advice_is_said_once_per_run(capsys: pytest.CaptureFixture[str]) -> None:
    speed = {
        "data_ms": {"median": 0.426, "p90": 0.591},
        "compute_ms": {"median": 30.6, "p90": 54.9},
        "step_ms": {"median": 31.1, "p90": 55.4},
        "bottleneck": "compute",
        "advice": ["compute-bound on the CPU: a smaller model"],
    }
    reporter = Reporter()
    for name in TRAINED:
        reporter.stage_finished({"name": name, "status": "passed", "figures": {"speed": speed}})
    err = capsys.readouterr().err
    assert err.count("speed (median / p90)") == 3  # each stage's own figures
    assert err.count("→ compute-bound on the CPU") == 1  # the same advice: once
    # at 80 columns the figures break between two figures, never inside one
    assert max(map(len, err.splitlines())) <= 80
    assert err.count(" · compute 30.6 / 54.9 ms\n  step 31.1 / 55.4 ms\n") == 3
