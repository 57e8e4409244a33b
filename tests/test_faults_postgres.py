"""A study shared by machines, on a real PostgreSQL server: two ``--join`` workers on one
grid study, one killed with ``kill -9`` mid-trial. The study finishes, every grid point is
run to its end by exactly one worker, the killed trial is failed (its heartbeat stopped)
and re-run, and the leaderboard holds no grid point twice.

The server comes from the system's packages (``make postgres`` installs them; ``.ci/run``
calls it): ``initdb`` into a temporary folder, started on a free local port. Where no
server can start (no packages, no driver) the test is skipped with the reason.
"""

from __future__ import annotations

import csv
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

LRS = ("0.003", "0.001", "0.0003")
HEARTBEAT = 1  # seconds: a silent worker's trial is failed after three


def _pg_bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    """A running server's URL for a fresh database, or a skip with the reason."""
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if initdb is None or pg_ctl is None:
        pytest.skip("PostgreSQL is not installed (make postgres installs it)")
    try:
        import psycopg
    except ImportError:
        pytest.skip("psycopg is not installed (pip install -e '.[postgres]')")
    # not under pytest's folder: its parents are private to this user, the server's differs
    base = Path(tempfile.mkdtemp(prefix="dlsteps-pg-"))
    data, sockets = base / "data", base / "sock"
    sockets.mkdir()
    as_user: list[str] = []
    if os.geteuid() == 0:  # the server refuses to run as root
        if shutil.which("runuser") is None:
            pytest.skip("running as root without runuser: cannot start PostgreSQL")
        as_user = ["runuser", "-u", "postgres", "--"]
        shutil.chown(base, "postgres")
        shutil.chown(sockets, "postgres")
    port = _free_port()
    init = subprocess.run(
        [*as_user, initdb, "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"],
        capture_output=True,
        text=True,
    )
    if init.returncode != 0:
        pytest.skip(f"initdb failed: {init.stderr.strip()[-300:]}")
    options = f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off"
    start = subprocess.run(
        [*as_user, pg_ctl, "-D", str(data), "-o", options, "-l", str(base / "log"), "-w", "start"],
        capture_output=True,
        text=True,
    )
    if start.returncode != 0:
        pytest.skip(f"the server did not start: {start.stderr.strip()[-300:]}")
    try:
        dsn = f"host=127.0.0.1 port={port} user=postgres dbname=postgres"
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE DATABASE ablate")
        yield f"postgresql://postgres@127.0.0.1:{port}/ablate"
    finally:
        subprocess.run([*as_user, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], check=False)
        shutil.rmtree(base, ignore_errors=True)


def _dlsteps(*args: object, cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DLSTEPS_HEARTBEAT_SECONDS": str(HEARTBEAT)}
    return subprocess.Popen(
        [sys.executable, "-m", "dlsteps", *map(str, args)],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


@pytest.mark.slow
def test_two_workers_on_postgres_one_killed_mid_trial_finish_every_point_once(
    postgres: str, tmp_path: Path
) -> None:
    import optuna
    from optuna.trial import TrialState

    from dlsteps.ablate.study import with_driver

    config = {
        "name": "pg",
        "task": "segmentation",
        "device": "cpu",
        "data": {"name": "shapes", "args": {"num_train": 32, "num_val": 8, "size": 16}},
        "model": {"name": "tiny_unet", "args": {"width": 4}},
        "log": {"flush_every": 1},
        "stages": {"full-data": {"steps": 60, "gate": {"max_batch_seconds": 10.0}}},
    }
    config["data"]["batch_size"] = 8
    (tmp_path / "pg.yaml").write_text(yaml.safe_dump(config))
    out = tmp_path / "abl"
    grid = ["--grid", f"optim.lr={','.join(LRS)}", "--stage", "full-data", "--no-prune"]
    common = ["--storage", postgres]
    create = _dlsteps(
        "ablate", "pg.yaml", *grid, *common, "--study", "pg", "--parallel", "0", "--dir", out,
        cwd=tmp_path,
    )  # fmt: skip
    _, err = create.communicate(timeout=120)
    assert create.returncode == 0, err.decode()

    victim = _dlsteps("ablate", "--join", "pg", *common, cwd=tmp_path)
    storage = optuna.storages.RDBStorage(with_driver(postgres))
    deadline = time.monotonic() + 120
    killed = None
    while killed is None and time.monotonic() < deadline:  # the victim's first trial, mid-way
        for t in optuna.load_study(study_name="pg", storage=storage).get_trials(deepcopy=False):
            log = Path(t.user_attrs.get("run_dir", "/nonexistent")) / "full-data/scalars.jsonl"
            if (
                t.state == TrialState.RUNNING
                and t.user_attrs.get("pid") == victim.pid
                and log.exists()
                and '"step": 5, "tag": "train/loss"' in log.read_text()
            ):
                killed = t.number
        assert victim.poll() is None, victim.stderr.read().decode()
        time.sleep(0.1)
    assert killed is not None, "the victim never got mid-way into a trial"
    survivor = _dlsteps("ablate", "--join", "pg", *common, cwd=tmp_path)
    time.sleep(0.5)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    _, err = survivor.communicate(timeout=300)
    assert survivor.returncode == 0, err.decode()[-3000:]

    trials = optuna.load_study(study_name="pg", storage=storage).get_trials()
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    assert sorted(t.params["optim.lr"] for t in done) == sorted(map(float, LRS)), (
        "every grid point run to its end exactly once"
    )
    assert all(t.user_attrs["pid"] == survivor.pid for t in done if t.number != killed)
    dead = trials[killed]
    assert dead.state == TrialState.FAIL and "no heartbeat" in dead.user_attrs["interrupted"]
    (retry,) = [t for t in trials if t.system_attrs.get("failed_trial") == killed]
    assert retry.state == TrialState.COMPLETE and retry.params == dead.params
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]

    with (out / "leaderboard.csv").open() as fh:
        board = list(csv.DictReader(fh))
    finished = [r for r in board if r["state"] == "complete"]
    assert sorted(float(r["optim.lr"]) for r in finished) == sorted(map(float, LRS))
    assert len({r["trial"] for r in board}) == len(board), "a trial listed twice"
    assert json.loads((out / "ablate.json").read_text())["study"] == "pg"
