"""``text_files``: local text files as next-token blocks for ``task: language_model``.

Each item is ``(x, y)``: ``block_size`` token ids and the same ids shifted by one (the
next token at every position), cut from the split's files read one after another. The
split is **by file**, deterministically (a hash of each file's name), so val shares no
file with train: blocks cut from one file on both sides would let val reward memorising.
Tokens are characters (``level: char``, the vocabulary from the train text, id 0 for a
character train never shows) or bytes (``level: byte``, 256 ids). Without ``paths`` the
corpus is the Python standard library's own sources, present on every machine.

Reading stops at ``max_chars`` characters per split (train; val gets ``val_chars``), so
a run starts fast whatever the corpus size.
"""

from __future__ import annotations

import hashlib
import sysconfig
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import torch
from torch.utils.data import Dataset

from dlsteps.errors import ConfigError, DataError

UNKNOWN = "\ufffd"  # what a character absent from train decodes to (id 0)
VAL_SHARE = 10  # one file in VAL_SHARE goes to val
SEPARATOR = "\n\n"  # between files read one after another


class TokenBlocks(Dataset):
    """Non-overlapping blocks of a token stream as ``(x, y)`` with ``y`` shifted by one."""

    def __init__(
        self,
        ids: torch.Tensor,
        block_size: int,
        vocab: Sequence[str] | None,
        files: Sequence[str] = (),
    ) -> None:
        self.ids, self.block_size = ids, block_size
        self.vocab = list(vocab) if vocab is not None else None  # None: bytes
        self.num_classes = len(self.vocab) if self.vocab is not None else 256
        self.files = list(files)

    def __len__(self) -> int:
        return max(0, (len(self.ids) - 1) // self.block_size)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not 0 <= i < len(self):
            raise IndexError(i)
        start = i * self.block_size
        chunk = self.ids[start : start + self.block_size + 1]
        return chunk[:-1], chunk[1:]

    def decode(self, ids: Sequence[int]) -> str:
        """Text of token ids (the pictures of a language model are its generations)."""
        if self.vocab is None:
            return bytes(int(i) % 256 for i in ids).decode("utf-8", errors="replace")
        return "".join(
            self.vocab[int(i)] if 0 <= int(i) < len(self.vocab) else UNKNOWN for i in ids
        )


def stdlib_sources() -> list[Path]:
    """The standard library's top-level ``.py`` files: real text on every machine (its
    subpackages hold near-copies, such as the codec tables, kept out of the corpus)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    return sorted(p for p in root.glob("*.py") if p.is_file())


def split_by_file(files: Sequence[Path]) -> tuple[list[Path], list[Path]]:
    """Train and val files: a file goes to val when a hash of its name says so (about one
    in ``VAL_SHARE``), the same on every machine and whatever else the folder holds."""
    train, val = [], []
    for path in files:
        digest = hashlib.blake2b(path.name.encode(), digest_size=8).digest()
        (val if int.from_bytes(digest, "big") % VAL_SHARE == 0 else train).append(path)
    if not val and len(train) > 1:  # a handful of files: the last one is val
        val.append(train.pop())
    return train, val


def read_text(files: Sequence[Path], max_chars: int) -> tuple[str, list[str]]:
    """The files one after another up to ``max_chars`` characters, and the names read."""
    parts, names, total = [], [], 0
    for path in files:
        if total >= max_chars:
            break
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            raise DataError(f"data.args.paths: cannot read {path}: {exc}") from exc
        parts.append(text[: max_chars - total])
        names.append(str(path))
        total += len(parts[-1]) + len(SEPARATOR)
    return SEPARATOR.join(parts), names


def text_files(
    paths: Sequence[str] | None = None,
    level: Literal["char", "byte"] = "char",
    block_size: int = 128,
    max_chars: int = 400_000,
    val_chars: int = 60_000,
) -> tuple[TokenBlocks, TokenBlocks]:
    """Train and val blocks of the text files ``paths`` (files or folders, read
    recursively for ``*.txt``, ``*.md``, ``*.py``); default: the standard library."""
    if level not in ("char", "byte"):
        raise ConfigError(f"data.args.level: '{level}' is neither char nor byte")
    if block_size < 2:
        raise ConfigError(f"data.args.block_size: {block_size} is below 2")
    files = _files(paths) if paths else stdlib_sources()
    train_files, val_files = split_by_file(files)
    if not train_files or not val_files:
        raise DataError(
            f"data.args.paths: {len(files)} text file(s) found; the split is by file, so "
            "at least two are needed (one for val)"
        )
    train_text, train_names = read_text(train_files, max_chars)
    val_text, val_names = read_text(val_files, val_chars)
    if level == "byte":
        vocab = None
        train_ids = torch.tensor(list(train_text.encode("utf-8")), dtype=torch.long)
        val_ids = torch.tensor(list(val_text.encode("utf-8")), dtype=torch.long)
    else:
        vocab = [UNKNOWN, *sorted(set(train_text) - {UNKNOWN})]
        index = {ch: i for i, ch in enumerate(vocab)}
        train_ids = torch.tensor([index[ch] for ch in train_text], dtype=torch.long)
        val_ids = torch.tensor([index.get(ch, 0) for ch in val_text], dtype=torch.long)
    train = TokenBlocks(train_ids, block_size, vocab, train_names)
    val = TokenBlocks(val_ids, block_size, vocab, val_names)
    for split, ds in (("train", train), ("val", val)):
        if len(ds) == 0:
            raise DataError(
                f"data.args: the {split} text holds fewer than block_size {block_size} + 1 "
                "tokens; give more files or a smaller block_size"
            )
    return train, val


def _files(paths: Sequence[str]) -> list[Path]:
    found: list[Path] = []
    for given in paths:
        path = Path(given).expanduser()
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.suffix in (".txt", ".md", ".py"))
        elif path.is_file():
            found.append(path)
        else:
            raise DataError(f"data.args.paths: {given} does not exist")
    return found
