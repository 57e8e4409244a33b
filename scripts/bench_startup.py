"""How fast the command line answers: ``dlsteps --help``, ``--version`` and
``dlsteps check configs/seg.yaml`` (the first verdict) against ``import torch`` alone,
each a fresh process, measured in the same run.

``import torch`` is the floor every torch command pays; the target is ``check`` within
about a second of it. The commands alternate within each repeat (the order rotates), so a
change of machine load hits them alike; the table gives medians and [min, max], and
``check - torch``, the part dlsteps itself adds (reading the config, the data pass,
preflight's probes, writing the run directory and report). "First line" is when
``check`` printed its first line on stderr: before torch has finished importing.

    .venv/bin/python scripts/bench_startup.py              # 5 repeats
    .venv/bin/python scripts/bench_startup.py --repeats 9
    .venv/bin/python scripts/bench_startup.py --baseline /path/to/other/checkout/src

Where ``check`` spends its time: ``python -X importtime -m dlsteps check ...`` (imports)
and ``python -m cProfile -s cumulative -m dlsteps check ...`` (everything).
"""

from __future__ import annotations

import argparse
import os
import selectors
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def timed(command: list[str], env: dict[str, str]) -> tuple[float, float | None, int]:
    """Wall seconds of ``command``, seconds until its first stderr line, its exit code."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env
    )
    assert proc.stderr is not None
    first = None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stderr, selectors.EVENT_READ)
        while True:
            sel.select()
            chunk = proc.stderr.read1(65536)  # type: ignore[attr-defined]
            if not chunk:
                break
            if first is None and b"\n" in chunk:
                first = time.perf_counter() - t0
    code = proc.wait()
    return time.perf_counter() - t0, first, code


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default="configs/seg.yaml")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument(
        "--baseline",
        type=Path,
        help="the src/ of another checkout (e.g. before a change): its check is timed too",
    )
    args = ap.parse_args()
    python = sys.executable
    dlsteps = str(Path(python).with_name("dlsteps"))
    with tempfile.TemporaryDirectory() as tmp:
        runs = iter(range(10**6))
        commands = {
            "import torch": lambda: [python, "-c", "import torch"],
            "dlsteps --help": lambda: [dlsteps, "--help"],
            "dlsteps --version": lambda: [dlsteps, "--version"],
            f"dlsteps check {args.config}": lambda: [
                dlsteps,
                "check",
                args.config,
                "--run-dir",
                f"{tmp}/run{next(runs)}",
            ],
        }
        envs = {name: dict(os.environ) for name in commands}
        if args.baseline:  # the same commands on the other checkout's code
            for own in ("dlsteps --help", f"dlsteps check {args.config}"):
                commands[f"baseline: {own}"] = commands[own]
                envs[f"baseline: {own}"] = {**os.environ, "PYTHONPATH": str(args.baseline)}
        names = list(commands)
        wall: dict[str, list[float]] = {n: [] for n in names}
        failed: dict[str, int] = {}  # e.g. --version of a checkout that predates it
        first_line: list[float] = []
        baseline_first: list[float] = []
        for repeat in range(args.repeats):
            for name in names[repeat % len(names) :] + names[: repeat % len(names)]:
                if name in failed:
                    continue
                seconds, first, code = timed(commands[name](), envs[name])
                if code != 0:
                    failed[name] = code
                    continue
                wall[name].append(seconds)
                if name.startswith("dlsteps check") and first is not None:
                    first_line.append(first)
                if name.startswith("baseline: dlsteps check") and first is not None:
                    baseline_first.append(first)
    check, torch = names[3], names[0]
    if check in failed or torch in failed:
        sys.exit(f"exited non-zero: {failed}")
    print(f"{args.repeats} repeats, {os.cpu_count()} cpus, load average {os.getloadavg()[0]:.2f}")
    print("| command | wall s, median [min, max] |")
    print("|---|---|")
    for name in names:
        shown = f"exited {failed[name]}" if name in failed else _span(wall[name])
        print(f"| `{name}` | {shown} |")
    if first_line:
        print(f"| `{check}`: its first line | {_span(first_line)} |")
    if baseline_first:
        print(f"| `{names[5]}`: its first line | {_span(baseline_first)} |")
    for name in (check, *names[5:]):
        diffs = [c - t for c, t in zip(wall[name], wall[torch], strict=True)]
        label = name.replace("dlsteps ", "").split(" configs")[0]
        print(f"| {label} - import torch (same repeat) | {_span(diffs)} |")


def _span(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} [{min(values):.2f}, {max(values):.2f}]"


if __name__ == "__main__":
    main()
