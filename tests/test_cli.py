"""The fedmrn-pl command line: fit, inspect, config errors."""

import argparse
import json
from pathlib import Path

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
        ("train.rounds=0", ["train.rounds", "[1, 2147483647]"]),
        ("train.client_timeout=0", ["train.client_timeout", "> 0 seconds or null"]),
        ("train.threads=0", ["train.threads", ">= 1 (or null)"]),
        ("train.dist_timeout=-1", ["train.dist_timeout", "> 0 seconds"]),
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


def test_unsatisfiable_partitions_are_config_errors(tmp_path, capsys):
    overrides = ["data.name=digits", "data.num_clients=2000", "train.clients_per_round=5", f"output_dir={tmp_path / 'run'}"]
    assert main(["fit", *overrides]) == 2  # its own output_dir: the README's main job may have filled runs/default
    assert "error: data settings" in capsys.readouterr().err


def _files(root):
    """Every file under ``root`` with its bytes: a byte-for-byte picture of a directory."""
    return {str(path.relative_to(root)): path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


def _refused(argv, capsys) -> str:
    """Run ``argv``; assert exit code 2 and exactly one line on stderr; return that line."""
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err, err
    return err


@pytest.mark.parametrize(
    "overrides, words",
    [
        (["train.lr=${oc.env:FEDMRN_TEST_UNSET}"], "FEDMRN_TEST_UNSET"),
        (["train.rounds=${wandb.project}"], "could not be converted"),
        (["wandb.group=${data.root}", "data.root=${wandb.group}"], "Recursive interpolation"),
        (["data.root=${no_such_resolver:x}"], "no_such_resolver"),
        (["train.lr=inf"], "train.lr=inf is not valid"),
        (["train.lr=nan"], "train.lr=nan is not valid"),
        (["wandb.name=${oc.env:HOME}"], "published to W&B"),
    ],
)
def test_bad_interpolations_and_numbers_are_one_line_exit_2_and_write_nothing(tmp_path, capsys, overrides, words):
    assert words in _refused(["fit", *SMALL, *overrides, f"output_dir={tmp_path / 'run'}"], capsys)
    assert list(tmp_path.iterdir()) == []


def test_a_config_file_holding_a_list_is_one_line_exit_2(tmp_path, capsys):
    config = tmp_path / "list.yaml"
    config.write_text("- a\n- b\n")
    assert "not a list" in _refused(["fit", "--config", str(config), f"output_dir={tmp_path / 'run'}"], capsys)
    assert [p.name for p in tmp_path.iterdir()] == ["list.yaml"]


@pytest.mark.parametrize("below", ["", "/run"])
def test_an_output_dir_that_is_or_lies_under_a_file_is_one_line_exit_2(tmp_path, capsys, below):
    (tmp_path / "taken").write_text("mine")
    assert "is a file" in _refused(["fit", *SMALL, f"output_dir={tmp_path / 'taken'}{below}"], capsys)
    assert _files(tmp_path) == {"taken": b"mine"}


def test_a_refused_resume_leaves_the_run_byte_for_byte_and_it_still_resumes(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["fit", *SMALL, f"output_dir={out}"]) == 0
    before = _files(out)
    assert "config differs" in _refused(["fit", "--resume", str(out), "train.lr=0.5"], capsys)
    assert _files(out) == before
    assert main(["fit", "--resume", str(out), "train.rounds=2"]) == 0


def test_damaged_or_foreign_checkpoints_refuse_resume_in_one_line_and_change_nothing(tmp_path, capsys):
    import torch

    out = tmp_path / "run"
    assert main(["fit", *SMALL, f"output_dir={out}"]) == 0
    checkpoint = out / "checkpoint.pt"
    data = bytearray(checkpoint.read_bytes())
    data[len(data) // 2] ^= 0x10  # inside tensor data
    checkpoint.write_bytes(bytes(data))
    before = _files(out)
    assert "digest mismatch" in _refused(["fit", "--resume", str(out), "train.rounds=2"], capsys)
    assert _files(out) == before

    torch.save({"global_state": {}, "hook": argparse.Namespace()}, checkpoint)  # an arbitrary pickled object
    err = _refused(["fit", "--resume", str(out), "train.rounds=2"], capsys)
    assert "argparse.Namespace" in err and "weights_only" not in err and str(checkpoint) in err

    checkpoint.write_bytes(b"PK\x03\x04 truncated")
    assert "cannot be read" in _refused(["fit", "--resume", str(out)], capsys)


def test_a_run_without_accepted_uplink_prints_no_compression_figure(tmp_path, capsys, monkeypatch):
    import fedmrn_pl.experiment

    summary = {
        "method": "fedmrn-binary",
        "final_test_accuracy": 0.1,
        "best_test_accuracy": 0.1,
        "rounds": 1,
        "uplink_bytes": 0,
        "dense_uplink_bytes": 0,
        "uplink_compression": None,
        "dropped_clients": 2,
    }
    monkeypatch.setattr(fedmrn_pl.experiment, "run_experiment", lambda config: summary)
    assert main(["fit", *SMALL, f"output_dir={tmp_path}"]) == 0
    printed = capsys.readouterr().out
    assert "no compression figure" in printed and "-x" not in printed and "compression" in printed


def _payload(name: str) -> bytes:
    import torch

    from fedmrn_pl.update import ClientUpdate, NoiseSpec
    from fedmrn_pl.wire import encode_update

    update = ClientUpdate(1, 2, 3, "binary", NoiseSpec("uniform", 0.01), 4, {}, {name: torch.ones(2)})
    return encode_update(update)


def test_inspect_escapes_control_characters_from_the_payload(tmp_path, capsys):
    path = tmp_path / "evil.fmrn"
    path.write_bytes(_payload("bn.\x1b[2J\x1b]0;owned\x07\u202eweight"))
    assert main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out and "\u202e" not in out
    assert "bn.\\x1b[2J\\x1b]0;owned\\x07\\u202eweight" in out


def test_inspect_refuses_a_file_over_the_wire_limit_without_reading_it(tmp_path, capsys, monkeypatch):
    from fedmrn_pl.wire.format import DEFAULT_MAX_BYTES

    huge = tmp_path / "huge.fmrn"
    with open(huge, "wb") as handle:
        handle.truncate(DEFAULT_MAX_BYTES + 1)  # sparse: 2 GiB that take no disk and must not be read
    monkeypatch.setattr(Path, "read_bytes", lambda self: pytest.fail("read the whole file"))
    assert main(["inspect", str(huge)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"limit of {DEFAULT_MAX_BYTES} bytes" in err


def test_inspect_of_an_endless_device_stops_one_byte_past_the_limit(capsys, monkeypatch):
    import fedmrn_pl.wire.format

    monkeypatch.setattr(fedmrn_pl.wire.format, "DEFAULT_MAX_BYTES", 5000)
    assert main(["inspect", "/dev/zero"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "limit of 5000 bytes" in err


def test_inspect_shows_each_masks_noise_scale_of_an_adaptive_run(tmp_path, capsys):
    out = tmp_path / "adaptive"
    settings = [*SMALL, "train.rounds=2", "method.mask=signed", "method.noise_scale=adaptive"]
    assert main(["fit", *settings, f"output_dir={out}", "save_payloads=true"]) == 0
    issued = json.loads((out / "metrics.json").read_text())["per_round"][0]["next_noise_scales"]
    capsys.readouterr()
    second = sorted((out / "payloads").glob("round_0002_*.fmrn"))[0]
    assert main(["inspect", str(second)]) == 0
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()[10:]}
    for name, scale in issued.items():
        assert float(rows[name][-1]) == pytest.approx(scale, rel=1e-3)


def test_a_failing_evaluation_is_one_line_exit_1_after_saving_the_completed_rounds(tmp_path, capsys, monkeypatch):
    from fedmrn_pl.task import ClassificationTask

    evaluations = []
    test_step = ClassificationTask.test_step

    def fails_in_round_2(self, batch, batch_idx):
        evaluations.extend([1] if batch_idx == 0 else [])
        if len(evaluations) == 2:
            raise RuntimeError("CUDA error: device-side assert triggered")
        return test_step(self, batch, batch_idx)

    monkeypatch.setattr(ClassificationTask, "test_step", fails_in_round_2)
    out = tmp_path / "run"
    assert main(["fit", *SMALL, "train.rounds=3", f"output_dir={out}"]) == 1
    errors = capsys.readouterr().err
    assert "Traceback" not in errors
    assert [line for line in errors.splitlines() if line.startswith("error:")] == [
        "error: round 2: evaluating the global model with ClassificationTask.test_step failed: RuntimeError: "
        f"CUDA error: device-side assert triggered; the rounds before it are saved in {out}"
    ]
    assert json.loads((out / "metrics.json").read_text())["rounds"] == 1
    assert (out / "checkpoint.pt").is_file()


def test_a_run_judged_by_another_metric_prints_it_by_its_name(tmp_path, capsys, monkeypatch):
    import fedmrn_pl.experiment

    summary = {
        "method": "fedavg", "final_test_accuracy": None, "best_test_accuracy": None, "rounds": 3,
        "monitor": "test_mse", "monitor_mode": "min", "final_value": 0.0301, "best_value": 0.0123, "best_round": 2,
        "uplink_bytes": 10, "dense_uplink_bytes": 320, "uplink_compression": 32.0, "dropped_clients": 0,
    }  # fmt: skip
    monkeypatch.setattr(fedmrn_pl.experiment, "run_experiment", lambda config: summary)
    assert main(["fit", *SMALL, f"output_dir={tmp_path}"]) == 0
    printed = capsys.readouterr().out
    assert "fedavg: final test_mse 0.0301 (best 0.0123 in round 2, lower is better) after 3 rounds;" in printed
    assert "accuracy" not in printed


def test_fit_judged_by_the_test_loss(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["fit", *SMALL, "train.monitor=test/loss", f"output_dir={out}"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert (metrics["monitor"], metrics["monitor_mode"], metrics["best_round"]) == ("test/loss", "min", 1)
    printed = capsys.readouterr().out
    loss, accuracy = metrics["per_round"][0]["test/loss"], metrics["final_test_accuracy"]
    assert f"final test loss {loss:.4f} (best {loss:.4f} in round 1, lower is better), test accuracy {accuracy:.4f}" in printed


def _help(command: str, capsys) -> str:
    """``fedmrn-pl COMMAND --help`` as printed."""
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    return capsys.readouterr().out


def test_fit_help_lists_every_config_key_with_its_default_and_gives_examples(capsys):
    from fedmrn_pl.config import to_container

    text = _help("fit", capsys)
    sections = [(key, values) for key, values in to_container(load_config(), resolve=False).items() if isinstance(values, dict)]
    sections += [(f"method.{key}", values) for key, values in sections[2][1].items() if isinstance(values, dict)]
    assert [key for key, _ in sections[:3]] == ["data", "model", "method"] and len(sections) > 6
    for section, values in sections:
        assert f"  {section}.  " in text or f"  {section}.\n" in text, section
        block = text.split(f"  {section}.", 1)[1]
        for key, value in values.items():
            if not isinstance(value, dict):
                assert f" {key}=" in block, f"{section}.{key}"
    for shown in ("rounds=10", "lr=0.1", "name=mnist5k|cifar10", "mask=binary|signed", "downlink=dense|masks"):
        assert shown in text
    assert "examples:" in text and "fedmrn-pl fit --resume runs/default train.rounds=20" in text
    assert "default.yaml" in text and "cifar10_cnn8.yaml" in text


def test_compare_help_names_every_method(capsys):
    from fedmrn_pl.methods import compare_variants, method_names

    text = _help("compare", capsys)
    for method in method_names():
        assert f"  {method} " in text
    for name, overrides in compare_variants().items():
        assert " ".join(overrides) in text.split(f"  {name} ", 1)[1].splitlines()[0]


def test_a_failed_download_is_one_line_exit_2_naming_the_dataset_its_url_and_the_expected_path(
    tmp_path, capsys, monkeypatch
):
    import urllib.error

    import torchvision.datasets.utils

    def offline(url, *args, **kwargs):  # the network fails, as it does on a machine without one
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(torchvision.datasets.utils, "download_url", offline)
    argv = ["fit", "data.name=fmnist", "data.download=true", f"data.root={tmp_path}", f"output_dir={tmp_path / 'run'}"]
    err = _refused(argv, capsys)
    assert "Dataset 'fmnist' could not be downloaded from http://fashion-mnist.s3-website" in err
    assert "Name or service not known" in err
    assert f"{tmp_path / 'FashionMNIST' / 'raw'}: train-images-idx3-ubyte" in err
    assert not (tmp_path / "run").exists()


def test_a_refused_resume_names_each_differing_key_with_both_values(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["fit", *SMALL, f"output_dir={out}"]) == 0
    err = _refused(["fit", "--resume", str(out), "train.lr=0.5", "method.mask=signed", "train.rounds=3"], capsys)
    assert 'the config differs from the checkpoint\'s run in method.mask: "binary" in the run, "signed" now; ' in err
    assert "train.lr: 0.1 in the run, 0.5 now; only [" in err
    assert "train.rounds" not in err.split("; only")[0]  # a resume may change it


def test_a_checkpoint_without_its_config_still_refuses_a_changed_resume(tmp_path, capsys):
    import torch

    from fedmrn_pl.callbacks import save_checkpoint

    out = tmp_path / "run"
    assert main(["fit", *SMALL, f"output_dir={out}"]) == 0
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state.pop("run_config")["train"]["lr"] == 0.1
    del state["state_sha256"]
    save_checkpoint(state, out / "checkpoint.pt")  # as versions that stored only the digest wrote it
    err = _refused(["fit", "--resume", str(out), "train.lr=0.5"], capsys)
    assert "the config differs from the checkpoint's run in more than" in err
    assert main(["fit", "--resume", str(out), "train.rounds=2"]) == 0


def test_half_true_precision_is_refused_before_any_client_is_dropped(tmp_path, capsys):
    assert main(["fit", *SMALL, "train.precision=16-true", f"output_dir={tmp_path / 'run'}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "16-mixed" in err and not (tmp_path / "run" / "metrics.json").exists()


def test_a_run_whose_every_update_was_dropped_fails_with_the_first_reason(tmp_path, capsys):
    assert main(["fit", *SMALL, "train.client_timeout=1e-9", f"output_dir={tmp_path / 'run'}"]) == 1
    err = capsys.readouterr().err
    assert "no client update was accepted" in err and "timed out" in err
