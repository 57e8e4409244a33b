"""``RunDir``: the one owner of a run directory's files: every read and every write.

It deals in plain data (the JSON of a summary or a verdict); turning it into objects is
for those who judge (``judge.verdict.Verdict.from_json``).

Whether this process writes at all is decided once, when the ``RunDir`` is made: under
DDP rank 0 owns the directory and the other ranks get a ``RunDir`` that reads but never
writes (their logbooks go to the null sink). Nothing below that point asks for a rank.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import yaml

from dlsteps.errors import StorageError, UserError
from dlsteps.logbook.book import Logbook
from dlsteps.logbook.curves import Curves, kept_lines, read_curves
from dlsteps.rundir import layout, lock
from dlsteps.rundir.atomic import write_bytes, write_json, write_text, write_with

# Stage statuses that end a stage for good: --resume keeps them as they are.
FINISHED = ("passed", "failed", "skipped")


def overall_status(statuses: Iterable[str]) -> str:
    """The run's status from its stages' (a contract of ``summary.json``): any failed
    stage fails the run; otherwise a pruned one (an ablation stopped it) marks it pruned."""
    statuses = list(statuses)
    if "failed" in statuses:
        return "failed"
    return "pruned" if "pruned" in statuses else "passed"


@dataclass(frozen=True)
class StageDir:
    """``<run>/<stage>/``: the stage's logbook, verdict, checkpoint, metrics and pictures."""

    path: Path
    writes: bool

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def checkpoint(self) -> Path:
        return self.path / layout.CHECKPOINT_PT

    @property
    def trace(self) -> Path:
        return self.path / layout.TRACE_DIR

    @property
    def samples_png(self) -> Path:
        return self.path / layout.SAMPLES_PNG

    def create(self) -> None:
        if self.writes:
            self.path.mkdir(parents=True, exist_ok=True)

    # -- the logbook
    def logbook(self, purge_step: int | None = None) -> Logbook:
        """Files in this directory, or the null sink where this process does not write."""
        return Logbook.files(self.path, purge_step) if self.writes else Logbook.null()

    def curves(self) -> Curves:
        return read_curves(self.path)

    def truncate_logbook(self, last_step: int) -> int:
        """Keep only the rows at or before ``last_step`` (a checkpoint's step); returns how
        many were dropped. Rows logged after the checkpoint by a killed run would otherwise
        appear twice once the resumed run logs those steps again; a torn last line goes too.
        TensorBoard is told by opening the next logbook with ``purge_step=last_step + 1``.

        A logbook damaged in the middle, or one that ends before the checkpoint's step
        (rows lost: resuming would leave a gap), is refused, naming the file."""
        found = kept_lines(self.path, last_step)
        if found is None:
            return 0
        path = self.path / layout.SCALARS_JSONL
        redo = (
            f"delete {self.checkpoint} to train {self.name} again from step 0 (its logbook "
            "is cleared), or start a new run"
        )
        if found.damaged:
            lines = ", ".join(map(str, found.damaged[:5]))
            raise UserError(
                f"--resume: {path} is damaged: line {lines} is not a logged row, and rows "
                f"follow it (not a torn last line from a kill); {redo}"
            )
        if 0 < found.last_step < last_step or (last_step > 0 and not found.lines):
            raise UserError(
                f"--resume: {path} ends at step {found.last_step} but the checkpoint is at "
                f"step {last_step}: the logbook was cut short and its rows are lost; {redo}"
            )
        if found.dropped and self.writes:
            write_text(path, "".join(f"{line}\n" for line in found.lines))
        return found.dropped

    def discard_logbook(self) -> None:
        """Remove the logbook (JSONL and event files): a stage restarted from step 0 after a
        crash before its first checkpoint logs every value again."""
        if not self.writes:
            return
        (self.path / layout.SCALARS_JSONL).unlink(missing_ok=True)
        for events in self.path.glob(layout.EVENTS_GLOB):
            events.unlink(missing_ok=True)

    # -- verdict, metrics, pictures, checkpoint
    def write_verdict(self, verdict: Mapping[str, Any], notes: list[str]) -> None:
        """``verdict`` (``Verdict.to_json()``: status, diagnoses, figures) and the notes."""
        if self.writes:
            write_json(
                self.path / layout.VERDICT_JSON, {"name": self.name, **verdict, "notes": notes}
            )

    def read_verdict(self) -> dict[str, Any] | None:
        path = self.path / layout.VERDICT_JSON
        if not path.is_file():
            return None
        return json.loads(path.read_text(encoding="utf-8"))

    def write_findings(self, findings: Mapping[str, Any]) -> None:
        if self.writes:
            write_json(self.path / layout.FINDINGS_JSON, dict(findings))

    def read_findings(self) -> dict[str, Any] | None:
        path = self.path / layout.FINDINGS_JSON
        return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None

    def write_json(self, name: str, payload: Mapping[str, Any]) -> None:
        """One of the stage's other JSON files (``layout``: ``LR_SWEEP_JSON``)."""
        if self.writes:
            write_json(self.path / name, dict(payload))

    def read_json(self, name: str) -> dict[str, Any] | None:
        path = self.path / name
        return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None

    def write_png(self, name: str, png: bytes) -> None:
        """One of the stage's pictures (``layout``: ``BATCH_PNG``, ``WORST_PNG``)."""
        if self.writes:
            write_bytes(self.path / name, png)

    def write_metrics(self, payload: Mapping[str, Any]) -> None:
        if self.writes:
            write_json(self.path / layout.METRICS_JSON, dict(payload))

    def read_metrics(self) -> dict[str, Any] | None:
        path = self.path / layout.METRICS_JSON
        return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None

    def write_samples(self, png: bytes) -> None:
        if self.writes:
            write_bytes(self.samples_png, png)

    def write_text_samples(self, text: str) -> None:
        """A language model's generations (``samples.txt``), the text form of pictures."""
        if self.writes:
            write_bytes(self.path / layout.SAMPLES_TXT, text.encode("utf-8"))

    def save_checkpoint(self, write: Callable[[IO[bytes]], None]) -> None:
        """``write(fh)`` (``torch.save``) into ``checkpoint.pt``, atomically."""
        if self.writes:
            write_with(self.checkpoint, write)


