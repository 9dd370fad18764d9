"""WandbLogger: a real offline W&B run, read back from its ``.wandb`` file on disk.

wandb 0.31 has no Python reader for its transaction log (the old
``wandb.sdk.internal.datastore`` moved into the Go core), so ``read_records`` below
decodes it: a 7-byte ``:W&B`` header, then LevelDB log records in 32 KiB blocks, each
a ``wandb.proto.wandb_internal_pb2.Record`` protobuf with a CRC-32 over type + data.
"""

from __future__ import annotations

import json
import math
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
import wandb
from wandb.proto.wandb_internal_pb2 import Record

from fedmrn_pl.callbacks import WandbLogger
from fedmrn_pl.callbacks.wandb_logger import MODEL_NAME, resolve_mode, round_scalars
from fedmrn_pl.config import load_config, to_container
from fedmrn_pl.experiment import run_experiment
from fedmrn_pl.report import global_model_sha256, run_summary
from fedmrn_pl.plots import PLOT_NAMES

_BLOCK, _HEADER = 32768, 7
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def read_records(path: Path) -> list[Record]:
    """Every record of a ``run-*.wandb`` transaction log, checksums verified."""
    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B transaction log"
    position, pending, chunks = _HEADER, b"", []
    while position + _HEADER <= len(data):
        room = _BLOCK - position % _BLOCK
        checksum, length, kind = struct.unpack_from("<IHB", data, position)
        if room < _HEADER or kind == 0:  # block trailer / zero padding
            position += room
            continue
        chunk = data[position + _HEADER : position + _HEADER + length]
        assert zlib.crc32(bytes([kind]) + chunk) == checksum, f"bad checksum at byte {position}"
        position += _HEADER + length
        if kind == _FULL:
            chunks.append(chunk)
        elif kind == _FIRST:
            pending = chunk
        elif kind == _MIDDLE:
            pending += chunk
        elif kind == _LAST:
            chunks.append(pending + chunk)
    records = []
    for chunk in chunks:
        record = Record()
        record.ParseFromString(chunk)
        records.append(record)
    return records


def of_type(records: list[Record], kind: str) -> Iterator[Any]:
    return (getattr(record, kind) for record in records if record.WhichOneof("record_type") == kind)


def flat(items: Any) -> dict[str, Any]:
    """Top-level keys of history/summary items (nested media fields are skipped)."""
    values = {}
    for item in items:
        key = item.key or (item.nested_key[0] if len(item.nested_key) == 1 else None)
        if key is not None:
            values[key] = json.loads(item.value_json)
    return values


def offline_logs(root: Path) -> list[Path]:
    """The run logs under ``root``, complete on disk.

    ``run.finish()`` returns before wandb-core closes (and flushes) the run's log, as
    at the end of a process; ``wandb.teardown()`` waits for that.
    """
    wandb.teardown()
    return sorted(root.glob("wandb/offline-run-*/run-*.wandb"))


