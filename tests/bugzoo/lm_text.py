"""The language-model cases' shared, correct corpus: a small slice of the standard
library's sources, split by file (``text_files`` with short blocks, read in a second)."""

from __future__ import annotations

from dlsteps.data.text_files import TokenBlocks, text_files

BLOCK = 32


def corpus() -> tuple[TokenBlocks, TokenBlocks]:
    return text_files(block_size=BLOCK, max_chars=30_000, val_chars=8_000)
