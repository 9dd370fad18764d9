"""Text for the language-model examples, generated offline: a tiny grammar, one style per speaker.

Every speaker draws sentences from the same grammar but favours its own subjects and
objects, so per-speaker datasets are a natural (non-iid) federated split.
"""

from __future__ import annotations

import random

import torch
from torch.utils.data import TensorDataset

__all__ = ["ALPHABET", "encode", "next_char_pairs", "sequence_pairs", "speaker_text"]

ALPHABET = "abcdefghijklmnopqrstuvwxyz ."  # the characters the text uses; index = token id
SUBJECTS = ["the cat", "a dog", "my friend", "the bird", "our teacher", "a child"]
VERBS = ["sees", "likes", "finds", "follows", "draws", "hears"]
OBJECTS = ["the ball", "a tree", "the river", "a red kite", "the old house", "a small boat"]


def speaker_text(speaker: int, sentences: int, seed: int = 0) -> str:
    """``sentences`` sentences in ``speaker``'s style, e.g. ``"the cat likes a tree. "``; same arguments, same text."""
    rng = random.Random(f"{seed}/{speaker}")
    favourite = speaker % len(SUBJECTS)
    lines = []
    for _ in range(sentences):
        subject = SUBJECTS[favourite] if rng.random() < 0.6 else rng.choice(SUBJECTS)
        thing = OBJECTS[favourite] if rng.random() < 0.6 else rng.choice(OBJECTS)
        lines.append(f"{subject} {rng.choice(VERBS)} {thing}. ")
    return "".join(lines)


def encode(text: str) -> torch.Tensor:
    """Token ids of ``text`` (characters of ``ALPHABET``), shape (len(text),)."""
    return torch.tensor([ALPHABET.index(char) for char in text], dtype=torch.long)


def next_char_pairs(text: str, context: int) -> TensorDataset:
    """(``context`` characters, the next one): a classification dataset with integer labels."""
    tokens = encode(text)
    windows = tokens.unfold(0, context + 1, 1)  # (N, context + 1)
    return TensorDataset(windows[:, :-1].contiguous(), windows[:, -1].contiguous())


def sequence_pairs(text: str, length: int) -> TensorDataset:
    """(``length`` characters, the same shifted by one): every position predicts its next character."""
    tokens = encode(text)
    windows = tokens.unfold(0, length + 1, length // 2)  # (N, length + 1), half-overlapping
    return TensorDataset(windows[:, :-1].contiguous(), windows[:, 1:].contiguous())
