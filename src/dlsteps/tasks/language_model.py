"""Language models: next-token cross-entropy on logits ``[B, V, T]``, targets ``[B, T]``.

The loss of a fresh model is ln V; the baseline is the unigram predictor of the train
tokens (their frequencies, whatever the context); the metrics are perplexity and bits
per token; the pictures are generations, as text. Three checks come from how language
pipelines break, each from its cause:

- targets equal to the inputs (the labels were not shifted by one): the model learns to
  copy its input, and its loss falls to ~0 while it learns nothing;
- the future leaking in (attention without its causal mask): changing the tokens after
  position t must not change the prediction at t;
- every train token the same id (a tokenizer that maps all text to one id).

Its ladder has no augment stage: there is no label-preserving augmentation of text to
try by default.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import ClassVar

import torch
from torch import nn
from torch.utils.data import Dataset

from dlsteps.data.stats import DataStats
from dlsteps.judge.diagnoses import Diagnosis, hint
from dlsteps.ladder.stages import FULL_DATA, OVERFIT_FEW, OVERFIT_ONE, PREFLIGHT, SCALE_UP, Stage
from dlsteps.observe.metrics import MetricSet, TokenMetrics
from dlsteps.tasks.base import LabelInfo
from dlsteps.tasks.labels import LabelTask

COPIED_SHARE = 0.9  # targets equal to inputs at this share of positions: not shifted
LEAK_RATIO = 1e-3  # change at earlier positions relative to later ones: the future leaks
PROMPT_TOKENS = 32  # of the first val block, the start of each generation
GENERATED_TOKENS = 200
SAMPLES = 2  # generations shown (from the first val blocks)


class LanguageModel(LabelTask):
    name = "language_model"
    ladder: ClassVar[tuple[Stage, ...]] = (PREFLIGHT, OVERFIT_ONE, OVERFIT_FEW, FULL_DATA, SCALE_UP)
    metrics: ClassVar[Mapping[str, bool]] = {"perplexity": False, "bits_per_token": False}
    unit = "tokens"
    loss_targets = "masks"  # a class per position, classes second: as a segmentation mask

    def batch_problem(self, out: torch.Tensor, y: torch.Tensor) -> str | None:
        if y.ndim != 2:
            return f"expected token targets [B, T], got {tuple(y.shape)}"
        if out.ndim == 3 and out.shape[1] == y.shape[1] and out.shape[2] != y.shape[1]:
            return (
                f"logits {tuple(out.shape)} look like [B, T, V]; a language model returns "
                "[B, V, T] (classes second, as cross_entropy takes them): return "
                "logits.transpose(1, 2)"
            )
        if out.ndim != 3 or out.shape[2] != y.shape[1]:
            return f"expected logits [B, V, T] for targets {tuple(y.shape)}, got {tuple(out.shape)}"
        return super().batch_problem(out, y)

    def check_labels(
        self, stats: DataStats, num_outputs: int, labels: LabelInfo | None = None
    ) -> list[Diagnosis]:
        """Only the range: a vocabulary most of whose ids never occur (bytes, a subword
        vocabulary on a small corpus) is natural, and so are val tokens train lacks."""
        return self._out_of_range(stats, num_outputs)

    def check_data(self, stats: DataStats) -> list[Diagnosis]:
        counts = stats.train.label_counts
        if len(counts) != 1:
            return []
        (only, n), *_ = counts.items()
        return [
            Diagnosis(
                "constant_tokens",
                f"all {n} train target tokens are id {only}: the tokenizer maps every piece of "
                f"text to one id, so there is nothing to predict. {hint('constant_tokens')}",
            )
        ]

    def check_probe(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, out: torch.Tensor
    ) -> list[Diagnosis]:
        found = []
        if x.shape == y.shape and not x.is_floating_point():
            share = float((x == y.to(x.device)).float().mean())
            if share >= COPIED_SHARE:
                found.append(
                    Diagnosis(
                        "unshifted_targets",
                        f"the targets equal the inputs at {share:.0%} of the positions of a "
                        "probe batch: the labels are not shifted by one, so the model learns "
                        "to copy its input (its loss falls to ~0 and it learns no language). "
                        f"{hint('unshifted_targets')}",
                    )
                )
        if (leak := _future_leak(model, x, int(out.shape[1]))) is not None:
            found.append(leak)
        return found

    def metric_set(
        self, num_classes: int | None, class_names: list[str] | None, stats: DataStats | None
    ) -> MetricSet:
        return TokenMetrics()

    def baseline_metric(self, stats: DataStats, metric: str) -> tuple[float, float] | None:
        """The unigram predictor's perplexity (bits per token), with its standard error
        from the spread of its per-token losses over the val tokens (delta method)."""
        loss = self.baseline_loss(stats, None)
        per = _unigram_losses(stats)
        if loss is None or per is None:
            return None
        losses, weights = per
        n = weights.sum()
        var = float((weights * (losses - loss) ** 2).sum() / n)
        se_loss = math.sqrt(var / float(n))
        if metric == "perplexity":
            return math.exp(loss), math.exp(loss) * se_loss
        if metric == "bits_per_token":
            return loss / math.log(2), se_loss / math.log(2)
        return None

    def text_samples(self, model: nn.Module, val: Dataset, device: torch.device) -> str | None:
        """Generations from the starts of the first val blocks (seeded sampling)."""
        decode = getattr(val, "decode", None)
        if decode is None or len(val) == 0:  # type: ignore[arg-type]
            return None
        block = int(getattr(model, "block_size", 0) or val[0][0].shape[0])
        gen = torch.Generator().manual_seed(0)
        shown = []
        was_training = model.training
        model.eval()
        try:
            for i in range(min(SAMPLES, len(val))):  # type: ignore[arg-type]
                prompt = val[i][0][:PROMPT_TOKENS]
                ids = _generate(model, prompt.to(device), block, gen)
                shown.append(f"{decode(prompt.tolist())}⟦{decode(ids)}⟧")
        finally:
            model.train(was_training)
        return "\n\n---\n\n".join(shown)


def _future_leak(model: nn.Module, x: torch.Tensor, vocab: int) -> Diagnosis | None:
    """Change every token after the middle position t: the outputs at positions <= t must
    stay as they were (in eval mode), or the model reads the future it is to predict."""
    if x.ndim != 2 or x.shape[1] < 4 or x.is_floating_point():
        return None
    t = x.shape[1] // 2
    changed = x.clone()
    changed[:, t + 1 :] = (x[:, t + 1 :] + 1) % max(vocab, 2)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            a, b = model(x), model(changed)
    finally:
        model.train(was_training)
    if not (isinstance(a, torch.Tensor) and a.ndim == 3 and a.shape[2] == x.shape[1]):
        return None
    past = float((a[..., : t + 1] - b[..., : t + 1]).abs().max())
    future = float((a[..., t + 1 :] - b[..., t + 1 :]).abs().max())
    if future == 0 or past <= LEAK_RATIO * future:
        return None
    return Diagnosis(
        "future_leak",
        f"changing the tokens after position {t} changes the predictions at positions 0..{t} "
        f"(by up to {past:.3g}, {past / future:.0%} of the change after it): each prediction "
        "sees the tokens it is to predict, so the loss falls without learning to predict. "
        f"{hint('future_leak')}",
    )


def _unigram_losses(stats: DataStats) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Per distinct val token: its loss under the train unigram (add-half smoothing, as
    the baseline loss) and its count."""
    train, val = stats.train.label_counts, stats.val.label_counts
    total = sum(train.values())
    if not total or not val:
        return None
    classes = max([*train, *val]) + 1
    losses = torch.tensor(
        [-math.log((train.get(c, 0) + 0.5) / (total + 0.5 * classes)) for c in val],
        dtype=torch.float64,
    )
    return losses, torch.tensor(list(val.values()), dtype=torch.float64)


def _generate(
    model: nn.Module, prompt: torch.Tensor, block: int, gen: torch.Generator
) -> list[int]:
    ids = prompt[None]
    new: list[int] = []
    with torch.no_grad():
        for _ in range(GENERATED_TOKENS):
            logits = model(ids[:, -block:])[0, :, -1].float().cpu()
            token = int(torch.multinomial(torch.softmax(logits, dim=0), 1, generator=gen))
            new.append(token)
            ids = torch.cat([ids, torch.tensor([[token]], device=ids.device)], dim=1)
    return new
