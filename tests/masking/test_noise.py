"""Noise is a pure function of (seed, name, shape, spec), on every device and process."""

import subprocess
import sys

import pytest
import torch

from fedmrn_pl.masking import MIN_NOISE_MAGNITUDE, generate_noise
from fedmrn_pl.update import NoiseSpec


@pytest.mark.parametrize("family", ["uniform", "gauss", "bernoulli"])
def test_same_seed_and_name_give_identical_noise(family):
    spec = NoiseSpec(family, 0.01)
    first = generate_noise(42, "layer.weight", (64, 32, 3, 3), spec)
    second = generate_noise(42, "layer.weight", (64, 32, 3, 3), spec)
    assert torch.equal(first, second)


def test_seed_and_name_both_change_the_noise():
    spec = NoiseSpec()
    base = generate_noise(1, "a.weight", (1000,), spec)
    assert not torch.equal(base, generate_noise(2, "a.weight", (1000,), spec))
    assert not torch.equal(base, generate_noise(1, "b.weight", (1000,), spec))


def test_uniform_noise_lies_in_plus_minus_alpha():
    noise = generate_noise(0, "w", (100_000,), NoiseSpec("uniform", 0.005))
    assert noise.abs().max().item() <= 0.005
    assert abs(noise.mean().item()) < 1e-4
    assert abs(noise.std().item() - 0.005 / 3**0.5) < 1e-4


def test_gauss_noise_has_std_alpha():
    noise = generate_noise(0, "w", (100_000,), NoiseSpec("gauss", 0.01))
    assert abs(noise.std().item() - 0.01) < 2e-4


def test_bernoulli_noise_is_plus_minus_alpha():
    noise = generate_noise(0, "w", (10_000,), NoiseSpec("bernoulli", 0.01))
    assert torch.equal(noise.abs(), torch.full_like(noise, 0.01))
    assert 0.45 < (noise > 0).float().mean().item() < 0.55


def test_tiny_noise_values_are_raised_to_the_floor():
    noise = generate_noise(0, "w", (1_000_000,), NoiseSpec("gauss", 1e-6))
    assert noise.abs().min() >= torch.tensor(MIN_NOISE_MAGNITUDE, dtype=torch.float32)
    assert torch.isfinite(torch.ones_like(noise) / noise).all()


def test_noise_is_identical_in_another_process():
    here = generate_noise(99, "features.0.weight", (32, 1, 3, 3), NoiseSpec("gauss", 0.01))
    code = (
        "import sys, torch\n"
        "from fedmrn_pl.masking import generate_noise\n"
        "from fedmrn_pl.update import NoiseSpec\n"
        "n = generate_noise(99, 'features.0.weight', (32, 1, 3, 3), NoiseSpec('gauss', 0.01))\n"
        "sys.stdout.write(n.numpy().tobytes().hex())\n"
    )
    there = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert there == here.numpy().tobytes().hex()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_noise_on_cuda_equals_noise_on_cpu():
    spec = NoiseSpec("uniform", 0.01)
    cpu = generate_noise(5, "w", (128, 64), spec)
    cuda = generate_noise(5, "w", (128, 64), spec, device="cuda")
    assert cuda.device.type == "cuda"
    assert torch.equal(cpu, cuda.cpu())
