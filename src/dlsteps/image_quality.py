"""What a generative stage produced: full-val L1 and PSNR, and input/target/output pictures.

Logged at the start and the end of each generative training stage: the rows
``metrics/l1`` and ``metrics/psnr`` go to the logbook (the adversarial gate compares the
end with the start, which is the L1-only generator it was continued from); the picture of
fixed val samples (``images.sample_picture``'s layout) goes to TensorBoard as ``samples``
and to ``<stage>/samples.png`` for the report, so a person sees the outputs approach the
targets.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset
from torch.utils.tensorboard import SummaryWriter
from torchmetrics import MeanAbsoluteError
from torchmetrics.image import PeakSignalNoiseRatio

from dlsteps.atomic import write_bytes
from dlsteps.images import png_bytes, sample_picture
from dlsteps.logbook import Row
from dlsteps.observe import SAMPLES_PNG

PICTURE_SAMPLES = 8


class GenerativeViews:
    """Full val passes and pictures of one stage's generator."""

    def __init__(
        self,
        model: nn.Module,
        val: Dataset,
        stage_dir: Path,
        device: torch.device,
        batch_size: int,
        autocast: contextlib.AbstractContextManager | None = None,
    ) -> None:
        self.model, self.device, self.stage_dir = model, device, stage_dir
        self.autocast = autocast or contextlib.nullcontext()
        self.loader = DataLoader(val, batch_size=batch_size, shuffle=False)
        targets = [y.float() for _, y in self.loader]
        self.data_range = (
            min(float(t.min()) for t in targets),
            max(float(t.max()) for t in targets),
        )
        fixed = Subset(val, range(min(PICTURE_SAMPLES, len(val))))
        self.fixed_x, self.fixed_y = next(iter(DataLoader(fixed, batch_size=PICTURE_SAMPLES)))

    def record(self, step: int) -> list[Row]:
        """Image-quality rows at ``step``; the picture is written on the way."""
        l1, psnr = self._val_pass()
        self._write_picture(step)
        return [Row(step, "metrics/l1", l1), Row(step, "metrics/psnr", psnr)]

    @torch.no_grad()
    def _val_pass(self) -> tuple[float, float]:
        """Mean absolute error and PSNR over the whole val set (torchmetrics); PSNR's data
        range is the val targets' min..max, fixed once so start and end compare."""
        was_training = self.model.training
        self.model.eval()
        l1 = MeanAbsoluteError().to(self.device)
        psnr = PeakSignalNoiseRatio(data_range=self.data_range).to(self.device)
        for x, y in self.loader:
            x, y = x.to(self.device), y.to(self.device).float()
            with self.autocast:
                out = self.model(x).float()  # (B, C, H, W)
            l1.update(out, y)
            psnr.update(out, y)
        self.model.train(was_training)
        return float(l1.compute()), float(psnr.compute())

    @torch.no_grad()
    def _write_picture(self, step: int) -> None:
        """Input / target / output of the fixed val samples (``images.sample_picture``)."""
        was_training = self.model.training
        self.model.eval()
        with self.autocast:
            out = self.model(self.fixed_x.to(self.device))
        self.model.train(was_training)
        picture = sample_picture("generative", self.fixed_x, self.fixed_y, out)
        if picture is None:  # inputs that are not images
            return
        with SummaryWriter(str(self.stage_dir), filename_suffix=".images") as writer:
            writer.add_image("samples", picture, step, dataformats="HWC")
        write_bytes(self.stage_dir / SAMPLES_PNG, png_bytes(picture))
