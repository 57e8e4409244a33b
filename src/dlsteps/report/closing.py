"""The end of a run in words, for the console and the top of ``report.html``: which stage
failed and what to try, or that every stage passed and what to try next.

A pure function of ``summary.json`` (its ``ladder``, or the standard one for runs written
before the summary named it), so ``dlsteps report`` words an old run the same way.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from dlsteps.judge.diagnoses import CATALOG, hint
from dlsteps.ladder.stages import GENERATIVE_LADDER, STAGES, STANDARD_LADDER, Stage

FAILED = ("failed", "error")


@dataclass(frozen=True)
class Closing:
    passed: bool
    headline: str  # the failed stage and what its first diagnosis saw, or "every stage passed"
    next: str | None = None  # passed: the next thing to try, in words
    command: str | None = None  # passed: the command that does it
    stage: str | None = None  # failed: the stage, for a link to its section
    code: str | None = None  # failed: its first failing diagnosis (CATALOG has the advice)
    also: list[str] = field(default_factory=list)  # failed: further diagnoses and stages

    @property
    def first_try(self) -> str | None:
        return CATALOG[self.code].first_try if self.code in CATALOG else None


def closing(summary: dict[str, Any]) -> Closing | None:
    """``None`` when there is nothing to conclude: an interrupted or pruned run, or one
    that is still running."""
    entries = summary.get("stages", [])
    statuses = {e["status"] for e in entries}
    if failed := next((e for e in entries if e["status"] in FAILED), None):
        return _failure(failed, [e["name"] for e in entries if e["status"] in FAILED][1:])
    if not entries or not statuses <= {"passed", "skipped"}:
        return None
    passed = [e["name"] for e in entries if e["status"] == "passed"]
    headline = f"every stage passed: {', '.join(passed)}"
    skipped = [e for e in entries if e["status"] == "skipped"]
    if skipped:
        headline += f" ({', '.join(e['name'] for e in skipped)} skipped)"
    what, command = _next(summary, entries)
    return Closing(True, headline, next=what, command=command)


def _failure(entry: dict[str, Any], others: list[str]) -> Closing:
    name, status = entry["name"], entry["status"]
    fails = [d for d in entry.get("diagnoses", []) if d.get("severity", "fail") == "fail"]
    also = []
    code = None
    if fails:
        first = fails[0]
        code = first["code"]
        step = f" at step {first['step']}" if first.get("step") is not None else ""
        seen = first["message"]
        if code in CATALOG:  # the advice is said on its own line: not twice
            seen = seen.removesuffix(hint(code)).rstrip()
        headline = f"{name} {status}: {code}{step}: {seen}"
        if len(fails) > 1:
            also.append("also: " + ", ".join(d["code"] for d in fails[1:]))
    else:
        headline = f"{name} {status}: {entry.get('error') or 'see the stage above'}"
    if others:
        also.append(f"failed as well: {', '.join(others)}")
    return Closing(False, headline, stage=name, code=code, also=also)


def _next(summary: dict[str, Any], entries: Sequence[dict[str, Any]]) -> tuple[str, str]:
    """The next thing to try after a clean climb, and its command: the stage after the last
    one run, a skipped stage to configure, or, at the top, the user's own project."""
    ladder = _ladder(summary, entries)
    names = [s.name for s in ladder]
    ran = [e["name"] for e in entries if e["name"] in names]
    run_dir = summary.get("run_dir", "RUN_DIR")
    last = max((names.index(n) for n in ran), default=-1)
    if last + 1 < len(names):
        upcoming = ladder[last + 1]
        what = re.sub(r"`\w+` ", "", upcoming.summary)  # "`samples` train samples": a knob
        return (
            f"next: the {upcoming.name} stage ({what}), in this run:",
            f"dlsteps stage {upcoming.name} --run-dir {run_dir}",
        )
    skipped = [STAGES[e["name"]] for e in entries if e["status"] == "skipped"]
    if skipped and skipped[-1].unconfigured:
        stage = skipped[-1]
        setting = stage.unconfigured.removeprefix("not configured: ").removesuffix(" to run it")
        return (
            f"next: {setting} in the config, then:",
            f"dlsteps stage {stage.name} --run-dir {run_dir}",
        )
    return (
        "next: the whole ladder is climbed. Bring your own data and model (dlsteps init DIR "
        "writes a starter project that passes), or compare variants:",
        f"dlsteps ablate {_config(summary)} --grid optim.lr=1e-2,1e-3",
    )


def _config(summary: dict[str, Any]) -> str:
    config = summary.get("config")
    return config if config and not config.startswith("<") else "CONFIG"


def _ladder(summary: dict[str, Any], entries: Sequence[dict[str, Any]]) -> Sequence[Stage]:
    if names := summary.get("ladder"):
        return [STAGES[n] for n in names if n in STAGES]
    if any(e["name"] == "adversarial" for e in entries):
        return GENERATIVE_LADDER
    return STANDARD_LADDER
