"""A method added from a test file through the public API runs like a built-in one: fit, compare, resume, 2 ranks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fedmrn_pl import ConfigError, FedMRN, Strategy, build_trainer, load_config, run_experiment
from fedmrn_pl.compare import CompareSettings, compare
from fedmrn_pl.methods import FederatedMethod, MethodParts, build_method, method_names, register_method, unregister_method

from .conftest import TINY, fit_on_two_ranks_and_one
from .toy_method import METHOD, ToyCompression

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def toy():
    register_method(METHOD)
    yield METHOD
    unregister_method(METHOD.name)


def test_a_registered_method_trains_uploads_compressed_and_uses_its_local_callback(toy, tiny_config):
    trainer = build_trainer(tiny_config("method.name=toy_sign"))
    transform = next(c for c in trainer.callbacks if isinstance(c, ToyCompression))
    history = trainer.fit()
    assert all(not r["dropped_clients"] and r["accepted_clients"] == 4 for r in history)
    assert trainer.summary["final_test_accuracy"] > 0.3  # 10 classes: chance is 0.1
    assert trainer.summary["uplink_compression"] > 10  # sign bits, not float32 weights
    assert transform.steps.batches > 0  # declared by configure_local_callbacks, added to every local fit


def test_its_settings_are_nested_checked_and_listed(toy):
    config = load_config(None, ["method.name=toy_sign", "method.toy_sign.scale=2"])
    assert config.method.toy_sign.scale == 2 and "toy_sign" in method_names()
    with pytest.raises(ConfigError, match=r"method.toy_sign.scale=0.5 is not valid; it must be >= 1"):
        load_config(None, ["method.name=toy_sign", "method.toy_sign.scale=0.5"])
    with pytest.raises(ConfigError, match="Key 'scal' not in 'ToySettings'"):
        load_config(None, ["method.toy_sign.scal=2"])
    with pytest.raises(ValueError, match=r"has no setting \['scal'\]; its settings are \['scale'\]"):
        build_method("toy_sign", torch.nn.Linear(2, 2), scal=2)


def test_a_name_taken_or_reserved_is_refused(toy):
    with pytest.raises(ValueError, match="already registered"):
        register_method(FederatedMethod("toy_sign", METHOD.build))
    with pytest.raises(ValueError, match="taken by the setting method.mask"):
        register_method(FederatedMethod("mask", METHOD.build))
    with pytest.raises(ValueError, match="\\['toy_sign_wide'\\] already name another method's compare rows"):
        register_method(FederatedMethod("other", METHOD.build, variants={"toy_sign_wide": []}))
    with pytest.raises(ValueError, match="not valid: use lowercase"):
        FederatedMethod("Toy Sign", METHOD.build)
    with pytest.raises(ValueError, match="built in"):
        unregister_method("fedavg")


def test_a_build_that_returns_something_else_is_named(toy):
    register_method(FederatedMethod("toy_broken", lambda context: "not parts"))
    try:
        with pytest.raises(TypeError, match="method 'toy_broken': build returned str, expected MethodParts"):
            build_method("toy_broken", torch.nn.Linear(2, 2))
    finally:
        unregister_method("toy_broken")
    assert isinstance(build_method("toy_sign", torch.nn.Linear(2, 2)), MethodParts)


def test_a_resumed_run_ends_where_an_uninterrupted_one_does(toy, tiny_config):
    full = run_experiment(tiny_config("method.name=toy_sign", out="full"))
    first = tiny_config("method.name=toy_sign", "train.rounds=2", out="stopped")
    run_experiment(first)
    resumed = run_experiment(tiny_config("method.name=toy_sign", f"resume={first.output_dir}", out="stopped"))
    assert resumed["rounds"] == 3 and resumed["global_model_sha256"] == full["global_model_sha256"]


def test_compare_runs_its_rows(toy, tmp_path):
    overrides = [*TINY, "train.rounds=2", "train.local_epochs=1", f"output_dir={tmp_path / 'cmp'}"]
    paths = compare(None, CompareSettings(["toy_sign", "toy_sign_wide", "fedavg"], [0]), overrides)
    table = paths["md"].read_text()
    assert "| toy_sign |" in table and "| toy_sign_wide |" in table and "| fedavg |" in table
    runs = {row: json.loads((tmp_path / "cmp" / row / "seed_0" / "metrics.json").read_text()) for row in ("toy_sign", "toy_sign_wide")}
    assert runs["toy_sign_wide"]["config"]["method"]["toy_sign"]["scale"] == 2
    assert runs["toy_sign"]["global_model_sha256"] != runs["toy_sign_wide"]["global_model_sha256"]


def _entry_point(where: Path) -> dict[str, str]:
    """An installed package declaring the toy method as a ``fedmrn_pl.methods`` entry point; the env that sees it."""
    info = where / "toy_plugin-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[fedmrn_pl.methods]\ntoy_sign = tests.methods.toy_method:METHOD\n")
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(where), str(ROOT), os.environ.get("PYTHONPATH", "")])}


@pytest.mark.slow
def test_an_installed_plugin_runs_from_the_cli_and_on_two_ranks_like_one_process(tmp_path):
    env = _entry_point(tmp_path / "site")
    overrides = ["data.name=digits", "data.num_clients=6", "train.clients_per_round=4", "train.rounds=2",
                 "train.local_epochs=1", "progress=false", "method.name=toy_sign", "method.toy_sign.scale=2"]  # fmt: skip
    ranks, one = fit_on_two_ranks_and_one(tmp_path, overrides, env)
    assert ranks["world_size"] == 2 and ranks["global_model_sha256"] == one["global_model_sha256"]
    assert one["method"] == "toy_sign" and not any(r["dropped_clients"] for r in one["per_round"])
    bad = subprocess.run([sys.executable, "-m", "fedmrn_pl", "fit", "method.name=toy_sign", "method.toy_sign.scale=-1"],
                         capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)  # fmt: skip
    assert bad.returncode == 2 and bad.stderr.strip() == "error: method.toy_sign.scale=-1.0 is not valid; it must be >= 1"


class DampedFedMRN(Strategy):
    """A plugin's own strategy over masked noise: half of FedMRN's step (not a FedMRN subclass)."""

    name = "damped_fedmrn"
    aggregates_masked_noise = True

    def __init__(self) -> None:
        self.inner = FedMRN()

    def setup(self, module: torch.nn.Module) -> None:
        self.inner.setup(module)

    def aggregate(self, server_round, global_state, updates):
        new = self.inner.aggregate(server_round, global_state, updates)
        return None if new is None else {k: (global_state[k] + new[k]) / 2 if k in updates[0].masks else new[k] for k in new}


def test_a_plugin_strategy_that_aggregates_masked_noise_trains_with_the_masking_settings(tiny_config):
    damped = FederatedMethod("damped_fedmrn", lambda context: MethodParts(DampedFedMRN()), masked=True)
    register_method(damped)
    try:
        summary = run_experiment(tiny_config("method.name=damped_fedmrn", "method.mask=binary", out="damped"))
    finally:
        unregister_method("damped_fedmrn")
    plain = run_experiment(tiny_config("method.name=fedmrn", out="plain"))
    assert summary["method"] == "damped_fedmrn-binary" and not any(r["dropped_clients"] for r in summary["per_round"])
    assert summary["global_model_sha256"] != plain["global_model_sha256"]
    assert summary["uplink_bytes"] < summary["dense_uplink_bytes"] / 10  # masks, not weights


def test_a_strategy_and_masking_that_do_not_match_are_refused():
    from fedmrn_pl import ClassificationTask, FedAvg, FederatedDataModule, FederatedTrainer, MaskingConfig, build_model

    data = FederatedDataModule("digits", num_clients=4, seed=0)
    data.setup()
    module = ClassificationTask(build_model("cnn4", in_channels=1, num_classes=10, image_size=8, seed=0), 10)
    with pytest.raises(ValueError, match="strategy 'fedavg' takes dense or compressed updates and needs masking=None"):
        FederatedTrainer(module, data, FedAvg(), MaskingConfig(), clients_per_round=2)
    with pytest.raises(ValueError, match="strategy 'damped_fedmrn' aggregates masked noise and needs a MaskingConfig"):
        FederatedTrainer(module, data, DampedFedMRN(), None, clients_per_round=2)


def test_settings_that_cannot_be_a_config_section_are_refused_when_the_method_is_made():
    from dataclasses import dataclass, field

    @dataclass
    class NoDefault:
        x: float

    @dataclass
    class NotConfigurable:
        hook: object = field(default_factory=lambda: print)

    with pytest.raises(ValueError, match=r"method 'bad': settings NoDefault fields \['x'\] need defaults"):
        FederatedMethod("bad", METHOD.build, settings=NoDefault)
    with pytest.raises(ValueError, match="method 'bad': settings NotConfigurable cannot be a config section"):
        FederatedMethod("bad", METHOD.build, settings=NotConfigurable)
    with pytest.raises(ValueError, match=r"\['fedmrn_adam'\] already name another method's compare rows"):
        register_method(FederatedMethod("fedmrn_adam", METHOD.build))


def test_the_reserved_names_are_the_method_section_settings():
    from dataclasses import fields

    from fedmrn_pl.config import MethodConfig
    from fedmrn_pl.methods.registry import _RESERVED

    assert _RESERVED == {f.name for f in fields(MethodConfig)}


def test_a_run_keeps_only_its_own_method_section_so_its_config_loads_without_other_plugins(toy, tiny_config):
    config = tiny_config("train.rounds=1")
    run_experiment(config)
    saved = Path(config.output_dir) / "config.yaml"
    assert "toy_sign" not in saved.read_text() and "fedpm" not in saved.read_text()
    unregister_method("toy_sign")
    try:
        assert load_config(saved).method.name == "fedmrn"
        with pytest.raises(ConfigError, match="is the package that provides method 'toy_sign' installed"):
            load_config(saved, ["method.toy_sign.scale=2"])
    finally:
        register_method(METHOD)


def test_a_config_loaded_before_the_method_was_registered_is_named():
    config = load_config(None, [])
    register_method(METHOD)
    try:
        config.method.name = "toy_sign"
        with pytest.raises(ConfigError, match="no method.toy_sign section: it was loaded before method 'toy_sign' was registered"):
            build_trainer(config)
    finally:
        unregister_method("toy_sign")


SELF_REGISTERING = '''
from fedmrn_pl.methods import FederatedMethod, MethodParts, register_method

def build(context):
    from fedmrn_pl.federated.strategies import FedAvg
    return MethodParts(FedAvg())

METHOD = register_method(FederatedMethod("selfreg", build))

if __name__ == "__main__":
    from fedmrn_pl.methods import method_names
    print("script sees", method_names()[-2:])
'''


def test_entry_points_that_register_themselves_fail_to_load_or_are_also_registered_by_a_script(tmp_path):
    site = tmp_path / "site"
    info = site / "plugins-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: plugins\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[fedmrn_pl.methods]\nselfreg = selfreg:METHOD\nbroken = nosuchmodule:METHOD\n")
    (site / "selfreg.py").write_text(SELF_REGISTERING)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    probe = (
        "import selfreg\n"  # registers itself while the registry would load it as an entry point
        "from fedmrn_pl.methods import get_method, method_names\n"
        "print('names', method_names()[-1])\n"
        "try:\n    get_method('broken')\nexcept ValueError as error:\n    print('broken:', error)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "names selfreg" in done.stdout
    assert "method 'broken' is not available: the fedmrn_pl.methods entry point 'broken' (nosuchmodule:METHOD) failed" in done.stdout
    script = subprocess.run([sys.executable, str(site / "selfreg.py")], capture_output=True, text=True, timeout=120, env=env)
    assert script.returncode == 0 and "script sees ['fedpm', 'selfreg']" in script.stdout, script.stderr[-2000:]
