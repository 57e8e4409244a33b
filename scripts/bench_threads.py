"""Torch threads on a machine that is not yours: the seg ladder's wall time, quiet and next
to one busy process, with several thread settings.

Each measurement is one whole process, as a user runs it:
``dlsteps run configs/seg.yaml --to full-data`` in a fresh run directory. A setting is a
thread count given through ``OMP_NUM_THREADS`` (which dlsteps' ``threads: auto`` leaves
alone, and which torch reads at start) or ``default``: no variable, so the run uses the
code's own default (``threads: auto`` since issue 18; torch's one thread per core before).
"Busy" starts one pure-Python busy loop in another process first (one core's worth of
someone else's work) and stops it after the run.

The settings and conditions alternate within each repeat (the order rotates), so a change
of machine load hits them alike; the table gives medians over the repeats and the ratios
that matter: busy over quiet for the same setting, and each over the default's quiet time.
Beside each figure: the cores other processes used meanwhile (/proc/stat, less this
script's children), which says how quiet "quiet" was.

    .venv/bin/python scripts/bench_threads.py                    # 1, 2 and default; 2 repeats
    .venv/bin/python scripts/bench_threads.py --settings 1,default --repeats 3 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TICK = os.sysconf("SC_CLK_TCK")
BUSY_LOOP = "while True: pass"


@dataclass
class Sample:
    setting: str
    busy: bool
    seconds: float
    code: int
    other_cores: float  # cores used by processes other than the ladder and the busy loop
    threads_line: str  # what the run printed about its threads, if anything


def _machine_busy() -> float:
    """CPU seconds all processes have spent so far (user + system + irq ...)."""
    with open("/proc/stat") as fh:
        fields = [int(v) for v in fh.readline().split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / TICK  # less idle and iowait


def _process_cpu(pid: int) -> float:
    """CPU seconds of a live process (utime + stime)."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def measure(
    command: list[str], setting: str, busy: bool, run_dir: Path, baseline: Path | None
) -> Sample:
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    if setting == "baseline":  # another checkout's code, with its own default threads
        assert baseline is not None
        env["PYTHONPATH"] = str(baseline)
    elif setting != "default":
        env["OMP_NUM_THREADS"] = setting
    loop = subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) if busy else None
    try:
        if loop is not None:
            time.sleep(1.0)  # let it take its core, as a job that was there first
        loop_cpu0 = _process_cpu(loop.pid) if loop else 0.0
        children0 = os.times().children_user + os.times().children_system
        machine0, t0 = _machine_busy(), time.perf_counter()
        proc = subprocess.run(
            [*command, "--run-dir", str(run_dir)],
            env=env,
            cwd=ROOT,  # the config's relative paths
            capture_output=True,
            text=True,
            check=False,
        )
        seconds = time.perf_counter() - t0
        machine = _machine_busy() - machine0
        loop_cpu = _process_cpu(loop.pid) - loop_cpu0 if loop else 0.0
    finally:
        if loop is not None:
            loop.kill()
            loop.wait()
    ladder = os.times().children_user + os.times().children_system - children0 - loop_cpu
    other = max(0.0, machine - ladder - loop_cpu) / seconds
    line = next((ln.strip() for ln in proc.stderr.splitlines() if "thread" in ln.lower()), "")
    if proc.returncode not in (0, 1):
        print(proc.stderr[-2000:], file=sys.stderr)
    return Sample(setting, busy, seconds, proc.returncode, other, line)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default="configs/seg.yaml")
    ap.add_argument("--to", default="full-data")
    ap.add_argument("--settings", default="1,2,default", help="thread counts and/or default")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--json", type=Path, help="also write every sample here")
    ap.add_argument(
        "--baseline",
        type=Path,
        help="the src/ of another checkout (e.g. before a change): adds a setting "
        "'baseline' that runs its code with its own default threads",
    )
    args = ap.parse_args()
    settings = args.settings.split(",") + (["baseline"] if args.baseline else [])
    dlsteps = str(Path(sys.executable).with_name("dlsteps"))
    command = [dlsteps, "run", args.config, "--to", args.to]
    cases = [(s, busy) for s in settings for busy in (False, True)]
    samples: list[Sample] = []
    print(f"{os.cpu_count()} cpus; {' '.join(command)}; {args.repeats} repeats", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            rotated = cases[repeat % len(cases) :] + cases[: repeat % len(cases)]
            for i, (setting, busy) in enumerate(rotated):
                run_dir = Path(tmp) / f"r{repeat}-{i}"
                s = measure(command, setting, busy, run_dir, args.baseline)
                samples.append(s)
                print(
                    f"  repeat {repeat + 1} threads={setting:<8} {'busy ' if busy else 'quiet'} "
                    f"{s.seconds:6.1f} s  exit {s.code}  other cores {s.other_cores:.2f}"
                    + (f"  [{s.threads_line}]" if s.threads_line else ""),
                    flush=True,
                )
    print_table(samples, settings)
    if args.json:
        args.json.write_text(json.dumps([asdict(s) for s in samples], indent=2))


def print_table(samples: list[Sample], settings: list[str]) -> None:
    def median(setting: str, busy: bool, key: str = "seconds") -> float:
        return statistics.median(
            getattr(s, key) for s in samples if s.setting == setting and s.busy == busy
        )

    ref = median("default", False) if "default" in settings else median(settings[0], False)
    print()
    print(
        "| threads | quiet s | busy s | busy / quiet | quiet / default quiet | busy / default "
        "quiet | other cores (quiet, busy) |"
    )
    print("|---|---|---|---|---|---|---|")
    for setting in settings:
        quiet, busy = median(setting, False), median(setting, True)
        others = ", ".join(f"{median(setting, b, 'other_cores'):.2f}" for b in (False, True))
        print(
            f"| {setting} | {quiet:.1f} | {busy:.1f} | {busy / quiet:.2f} | {quiet / ref:.2f} | "
            f"{busy / ref:.2f} | {others} |"
        )


if __name__ == "__main__":
    main()
