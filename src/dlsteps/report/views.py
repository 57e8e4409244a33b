"""A run as the report shows it: every judged training stage re-judged from its logbook.

The gates are pure functions of logged curves, so the verdict is computed again from
``<stage>/scalars.jsonl`` and the gate settings in the run's ``config.yaml``, through the
same ``Stage.judge`` the run used: a report of an old run shows the verdict its curves
earn, and says where that differs from the one recorded in ``summary.json``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dlsteps.config import LoadedConfig, StagePlan, load_config
from dlsteps.errors import ConfigError
from dlsteps.judge.verdict import Findings, Verdict
from dlsteps.ladder.stages import STAGES
from dlsteps.logbook.curves import Curves
from dlsteps.rundir.run import RunDir, overall_status
from dlsteps.tasks import make_task


@dataclass
class StageView:
    """One stage as the report shows it: the (re-judged) summary entry and its curves."""

    entry: dict[str, Any]
    curves: Curves
    plan: StagePlan | None
    recorded_status: str


def rejudge(run: RunDir) -> tuple[dict[str, Any], list[StageView], list[str]]:
    """The summary with every judged training stage's verdict computed again from its
    logbook; also the per-stage views and notes on what could not be re-judged."""
    summary = run.read_summary()
    notes: list[str] = []
    loaded = _load_run_config(run, notes)
    history: dict[str, Verdict] = {}
    views = []
    for recorded in summary.get("stages", []):
        name = recorded["name"]
        entry = dict(recorded)
        curves = run.stage(name).curves()
        plan = loaded.plans.get(name) if loaded else None
        view = StageView(entry, curves, plan, recorded["status"])
        stage = STAGES.get(name)
        judged = recorded["status"] in ("passed", "failed")
        if plan is not None and stage is not None and stage.gate is not None and judged:
            cfg = plan.config
            primary = make_task(cfg).primary(cfg.metrics.primary)
            findings = Findings.from_json(run.stage(name).read_findings())
            verdict = stage.judge(curves, plan.knobs.gate, history, primary, findings)
            entry.update(
                status=verdict.status,
                diagnoses=[d.to_json() for d in verdict.diagnoses],
                figures={**recorded.get("figures", {}), **verdict.figures},
            )
            if verdict.status != recorded["status"]:
                notes.append(
                    f"{name}: re-judged from its logbook as {verdict.status}; the run "
                    f"recorded {recorded['status']}"
                )
        history[name] = Verdict.from_json(entry)
        views.append(view)
    summary = {**summary, "stages": [v.entry for v in views]}
    if summary.get("status") in ("passed", "failed", "pruned"):
        summary["status"] = overall_status(v.entry["status"] for v in views)
    return summary, views, notes


def _load_run_config(run: RunDir, notes: list[str]) -> LoadedConfig | None:
    try:
        return load_config(run.config_yaml)
    except ConfigError as exc:
        notes.append(f"recorded verdicts shown as they are: cannot read {run.config_yaml} ({exc})")
        return None
