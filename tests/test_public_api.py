"""The public API: what README.md documents is importable, and __all__ lists are sorted."""

import importlib

import pytest

PACKAGES = [
    "fedmrn_pl",
    "fedmrn_pl.callbacks",
    "fedmrn_pl.masking",
    "fedmrn_pl.wire",
    "fedmrn_pl.federated",
    "fedmrn_pl.data",
    "fedmrn_pl.models",
]


@pytest.mark.parametrize("name", PACKAGES)
def test_every_exported_name_exists_and_all_is_sorted(name):
    module = importlib.import_module(name)
    assert list(module.__all__) == sorted(module.__all__)
    missing = [n for n in module.__all__ if not hasattr(module, n)]
    assert not missing


def test_callbacks_folder_installs_as_fedmrn_pl_callbacks():
    callbacks = importlib.import_module("fedmrn_pl.callbacks")
    assert {"FederatedCallback", "SeedSync", "MaskPacking", "FederatedCheckpoint"} <= set(callbacks.__all__)
    assert callbacks.__file__.replace("\\", "/").rsplit("/", 2)[-2] == "callbacks"


def test_readme_api_names_are_public():
    import fedmrn_pl

    for name in (
        "FederatedTrainer",
        "FedMRN",
        "FedAvg",
        "MaskingConfig",
        "NoiseSpec",
        "FederatedDataModule",
        "build_model",
        "ClassificationTask",
        "encode_update",
        "decode_update",
        "PayloadError",
        "load_config",
        "run_experiment",
    ):
        assert name in fedmrn_pl.__all__, name
