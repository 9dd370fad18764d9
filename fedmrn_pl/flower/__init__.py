"""FedMRN on a Flower federation: a ServerApp and a ClientApp on Flower's Message API.

``APP_DIR`` is the Flower app folder (``flwr run <APP_DIR> <connection>``); the ServerApp
runs ``fedmrn-pl fit``'s experiment with ``FlowerClients`` as its clients, and each
SuperNode trains through the same client code and replies with the same payload bytes.
Needs the ``flower`` extra: ``pip install 'fedmrn-pl[flower]'``. Names load on first
use, so a SuperNode answering a query loads neither torch nor Lightning.
"""

from __future__ import annotations

from pathlib import Path

from fedmrn_pl._lazy import lazy_exports

APP_DIR = Path(__file__).parent / "app"  # the Flower app folder: `flwr run <APP_DIR> <connection>`

_EXPORTS = {
    "FlowerClients": "fedmrn_pl.flower.remote",
    "RUN_CONFIG_KEYS": "fedmrn_pl.flower.run_config",
    "assign_clients": "fedmrn_pl.flower.remote",
    "decode_model": "fedmrn_pl.flower.records",
    "encode_model": "fedmrn_pl.flower.records",
    "experiment_config": "fedmrn_pl.flower.run_config",
    "train_client": "fedmrn_pl.flower.client_app",
}

__all__ = sorted(["APP_DIR", *_EXPORTS])
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
