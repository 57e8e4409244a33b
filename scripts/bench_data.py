"""``image_folder`` against a hand-written torchvision ``ImageFolder`` + ``DataLoader``.

Both read the same JPEG files (written here with PIL: an ImageFolder tree of ``--images``
files in 10 classes, ``--side`` pixels square) and serve the same tensors: resized to
``--size``, float, normalised by per-channel mean/std, batched by a ``DataLoader`` with
the same batch size and workers. The hand-written one is what the torchvision tutorial
writes: ``ImageFolder(root, transform=Compose([Resize((s, s)), ToTensor(), Normalize(m,
s)]))``. dlsteps' is ``image_folder(root, size=s)``'s train split (its normalisation
statistics are measured once before timing, as a run does before its first stage).

Images/s is one full pass over the train files per repeat, after one warm-up pass; the
two loaders alternate within each repeat (the order rotates), and the ratio is taken
per repeat, so a machine shared with other processes slows both alike. Reported: the
median images/s of each and the median ratio (dlsteps / hand-written), for each worker
count.

    .venv/bin/python scripts/bench_data.py                 # 0 and 2 workers, 5 repeats
    .venv/bin/python scripts/bench_data.py --workers 0 2 4 --images 2000 --json out.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

from dlsteps.data.image_folder import image_folder


def write_tree(root: Path, images: int, side: int, seed: int = 0) -> Path:
    """``root/train/<class>/*.jpg`` (and a small val split), noisy coloured gradients."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:side, 0:side] / side
    for split, count in (("train", images), ("val", max(10, images // 10))):
        for i in range(count):
            folder = root / split / f"class{i % 10}"
            folder.mkdir(parents=True, exist_ok=True)
            base = np.stack([yy, xx, (yy + xx) / 2], axis=-1) * rng.uniform(0.3, 1, 3)
            pixels = np.clip(base + rng.normal(0, 0.1, base.shape), 0, 1)
            Image.fromarray((pixels * 255).astype(np.uint8)).save(folder / f"{i:05d}.jpg")
    return root


def images_per_second(loader: DataLoader) -> float:
    start, seen = time.perf_counter(), 0
    for x, _ in loader:
        seen += len(x)
    return seen / (time.perf_counter() - start)


def loaders(root: Path, size: int, batch: int, workers: int) -> dict[str, DataLoader]:
    ours, _ = image_folder(str(root), size=size)
    norm = ours.normalization
    assert norm is not None
    theirs = datasets.ImageFolder(
        str(root / "train"),
        transform=transforms.Compose(
            [
                transforms.Resize((size, size)),
                transforms.ToTensor(),
                transforms.Normalize(norm.mean, norm.std),
            ]
        ),
    )
    assert len(theirs) == len(ours)
    common = {"batch_size": batch, "num_workers": workers, "persistent_workers": workers > 0}
    return {
        "hand-written": DataLoader(theirs, shuffle=False, **common),
        "dlsteps": DataLoader(ours, shuffle=False, **common),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000, help="train images")
    parser.add_argument("--side", type=int, default=128, help="pixels of each file")
    parser.add_argument("--size", type=int, default=64, help="pixels after resizing")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = write_tree(Path(tmp) / "tree", args.images, args.side)
        for workers in args.workers:
            pair = loaders(root, args.size, args.batch, workers)
            for loader in pair.values():
                images_per_second(loader)  # warm-up: page cache, worker start
            rates: dict[str, list[float]] = {name: [] for name in pair}
            ratios = []
            for r in range(args.repeats):
                order = list(pair) if r % 2 == 0 else list(reversed(pair))
                once = {name: images_per_second(pair[name]) for name in order}
                for name, rate in once.items():
                    rates[name].append(rate)
                ratios.append(once["dlsteps"] / once["hand-written"])
            results[workers] = {
                **{name: statistics.median(v) for name, v in rates.items()},
                "ratio": statistics.median(ratios),
                "ratios": ratios,
            }
            row = results[workers]
            print(
                f"workers={workers}: hand-written {row['hand-written']:.0f} images/s, "
                f"dlsteps {row['dlsteps']:.0f} images/s, ratio {row['ratio']:.2f} "
                f"(per repeat: {', '.join(f'{x:.2f}' for x in ratios)})",
                flush=True,
            )
    print(
        f"{args.images} JPEG files of {args.side}x{args.side} resized to {args.size}x{args.size}, "
        f"batch {args.batch}, one torch thread, median of {args.repeats} repeats"
    )
    if args.json:
        args.json.write_text(json.dumps({"args": vars(args) | {"json": None}, **results}, indent=2))


if __name__ == "__main__":
    main()