class RunDir:
    """``runs/<name>-<time>/`` or a ``--run-dir``: its config, summary, data statistics,
    report and stage directories."""

    def __init__(self, path: Path, writes: bool = True) -> None:
        self.path, self.writes = Path(path), writes
        self.made_root: Path | None = None  # the runs folder ``new`` created for this run

    def __str__(self) -> str:
        return str(self.path)

    @classmethod
    def new(cls, root: Path, name: str) -> RunDir:
        """``root/<name>-<YYYYmmdd-HHMMSS>``, with a ``-2``, ``-3``... suffix if taken."""
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        base = root / f"{name}-{stamp}"
        if base.parent != root or name in ("", ".", ".."):  # the config's name is checked too
            raise UserError(f"name {name!r}: a run name is one folder name, without / or ..")
        candidate, n, root_existed = base, 1, root.exists()
        while True:
            try:
                candidate.mkdir(parents=True, exist_ok=False)
                made = cls(candidate)
                made.made_root = None if root_existed else root
                return made
            except FileExistsError:
                n += 1
                candidate = base.with_name(f"{base.name}-{n}")
            except OSError as exc:
                raise _unwritable(f"the runs folder {root}", exc) from exc

    @classmethod
    def fresh(cls, path: Path) -> RunDir:
        """A ``--run-dir`` for a new run: it must be missing or empty, never overwritten."""
        if path.exists() and not path.is_dir():
            raise UserError(f"--run-dir {path} is a file, not a folder; choose another path")
        if path.exists() and any(path.iterdir()):
            raise UserError(
                f"--run-dir {path} exists and is not empty; choose another directory, "
                f"or continue it with --resume {path}"
            )
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _unwritable(f"--run-dir {path}", exc) from exc
        return cls(path)

    @classmethod
    def existing(cls, path: Path) -> RunDir:
        """The run directory ``--resume`` names: it must be there."""
        if not path.is_dir():
            what = "is a file, not a run directory" if path.exists() else "does not exist"
            raise UserError(f"--resume {path}: that folder {what}; give the run directory")
        return cls(path)

    @contextlib.contextmanager
    def locked(self, notes: list[str]) -> Iterator[None]:
        """Hold ``run.lock`` while the block writes the directory (``rundir.lock``); a
        stale lock taken over is said in ``notes``. A process that does not write takes none."""
        if not self.writes:
            yield
            return
        with lock.locked(self.path, notes):
            yield

    @property
    def report_html(self) -> Path:
        return self.path / layout.REPORT_HTML

    @property
    def config_yaml(self) -> Path:
        return self.path / layout.CONFIG_YAML

    @property
    def data_stats_json(self) -> Path:
        return self.path / layout.DATA_STATS_JSON

    def discard_unrecorded(self) -> None:
        """Remove a new run's directory when its config failed to build: only the image
        statistics can be in it then (nothing was recorded), and an empty directory
        left in ``runs/`` for every typo would bury the real runs."""
        if not self.writes or self.is_run():
            return
        lock.release(self.path)
        (self.path / layout.IMAGE_STATS_JSON).unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # not empty: something else is in it; leave it
            self.path.rmdir()
            if self.made_root is not None:  # the runs folder made for it, if still empty
                self.made_root.rmdir()

    def is_run(self) -> bool:
        return (self.path / layout.SUMMARY_JSON).is_file()

    def stage(self, name: str) -> StageDir:
        return StageDir(self.path / name, self.writes)

    # -- config and summary
    def write_config(self, resolved: Mapping[str, Any]) -> None:
        if self.writes:
            write_text(self.config_yaml, yaml.safe_dump(dict(resolved), sort_keys=False))

    def write_summary(self, summary: Mapping[str, Any]) -> None:
        if self.writes:
            write_json(self.path / layout.SUMMARY_JSON, dict(summary))

    def read_summary(self, key: str = "") -> dict[str, Any]:
        """The recorded summary; ``key`` (``--resume``) prefixes the error when there is none."""
        path = self.path / layout.SUMMARY_JSON
        where = f"{key} {self.path}" if key else str(self.path)
        if not path.is_file():
            raise UserError(f"{where}: no summary.json there; is it a dlsteps run directory?")
        try:
            summary = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise UserError(
                f"{where}: {path} is damaged, not valid JSON ({exc}); dlsteps writes it whole, "
                "so something else cut or changed it. Restore it from a copy, or start a new "
                "run (its stage folders are untouched)"
            ) from exc
        if not isinstance(summary, dict) or not isinstance(summary.get("stages", []), list):
            raise UserError(f"{where}: {path} is not a dlsteps summary; start a new run")
        return summary

    def summary_to_resume(self, digest: str) -> dict[str, Any]:
        """The summary of the run to continue; refuses a directory made with another config
        (``digest`` is ``train.checkpoint.config_hash`` of this config)."""
        summary = self.read_summary("--resume")
        stored = summary.get("config_hash")
        if stored is None:
            raise UserError(
                f"--resume {self.path}: the run records no config hash; start a new run"
            )
        if stored != digest:
            raise UserError(
                f"--resume {self.path}: the run was made with another config (hash {stored}, "
                f"this config {digest}); resume with the run's own config (leave CONFIG out to "
                f"use {self.config_yaml}), or start a new run"
            )
        return summary

    def write_report(self, html: str) -> Path:
        if self.writes:
            write_text(self.report_html, html)
        return self.report_html


def _unwritable(what: str, exc: OSError) -> StorageError:
    return StorageError(f"{what}: cannot create it ({exc.strerror}); choose a folder you can write")


def finished_entries(summary: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """Stage → summary entry, for the stages an earlier attempt ended."""
    if summary is None:
        return {}
    return {e["name"]: e for e in summary.get("stages", []) if e.get("status") in FINISHED}


def stamp() -> str:
    """Now, as the summary records times."""
    return datetime.now().isoformat(timespec="seconds")
