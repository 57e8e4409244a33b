"""Val metrics (torchmetrics) against straightforward reference computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import confusion_matrix, f1_score
from torch import nn
from torch.utils.data import TensorDataset

from dlsteps.errors import ConfigError
from dlsteps.observe.metrics import evaluate, val_loader
from dlsteps.tasks import task_class


def MetricSet(task: str, num_classes=None, ignore_index=None, class_names=None):
    """The task's own metric set, as a stage's observer builds it."""
    t = task_class(task)(ignore_index) if ignore_index is not None else task_class(task)()
    return t.metric_set(num_classes, class_names, None)


def primary_metric(task: str, configured: str = "auto"):
    return task_class(task)().primary(configured)


IGNORE = 255


def _run(task: str, outputs: torch.Tensor, targets: torch.Tensor, **kw):
    """A full val pass where the 'model' returns the hand-built outputs it is fed, in
    batches of 3 so the metrics must accumulate across batches correctly."""
    loader = val_loader(TensorDataset(outputs, targets), batch_size=3)
    return evaluate(nn.Identity(), loader, MetricSet(task, **kw), torch.device("cpu"))


def _reference_iou(pred: np.ndarray, target: np.ndarray, num_classes: int) -> dict[int, float]:
    """IoU per class over all non-ignored pixels; classes in neither are left out."""
    keep = target != IGNORE
    p, t = pred[keep], target[keep]
    out = {}
    for c in range(num_classes):
        union = np.sum((p == c) | (t == c))
        if union:
            out[c] = np.sum((p == c) & (t == c)) / union
    return out


def test_segmentation_miou_per_class_iou_and_pixel_accuracy_match_a_reference() -> None:
    gen = torch.Generator().manual_seed(0)
    num_classes, n, size = 4, 7, 6
    target = torch.randint(0, 3, (n, size, size), generator=gen)  # class 3 never appears
    pred = target.clone()
    flip = torch.rand(pred.shape, generator=gen) < 0.3
    pred[flip] = torch.randint(0, 3, (int(flip.sum()),), generator=gen)
    target[:, 0, :] = IGNORE  # a row of ignored pixels, predicted as anything
    logits = nn.functional.one_hot(pred, num_classes).permute(0, 3, 1, 2).float()
    values = _run("segmentation", logits, target, ignore_index=IGNORE)

    ref = _reference_iou(pred.numpy(), target.numpy(), num_classes)
    assert set(ref) == {0, 1, 2}
    assert values.scalars["miou"] == pytest.approx(np.mean(list(ref.values())), abs=1e-6)
    for c, iou in ref.items():
        assert values.scalars[f"iou/{c}"] == pytest.approx(iou, abs=1e-6)
    assert "iou/3" not in values.scalars  # absent from targets and predictions
    keep = target != IGNORE
    accuracy = (pred[keep] == target[keep]).float().mean().item()
    assert values.scalars["pixel_accuracy"] == pytest.approx(accuracy, abs=1e-6)
    macro_f1 = f1_score(target[keep].numpy(), pred[keep].numpy(), average="macro")
    assert values.scalars["f1"] == pytest.approx(macro_f1, abs=1e-6)
    assert sum(map(sum, values.confusion)) == int(keep.sum())


def test_a_perfect_and_a_hand_counted_segmentation() -> None:
    target = torch.tensor([[[0, 0], [1, 1]], [[1, 1], [2, IGNORE]]])
    perfect = nn.functional.one_hot(target.clamp(max=2), 3).permute(0, 3, 1, 2).float()
    assert _run("segmentation", perfect, target, ignore_index=IGNORE).scalars["miou"] == 1.0
    # predict class 1 everywhere: IoU(0) = 0/2, IoU(1) = 4/7, IoU(2) = 0/1
    ones = torch.zeros(2, 3, 2, 2)
    ones[:, 1] = 1.0
    values = _run("segmentation", ones, target, ignore_index=IGNORE)
    assert values.scalars["miou"] == pytest.approx((0 + 4 / 7 + 0) / 3)
    assert values.scalars["pixel_accuracy"] == pytest.approx(4 / 7)


def test_classification_accuracy_f1_and_confusion_match_sklearn() -> None:
    gen = torch.Generator().manual_seed(1)
    target = torch.randint(0, 5, (40,), generator=gen)
    logits = torch.randn(40, 5, generator=gen)
    logits[torch.arange(40), target] += 1.0  # right more often than not
    values = _run("classification", logits, target, class_names=list("abcde"))
    pred = logits.argmax(1).numpy()
    assert values.scalars["accuracy"] == pytest.approx(float(np.mean(pred == target.numpy())))
    assert values.scalars["f1"] == pytest.approx(
        f1_score(target.numpy(), pred, average="macro"), abs=1e-6
    )
    assert values.confusion == confusion_matrix(target.numpy(), pred, labels=range(5)).tolist()
    assert values.class_names == list("abcde")


def test_regression_mae_and_rmse_match_numpy() -> None:
    gen = torch.Generator().manual_seed(2)
    target = torch.randn(11, 2, generator=gen)
    pred = target + 0.3 * torch.randn(11, 2, generator=gen)
    values = _run("regression", pred, target)
    err = (pred - target).numpy()
    assert values.scalars["mae"] == pytest.approx(float(np.abs(err).mean()), rel=1e-5)
    assert values.scalars["rmse"] == pytest.approx(float(np.sqrt((err**2).mean())), rel=1e-5)
    assert values.confusion is None


def test_a_metric_pass_leaves_the_model_mode_and_the_global_rng_alone() -> None:
    model = nn.Sequential(nn.Linear(4, 3), nn.Dropout(0.5))
    model.train()
    data = TensorDataset(torch.randn(10, 4), torch.randint(0, 3, (10,)))
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    evaluate(model, val_loader(data, 4), MetricSet("classification"), torch.device("cpu"))
    assert model.training
    assert torch.equal(torch.rand(3), expected)  # training after it draws the same numbers


def test_primary_metric_defaults_per_task_and_rejects_unknown_names() -> None:
    assert primary_metric("segmentation").figure(0.5) == {
        "name": "miou",
        "value": 0.5,
        "higher_is_better": True,
    }
    assert primary_metric("classification").name == "accuracy"
    assert primary_metric("regression").higher_is_better is False
    assert primary_metric("segmentation", "f1").name == "f1"
    with pytest.raises(ConfigError, match=r"metrics\.primary: 'mIoU'.*miou"):
        primary_metric("segmentation", "mIoU")
