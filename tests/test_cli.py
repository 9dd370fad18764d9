"""The fedmrn-pl command line: fit, inspect, config errors."""

import json

import pytest

from fedmrn_pl.cli import main
from fedmrn_pl.config import ConfigError, bundled_config_path, load_config

SMALL = [
    "data.name=digits",
    "data.num_clients=6",
    "train.clients_per_round=2",
    "train.rounds=1",
    "train.local_epochs=1",
    "progress=false",
]


def test_fit_writes_metrics_and_saves_payloads_that_inspect_accepts(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["fit", *SMALL, f"output_dir={out}", "save_payloads=true"]) == 0
    printed = capsys.readouterr().out
    assert "compression" in printed and str(out / "metrics.json") in printed
    metrics = json.loads((out / "metrics.json").read_text())
    payloads = sorted((out / "payloads").glob("*.fmrn"))
    assert len(payloads) == 2
    assert metrics["uplink_bytes"] == sum(p.stat().st_size for p in payloads)

    assert main(["inspect", str(payloads[0])]) == 0
    summary = capsys.readouterr().out
    assert "valid FedMRN payload" in summary and "mask" in summary and "server_round" in summary


def test_inspect_rejects_a_corrupted_payload_with_one_line_and_no_traceback(tmp_path, capsys):
    out = tmp_path / "run"
    main(["fit", *SMALL, f"output_dir={out}", "save_payloads=true"])
    capsys.readouterr()
    payload = sorted((out / "payloads").glob("*.fmrn"))[0]
    damaged = tmp_path / "damaged.fmrn"
    data = bytearray(payload.read_bytes())
    data[100] ^= 0xFF
    damaged.write_bytes(bytes(data))
    assert main(["inspect", str(damaged)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and "checksum" in err


def test_inspect_reports_a_missing_file(tmp_path, capsys):
    assert main(["inspect", str(tmp_path / "nope.fmrn")]) == 2
    assert "cannot read" in capsys.readouterr().err


@pytest.mark.parametrize(
    "override, words",
    [
        ("train.foo=1", ["train.foo", "valid keys", "rounds"]),
        ("method.mask=ternary", ["method.mask", "binary", "signed"]),
        ("data.name=imagenet", ["data.name", "mnist5k", "cifar10"]),
        ("train.rounds=0", ["train.rounds", ">= 1"]),
        ("train.rounds=many", ["train.rounds"]),
        ("data.partition=random", ["iid", "dirichlet", "label_count"]),
        ("train.clients_per_round=50", ["exceeds data.num_clients"]),
        ("rounds", ["key=value"]),
    ],
)
def test_bad_config_values_are_rejected_with_the_valid_choices(override, words, capsys):
    with pytest.raises(ConfigError) as error:
        load_config(None, [override])
    for word in words:
        assert word in str(error.value)
    assert main(["fit", override]) == 2
    assert "error:" in capsys.readouterr().err


def test_every_bundled_config_is_valid():
    for name in ("default", "fmnist_cnn4", "svhn_cnn4", "cifar10_cnn8", "cifar100_cnn8"):
        config = load_config(bundled_config_path(name))
        assert config.train.rounds >= 1


def test_resume_of_a_directory_without_checkpoint_fails_cleanly(tmp_path, capsys):
    assert main(["fit", "--resume", str(tmp_path)]) == 2
    assert "checkpoint" in capsys.readouterr().err


def test_a_missing_torchvision_dataset_names_the_expected_path(tmp_path, capsys):
    config = str(bundled_config_path("cifar10_cnn8"))
    assert main(["fit", "--config", config, f"data.root={tmp_path}", f"output_dir={tmp_path / 'run'}"]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path) in err and "cifar-10-batches-py" in err and "download" in err


def test_overrides_may_come_on_both_sides_of_resume_and_a_changed_run_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["fit", *SMALL, f"output_dir={out}"]) == 0
    assert main(["fit", "progress=false", "--resume", str(out), "train.rounds=2"]) == 0
    assert json.loads((out / "metrics.json").read_text())["rounds"] == 2
    assert "resume" not in (out / "config.yaml").read_text().replace("resume: null", "")
    capsys.readouterr()
    assert main(["fit", "--resume", str(out), "seed=5", "train.rounds=3"]) == 2
    assert "config differs from the checkpoint" in capsys.readouterr().err


def test_unsatisfiable_partitions_are_config_errors(capsys):
    assert main(["fit", "data.name=digits", "data.num_clients=2000", "train.clients_per_round=5"]) == 2
    assert "error: data settings" in capsys.readouterr().err
