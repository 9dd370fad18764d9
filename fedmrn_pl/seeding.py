"""One seeding rule for everything random in a run.

Every random stream (noise, PSM draws, shuffling, client sampling) is derived from
``(run_seed, server_round, client_id, purpose)`` by a fixed integer hash, never from
global RNG state, so runs are reproducible across processes, devices and resumes.
"""

from __future__ import annotations

import hashlib
import struct

import torch

__all__ = ["derive_seed", "make_generator"]

_SEED_MASK = (1 << 63) - 1  # torch.Generator.manual_seed accepts [0, 2**64); stay signed-safe


def derive_seed(run_seed: int, server_round: int = 0, client_id: int = 0, purpose: str = "") -> int:
    """Hash ``(run_seed, server_round, client_id, purpose)`` to a 63-bit seed.

    Uses BLAKE2b over a fixed little-endian encoding, so the value is identical on
    every platform, Python version and process (unlike ``hash()``).
    """
    for label, value in (("run_seed", run_seed), ("server_round", server_round), ("client_id", client_id)):
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"{label} must be an int, got {type(value).__name__}")
    digest = hashlib.blake2b(
        struct.pack("<qqq", _signed64(run_seed), server_round, client_id) + purpose.encode("utf-8"),
        digest_size=8,
    ).digest()
    return int.from_bytes(digest, "little") & _SEED_MASK


def make_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A fresh ``torch.Generator`` on ``device`` seeded with ``seed``."""
    generator = torch.Generator(device=device)
    generator.manual_seed(seed)
    return generator


def _signed64(value: int) -> int:
    """Fold any int into the signed 64-bit range so large user seeds still pack."""
    value &= (1 << 64) - 1
    return value - (1 << 64) if value >= (1 << 63) else value
