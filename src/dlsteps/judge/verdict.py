"""What a stage ends with: a status, its diagnoses and its key figures."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
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


@dataclass
class Findings:
    """What a stage found beyond its curves, by checks that needed the model: diagnoses of
    their own (an optimizer step that changed nothing) and details that complete a curve
    rule's diagnosis of the same code (where a NaN was born; the learning rates tried).
    Saved beside the logbook (``findings.json``), so a re-judge sees them too."""

    diagnoses: list[Diagnosis] = field(default_factory=list)
    details: dict[str, str] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.diagnoses or self.details)

    def to_json(self) -> dict[str, Any]:
        return {"diagnoses": [d.to_json() for d in self.diagnoses], "details": self.details}

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> Findings:
        if not data:
            return cls()
        return cls(
            [Diagnosis.from_json(d) for d in data.get("diagnoses", [])],
            dict(data.get("details", {})),
        )

    def applied(self, verdict: Verdict) -> Verdict:
        """``verdict`` with the findings' diagnoses first (they name causes) and each
        detail appended to the diagnosis of its code; its status follows."""
        detailed = [
            replace(d, message=f"{d.message} {self.details[d.code]}")
            if d.code in self.details
            else d
            for d in verdict.diagnoses
        ]
        judged = verdict_of([*self.diagnoses, *detailed], verdict.figures)
        return judged if verdict.status in ("passed", "failed") else verdict


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