@pytest.fixture
def wandb_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Offline, silent W&B whose every file (settings, cache, artifact staging) lives under tmp_path."""
    home = tmp_path / "wandb-home"
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_X_DISABLE_STATS", "true")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    for variable in ("WANDB_DIR", "WANDB_DATA_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.setenv(variable, str(home / variable.lower()))
    return home


def test_offline_run_records_what_the_trainer_computed(wandb_env: Path, tmp_path: Path) -> None:
    config = load_config(
        None,
        [
            "data.name=digits",
            "data.num_clients=6",
            "train.clients_per_round=2",
            "train.rounds=2",
            "train.local_epochs=1",
            "train.batch_size=32",
            "progress=false",
            "wandb.enabled=true",
            "wandb.tags=[test]",
            f"output_dir={tmp_path / 'run'}",
        ],
    )
    summary = run_experiment(config)
    per_round = summary["per_round"]

    (log,) = offline_logs(tmp_path / "run")
    records = read_records(log)
    (run,) = of_type(records, "run")
    assert run.project == "fedmrn-pl" and list(run.tags) == ["test"]
    assert log.name == f"run-{run.run_id}.wandb"
    logged_config = {item.key: json.loads(item.value_json) for item in run.config.update if item.key != "_wandb"}
    assert logged_config == to_container(config)

    metrics = {(m.name or m.glob_name): m.step_metric for m in of_type(records, "metric")}
    assert metrics == {"round": "", "*": "round"}

    rows = {history.step.num: flat(history.item) for history in of_type(records, "history")}
    assert sorted(rows) == [1, 2]
    for expected in per_round:
        row = rows[expected["round"]]
        assert row["round"] == expected["round"]
        assert row["test/acc"] == pytest.approx(expected["test/acc"])
        assert row["test/loss"] == pytest.approx(expected["test/loss"])
        assert row["train/loss"] == pytest.approx(expected["train/loss"])
        for key in ("uplink/bytes", "uplink/cumulative_bytes", "downlink/bytes"):
            assert row[key] == expected[key]
        assert row["uplink/compression"] == pytest.approx(expected["uplink/compression"])
        assert row["mask/mask_ones_fraction"] == pytest.approx(expected["mask/mask_ones_fraction"])
        assert row["clients/dropped"] == 0 and row["clients/accepted"] == 2

    final: dict[str, Any] = {}
    for update in of_type(records, "summary"):
        final.update(flat(update.update))
    for key in ("final_test_accuracy", "best_test_accuracy", "uplink_compression"):
        assert final[key] == pytest.approx(summary[key])
    for key in ("uplink_bytes", "dense_uplink_bytes", "method", "global_model_sha256"):
        assert final[key] == summary[key]

    files_dir = log.parent / "files"
    images = [
        item for history in of_type(records, "history") for item in history.item if item.nested_key[-1:] == ["path"]
    ]
    assert sorted(item.nested_key[0] for item in images) == ["plots/accuracy_vs_round", "plots/accuracy_vs_uplink"]
    assert all((files_dir / json.loads(item.value_json)).is_file() for item in images)
    assert all((tmp_path / "run" / name).is_file() for name in PLOT_NAMES)

    (artifact,) = of_type(records, "artifact")
    assert artifact.type == "model" and artifact.name == f"model-{run.run_id}"
    assert {"latest", "final"} <= set(artifact.aliases)
    (entry,) = artifact.manifest.contents
    assert entry.path == MODEL_NAME
    model = torch.load(entry.local_path, weights_only=True)  # the staged copy W&B will upload
    assert global_model_sha256(model) == summary["global_model_sha256"]
    assert (tmp_path / "run" / MODEL_NAME).is_file()

    (exit_record,) = of_type(records, "exit")
    assert exit_record.exit_code == 0


def test_failed_run_exits_1_and_a_resume_continues_the_same_run(wandb_env: Path, tmp_path: Path) -> None:
    history = [
        {
            "round": 1,
            "dropped_clients": [],
            "accepted_clients": 1,
            "uplink/bytes": 10,
            "uplink/cumulative_bytes": 10,
            "uplink/dense_bytes": 320,
            "downlink/bytes": 320,
            "test/acc": 0.5,
            "test/loss": 1.0,
        }
    ]
    trainer = SimpleNamespace(
        history=[], completed_rounds=0, global_state={"w": torch.ones(2, 2)}, elapsed_seconds=1.0, summary=None,
        run_config=lambda: {},
    )
    first = WandbLogger(dir=tmp_path, log_model=False)
    first.on_fit_start(trainer)
    first.on_exception(trainer, RuntimeError("client crashed"))
    wandb.teardown()  # the failed process ends; the resume happens in a new one
    state = first.state_dict()
    assert state == {"run_id": first.run_id} and first.run_id

    resumed = WandbLogger(dir=tmp_path, log_model=False)
    resumed.load_state_dict(state)
    resumed.on_fit_start(trainer)
    assert resumed.run_id == first.run_id
    trainer.history, trainer.completed_rounds = history, 1
    trainer.summary = run_summary("fedmrn-binary", history, trainer.global_state, 2.0)
    resumed.on_round_end(trainer, 1, history[0])
    resumed.on_fit_end(trainer)

    logs = offline_logs(tmp_path)
    assert [log.name for log in logs] == [f"run-{first.run_id}.wandb"] * 2
    exits = [next(of_type(read_records(log), "exit")).exit_code for log in logs]
    assert exits == [1, 0]
    rows = [flat(h.item) for h in of_type(read_records(logs[1]), "history")]
    assert rows[0]["test/acc"] == 0.5


def test_disabled_mode_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WANDB_MODE", raising=False)
    logger = WandbLogger(mode="disabled", dir=tmp_path / "run")
    trainer = SimpleNamespace(history=[], completed_rounds=0, global_state={}, summary=None)
    logger.on_fit_start(trainer)
    logger.on_round_end(trainer, 1, {"round": 1})
    logger.on_fit_end(trainer)
    assert logger.run is None and not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("configured", "environment", "expected"),
    [
        ("offline", None, "offline"),
        (None, None, "offline"),
        ("online", None, "online"),
        ("disabled", None, "disabled"),
        ("online", "offline", None),  # WANDB_MODE is set: wandb reads it itself
        ("disabled", "online", "disabled"),
        ("online", "disabled", "disabled"),
    ],
)
def test_resolve_mode(
    configured: str | None, environment: str | None, expected: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    if environment is None:
        monkeypatch.delenv("WANDB_MODE", raising=False)
    else:
        monkeypatch.setenv("WANDB_MODE", environment)
    assert resolve_mode(configured) == expected


def test_invalid_mode_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"'shared' is not valid; choose one of \['offline', 'online', 'disabled'\]"):
        WandbLogger(mode="shared")


def test_round_scalars_keep_grouped_numbers_and_count_clients() -> None:
    metrics = {
        "round": 4,
        "clients": [1, 2, 3],
        "accepted_clients": 2,
        "kept_previous_model": False,
        "dropped_clients": [{"client_id": 3, "reason": "invalid payload"}],
        "test/acc": 0.9,
        "train/loss": math.nan,
        "uplink/bytes": 100,
        "custom/flag": True,
    }
    assert round_scalars(metrics) == {
        "round": 4,
        "test/acc": 0.9,
        "uplink/bytes": 100,
        "clients/accepted": 2,
        "clients/dropped": 1,
        "round/kept_previous_model": 0,
    }


def test_a_python_api_run_logs_hparams_masking_and_trainer_settings(wandb_env: Path, tmp_path: Path) -> None:
    from fedmrn_pl import FederatedTrainer, FedMRN, MaskingConfig
    from tests.federated.test_one_mask_per_step import TiedLM, TokenClients

    class SavedLM(TiedLM):
        def __init__(self, hidden: int = 16, note: str = "tied") -> None:
            super().__init__(hidden)
            self.save_hyperparameters()

    trainer = FederatedTrainer(
        SavedLM(), TokenClients(), FedMRN(), MaskingConfig(), rounds=1, clients_per_round=1, local_epochs=2,
        callbacks=[WandbLogger(dir=tmp_path, log_model=False)],
    )
    trainer.fit()
    (log,) = offline_logs(tmp_path)
    run = next(of_type(read_records(log), "run"))
    config = {item.key: json.loads(item.value_json) for item in run.config.update if item.key != "_wandb"}
    assert config["module"]["class"].endswith(".SavedLM") and config["module"]["hparams"] == {"hidden": 16, "note": "tied"}
    assert config["masking"]["kind"] == "signed" and config["masking"]["noise"] == {"family": "uniform", "alpha": 0.01}
    assert config["strategy"] == "fedmrn" and config["trainer"]["local_epochs"] == 2
    assert config["trainer"]["metric_keys"]["test/acc"] == "test/acc"


def test_round_scalars_keep_the_modules_keys_without_a_slash() -> None:
    metrics = {"round": 2, "clients": [0, 1], "accepted_clients": 2, "dropped_clients": [], "test_mse": 0.25,
               "test_mae": 0.5, "epoch": 3, "note": "text", "val_acc": math.inf}  # fmt: skip
    scalars = round_scalars(metrics)
    assert scalars["test_mse"] == 0.25 and scalars["test_mae"] == 0.5 and scalars["epoch"] == 3
    assert not {"note", "val_acc", "clients", "accepted_clients", "dropped_clients"} & set(scalars)


def test_a_regression_run_logs_every_metric_and_its_best_by_its_own_direction(wandb_env: Path, tmp_path: Path) -> None:
    from tests.federated.test_api_outputs import regression_trainer

    trainer = regression_trainer(callbacks=[WandbLogger(dir=tmp_path, log_model=False)])
    history = trainer.fit()
    (log,) = offline_logs(tmp_path)
    records = read_records(log)
    rows = {row.step.num: flat(row.item) for row in of_type(records, "history")}
    for expected in history:
        row = rows[expected["round"]]
        assert row["test_mse"] == pytest.approx(expected["test_mse"])
        assert row["test_mae"] == pytest.approx(expected["test_mae"])
    final: dict[str, Any] = {}
    for update in of_type(records, "summary"):
        final.update(flat(update.update))
    assert final["test_mae"] == pytest.approx(history[-1]["test_mae"])  # W&B's own summary: the last value
    mse = [metrics["test_mse"] for metrics in history]
    assert (final["monitor"], final["monitor_mode"]) == ("test_mse", "min")
    assert final["best_value"] == pytest.approx(min(mse)) and final["best_round"] == 1 + mse.index(min(mse))
