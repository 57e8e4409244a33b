"""Bug: a tokenizer whose every lookup misses (its vocabulary is keyed by str, the text
is looked up as bytes), so all text becomes the unknown id 0."""

from __future__ import annotations

import torch
from lm_text import BLOCK, corpus

from dlsteps.data.text_files import TokenBlocks


def data():
    train, val = corpus()
    vocab = {ch: i for i, ch in enumerate(train.vocab)}  # str keys

    def encode(text: str) -> torch.Tensor:
        return torch.tensor([vocab.get(ch.encode(), 0) for ch in text])  # the bug: bytes

    def blocks(split: TokenBlocks) -> TokenBlocks:
        text = split.decode(split.ids.tolist())
        return TokenBlocks(encode(text), BLOCK, train.vocab)

    return blocks(train), blocks(val)
