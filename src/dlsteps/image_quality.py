"""What a generative stage produced: full-val L1 and PSNR, and input/target/output grids.

Logged at the start and the end of each generative training stage: the rows
``metrics/l1`` and ``metrics/psnr`` go to the logbook (the adversarial gate compares the
end with the start, which is the L1-only generator it was continued from), the image grid
``images/val`` goes to TensorBoard so a person sees the outputs approach the targets.
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset
from torch.utils.tensorboard import SummaryWriter
from torchvision.utils import make_grid

from dlsteps.logbook import Row

GRID_SAMPLES = 8


class GenerativeViews:
    """Full val passes and picture grids of one stage's generator."""

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
        fixed = Subset(val, range(min(GRID_SAMPLES, len(val))))
        self.grid_x, self.grid_y = next(iter(DataLoader(fixed, batch_size=GRID_SAMPLES)))

    def record(self, step: int) -> list[Row]:
        """Image-quality rows at ``step``; the grid is written to TensorBoard on the way."""
        l1, psnr, lo, hi = self._val_pass()
        self._write_grid(step, lo, hi)
        return [Row(step, "metrics/l1", l1), Row(step, "metrics/psnr", psnr)]

    @torch.no_grad()
    def _val_pass(self) -> tuple[float, float, float, float]:
        """Mean absolute error, mean per-image PSNR over the target's value range, and
        that range (lo, hi)."""
        was_training = self.model.training
        self.model.eval()
        abs_sum, count, mses = 0.0, 0, []
        lo, hi = math.inf, -math.inf
        for x, y in self.loader:
            x, y = x.to(self.device), y.to(self.device).float()
            with self.autocast:
                out = self.model(x)
            diff = out.float() - y  # (B, C, H, W)
            abs_sum += float(diff.abs().sum())
            count += diff.numel()
            mses.append(diff.pow(2).flatten(1).mean(dim=1))
            lo, hi = min(lo, float(y.min())), max(hi, float(y.max()))
        self.model.train(was_training)
        data_range = max(hi - lo, 1e-8)
        mse = torch.cat(mses).clamp_min(1e-10)
        psnr = float((10 * torch.log10(data_range**2 / mse)).mean())
        return abs_sum / count, psnr, lo, hi

    @torch.no_grad()
    def _write_grid(self, step: int, lo: float, hi: float) -> None:
        """Three rows: input (scaled by its own range), target and output (scaled from the
        target's range [lo, hi] to [0, 1])."""
        was_training = self.model.training
        self.model.eval()
        with self.autocast:
            out = self.model(self.grid_x.to(self.device)).float().cpu()
        self.model.train(was_training)
        inputs = _as_rgb(self.grid_x.float())
        inputs = (inputs - inputs.min()) / (inputs.max() - inputs.min()).clamp_min(1e-8)
        images = torch.cat([_as_rgb(self.grid_y.float()), _as_rgb(out)])
        pictures = torch.cat([inputs, ((images - lo) / max(hi - lo, 1e-8)).clamp(0, 1)])
        grid = make_grid(pictures, nrow=len(self.grid_x), padding=1, pad_value=1.0)
        with SummaryWriter(str(self.stage_dir), filename_suffix=".images") as writer:
            writer.add_image("images/val", grid, step)


def _as_rgb(images: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) → (B, 3, H, W): one channel repeated, more than three cut to three."""
    if images.shape[1] == 1:
        return images.repeat(1, 3, 1, 1)
    if images.shape[1] == 2:
        return images[:, :1].repeat(1, 3, 1, 1)
    return images[:, :3]
