"""What a stage ends with: a status, its diagnoses and its key figures."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from dlsteps.judge.diagnoses import Diagnosis
from dlsteps.logbook.curves import Curves


@dataclass
class Verdict:
    status: str  # passed | failed | skipped | pruned
    diagnoses: list[Diagnosis] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Verdict:
        """A stage entry of ``summary.json`` or a ``verdict.json``, read back."""
        return cls(
            data["status"],
            [Diagnosis.from_json(d) for d in data.get("diagnoses", [])],
            dict(data.get("figures", {})),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "diagnoses": [d.to_json() for d in self.diagnoses],
            "figures": self.figures,
        }


def verdict_of(found: list[Diagnosis], figures: dict[str, Any]) -> Verdict:
    """Failed when any finding has severity ``fail``; warnings never fail a stage."""
    status = "failed" if any(d.severity == "fail" for d in found) else "passed"
    return Verdict(status, found, figures)


def threshold(tag: str, op: str, level: float, label: str) -> dict[str, Any]:
    """One level a gate applied to a logged curve (``figures["thresholds"]``): the report
    draws exactly this line, so the picture and the verdict cannot disagree.

    ``tag`` is the curve it applies to (``train/loss``, ``val/loss``, ``metrics/miou``),
    ``op`` how the curve must compare with it (``<=``, ``<``, ``>=``)."""
    return {"tag": tag, "op": op, "level": float(level), "label": label}


@dataclass(frozen=True)
class Primary:
    """The metric the augment and scale-up gates compare (a task's, or ``metrics.primary``)."""

    name: str
    higher_is_better: bool

    def figure(self, value: float) -> dict[str, Any]:
        """The ``primary_metric`` entry of a verdict's figures (a contract)."""
        return {"name": self.name, "value": value, "higher_is_better": self.higher_is_better}

    def from_curves(self, curves: Curves) -> dict[str, Any] | None:
        """The figure from the stage's last ``metrics/<name>`` row (the stage-end pass), so
        a run and a later ``dlsteps report`` of it agree; None when it was never logged."""
        curve = curves.get_curve(f"metrics/{self.name}")
        return self.figure(curve.last) if len(curve) else None
