"""The core stays lean: light imports, no global side effects, no import cycle."""

from __future__ import annotations

import ast
import json
import logging
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from fedmrn_pl import FederatedDataModule, FederatedTrainer, FedMRN, MaskingConfig
from fedmrn_pl.update import ClientUpdate, NoiseSpec
from fedmrn_pl.wire import encode_update

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("lightning", "torchvision", "sklearn", "matplotlib", "wandb")


def _modules_after(code: str) -> dict:
    """Run ``code`` in a fresh interpreter; return which heavy modules it loaded, and its output."""
    probe = code + f"\nimport json, sys\nprint(json.dumps([m for m in {list(HEAVY)!r} if m in sys.modules]))"
    completed = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
    *output, loaded = completed.stdout.strip().splitlines()
    return {"loaded": json.loads(loaded), "output": "\n".join(output)}


def test_importing_the_wire_format_loads_no_training_stack():
    assert _modules_after("import fedmrn_pl.wire")["loaded"] == []


def test_inspect_loads_no_training_stack(tmp_path):
    import torch

    update = ClientUpdate(1, 2, 3, "binary", NoiseSpec(), 10, masks={"w": torch.ones(4, 4, dtype=torch.bool)})
    path = tmp_path / "p.fmrn"
    path.write_bytes(encode_update(update))
    probe = _modules_after(f"from fedmrn_pl.cli import main\nassert main(['inspect', {str(path)!r}]) == 0")
    assert "valid FedMRN payload" in probe["output"]
    assert probe["loaded"] == []


TRAINING_STACK = ("torch", "lightning", "torchvision", "wandb", *HEAVY)


def _cli(*argv: str) -> dict:
    """``python -X importtime -m fedmrn_pl ARGV``: its exit code, output, own stderr lines and training-stack imports."""
    command = [sys.executable, "-X", "importtime", "-m", "fedmrn_pl", *argv]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=120)
    lines = completed.stderr.splitlines()
    imported = {line.rpartition("|")[2].strip() for line in lines if line.startswith("import time:")}
    return {
        "code": completed.returncode,
        "out": completed.stdout,
        "err": [line for line in lines if not line.startswith("import time:")],
        "stack": sorted(name for name in imported if name.partition(".")[0] in TRAINING_STACK),
    }


@pytest.mark.parametrize(
    "overrides, words",
    [
        (["train.roundz=3"], "error: invalid config at 'train.roundz'"),
        (["method.name=fedpm", "method.fedpm.prior=0.5"], "error: method.fedpm.prior=0.5 is not valid"),
        (["model.name=resnet"], "error: model.name: Invalid value 'resnet'"),
    ],
)
def test_a_bad_config_is_refused_in_one_line_before_the_training_stack_loads(overrides, words):
    run = _cli("fit", *overrides)
    assert run["code"] == 2
    assert len(run["err"]) == 1 and run["err"][0].startswith(words), run["err"]
    assert run["stack"] == []


def test_a_typo_when_resuming_is_refused_before_the_training_stack_loads(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text("seed: 0\n")
    (run_dir / "checkpoint.pt").write_bytes(b"")  # only its presence is checked before the config
    run = _cli("fit", "--resume", str(run_dir), "train.roundz=3")
    assert run["code"] == 2
    assert len(run["err"]) == 1 and run["err"][0].startswith("error: invalid config at 'train.roundz'"), run["err"]
    assert run["stack"] == []


def test_a_bad_compare_config_is_refused_before_the_training_stack_loads():
    run = _cli("compare", "methods=[fedmrn,fedpm]", "method.downlink=masks", "method.fedpm.reset_every=2")
    assert run["code"] == 2 and run["err"][0].startswith("error: method.downlink=masks is not valid")
    assert run["stack"] == []


@pytest.mark.parametrize("command", ["fit", "compare"])
def test_help_loads_no_training_stack(command):
    run = _cli(command, "--help")
    assert run["code"] == 0 and "examples:" in run["out"]
    assert run["stack"] == []


def test_a_run_leaves_logging_levels_and_warning_filters_as_it_found_them():
    names = [None, "lightning", "lightning.pytorch", *logging.root.manager.loggerDict]
    before_levels = {name: logging.getLogger(name).level for name in names}
    before_filters = list(warnings.filters)
    data = FederatedDataModule("digits", num_clients=4, seed=0)
    data.setup()
    from fedmrn_pl import ClassificationTask, build_model

    module = ClassificationTask(build_model("mlp", in_channels=1, num_classes=10, image_size=8, seed=0), 10)
    FederatedTrainer(module, data, FedMRN(), MaskingConfig(), rounds=1, clients_per_round=2, batch_size=64).fit()
    assert {name: logging.getLogger(name).level for name in names} == before_levels
    assert warnings.filters == before_filters


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


@pytest.mark.parametrize("path", sorted((ROOT / "callbacks").glob("*.py")), ids=lambda p: p.name)
def test_callbacks_never_import_the_federated_loop(path):
    # federated/ installs callbacks by default; the other direction (lazy or TYPE_CHECKING
    # imports included) would be a cycle. Callbacks see the trainer as a FederatedRun.
    assert not {name for name in _imports(path) if name.startswith("fedmrn_pl.federated")}


@pytest.mark.parametrize("path", sorted((ROOT / "fedmrn_pl" / "methods").glob("*.py")), ids=lambda p: p.name)
def test_methods_never_import_the_config(path):
    # The config layer knows the methods (their names and settings), not the other way round.
    assert not {name for name in _imports(path) if name == "fedmrn_pl.config"}
