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

from dlsteps.ladder.stages import GENERATIVE_LADDER, STAGES, STANDARD_LADDER, Stage

FAILED = ("failed", "error")


@dataclass(frozen=True)
class Closing:
    passed: bool
    headline: str  # one sentence: the failed stage and its first diagnosis, or "every stage passed"
    details: list[str] = field(default_factory=list)  # what to try (next)
    stage: str | None = None  # the failed stage, for a link to its section
    code: str | None = None  # its first failing diagnosis code


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
    return Closing(True, headline, [_next(summary, entries)])


def _failure(entry: dict[str, Any], others: list[str]) -> Closing:
    name, status = entry["name"], entry["status"]
    fails = [d for d in entry.get("diagnoses", []) if d.get("severity", "fail") == "fail"]
    details = []
    if fails:
        first = fails[0]
        step = f" at step {first['step']}" if first.get("step") is not None else ""
        headline = f"{name} {status}: {first['code']}{step}: {first['message']}"
        details.append(
            f"dlsteps explain {first['code']}: what it means, the likely causes, what to try"
        )
        if len(fails) > 1:
            details.append("also: " + ", ".join(d["code"] for d in fails[1:]))
        code = first["code"]
    else:
        headline = f"{name} {status}: {entry.get('error') or 'see the stage above'}"
        code = None
    if others:
        details.append(f"failed as well: {', '.join(others)}")
    return Closing(False, headline, details, stage=name, code=code)


def _next(summary: dict[str, Any], entries: Sequence[dict[str, Any]]) -> str:
    """The next thing to try after a clean climb: the stage after the last one run, a
    skipped stage to configure, or, at the top, the user's own project."""
    ladder = _ladder(summary, entries)
    names = [s.name for s in ladder]
    ran = [e["name"] for e in entries if e["name"] in names]
    run_dir = summary.get("run_dir", "RUN_DIR")
    last = max((names.index(n) for n in ran), default=-1)
    if last + 1 < len(names):
        upcoming = ladder[last + 1]
        what = re.sub(r"`\w+` ", "", upcoming.summary)  # "`samples` train samples": a knob
        return f"next: dlsteps stage {upcoming.name} --run-dir {run_dir} ({what})"
    skipped = [STAGES[e["name"]] for e in entries if e["status"] == "skipped"]
    if skipped and skipped[-1].unconfigured:
        stage = skipped[-1]
        setting = stage.unconfigured.removeprefix("not configured: ").removesuffix(" to run it")
        return f"next: {setting}, then dlsteps stage {stage.name} --run-dir {run_dir}"
    return (
        "next: the whole ladder is climbed; bring your own data and model "
        "(dlsteps init DIR writes a starter project), or compare variants with "
        "dlsteps ablate CONFIG --grid optim.lr=1e-2,1e-3"
    )


def _ladder(summary: dict[str, Any], entries: Sequence[dict[str, Any]]) -> Sequence[Stage]:
    if names := summary.get("ladder"):
        return [STAGES[n] for n in names if n in STAGES]
    if any(e["name"] == "adversarial" for e in entries):
        return GENERATIVE_LADDER
    return STANDARD_LADDER
