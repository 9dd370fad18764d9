"""Suite-wide settings."""

import os

import torch

# Under pytest-xdist each worker gets one core's worth of threads; oversubscribing
# the CI machine's 2 cores makes torch many times slower.
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
