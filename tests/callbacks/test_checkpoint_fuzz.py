"""Fuzz the checkpoint loader: a mutated real checkpoint is refused in one line or loads unchanged.

Seeded, so a failure reproduces. The checkpoint comes from a real one-round run. Each
case flips bytes (anywhere, in the pickle and zip records, or inside tensor data) or
truncates the file; ``load_checkpoint`` must then raise ``CheckpointError`` with a
one-line message, or return exactly the saved content. Any other exception, or a load
that differs from the saved state, fails the test.
"""

from __future__ import annotations

import random

import pytest
import torch

from fedmrn_pl.callbacks import load_checkpoint
from fedmrn_pl.callbacks.checkpoint import CheckpointError
from fedmrn_pl.config import load_config
from fedmrn_pl.experiment import run_experiment
from tests.test_experiment import SMALL

SEED = 20261127
CASES = 600


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """(bytes of a real checkpoint, its loaded state, the model's state, the run's rounds)."""
    out = tmp_path_factory.mktemp("fuzz") / "run"
    config = load_config(None, [*SMALL, f"output_dir={out}"])
    run_experiment(config)
    state = load_checkpoint(out)
    model_state = {name: tensor.clone() for name, tensor in state["global_state"].items()}
    return (out / "checkpoint.pt").read_bytes(), state, model_state, 1


def _same(a, b) -> bool:
    """Deep equality with tensors compared bit for bit (dtype, shape and values)."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (
            isinstance(a, torch.Tensor)
            and isinstance(b, torch.Tensor)
            and a.dtype == b.dtype
            and a.shape == b.shape
            and torch.equal(a.reshape(-1).view(torch.uint8), b.reshape(-1).view(torch.uint8))
        )
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and (a == b or (a != a and b != b))  # nan == nan here


def _mutations(data: bytes, rng: random.Random):
    """Seeded mutations: byte flips (biased to the metadata at both ends) and truncations."""
    size = len(data)
    for case in range(CASES):
        mutated = bytearray(data)
        kind = case % 4
        if kind == 3:
            yield "truncate", bytes(mutated[: rng.randrange(size)])
            continue
        region = {0: (0, size), 1: (0, min(size, 4096)), 2: (max(0, size - 2048), size)}[kind]
        for _ in range(rng.choice((1, 1, 2, 8))):
            offset = rng.randrange(*region)
            mutated[offset] ^= rng.randrange(1, 256)
        yield "flip", bytes(mutated)


def test_every_mutated_checkpoint_is_refused_in_one_line_or_loads_unchanged(saved, tmp_path):
    data, state, model_state, rounds = saved
    path = tmp_path / "checkpoint.pt"
    outcomes = {"refused": 0, "unchanged": 0}
    for index, (kind, mutated) in enumerate(_mutations(data, random.Random(SEED))):
        path.write_bytes(mutated)
        try:
            loaded = load_checkpoint(path, model_state=model_state, rounds=rounds)
        except CheckpointError as error:
            assert "\n" not in str(error) and str(path) in str(error), (index, kind, str(error))
            assert "weights_only" not in str(error), (index, kind, str(error))
            outcomes["refused"] += 1
            continue
        assert _same(loaded, state), f"case {index} ({kind}) loaded silently changed content"
        outcomes["unchanged"] += 1
    assert outcomes["refused"] > CASES // 2  # the mutations do reach the checks
