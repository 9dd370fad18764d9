"""examples/ run on tiny data: each script trains federated and writes its run outputs."""

import json
import runpy
import sys
from pathlib import Path

from examples import char_lstm, resnet_groupnorm, tied_lm
from examples.text_data import ALPHABET


def _outputs(run_dir: Path) -> dict:
    assert (run_dir / "accuracy_vs_round.png").is_file()
    return json.loads((run_dir / "metrics.json").read_text())


def test_char_lstm_learns_from_per_speaker_clients_with_its_own_metric_names(tmp_path, caplog):
    summary = char_lstm.main(tiny=True, output_dir=tmp_path)
    assert _outputs(tmp_path)["final_test_accuracy"] == summary["final_test_accuracy"]
    assert summary["final_test_accuracy"] > 1.5 / len(ALPHABET)  # the run reached val_acc through metric_keys
    assert summary["per_round"][-1]["train/loss"] < summary["per_round"][0]["train/loss"] * 1.05
    assert "logged no" not in caplog.text


def test_tied_lm_masks_and_uploads_the_tied_tensor_once(tmp_path):
    summary, trainer = tied_lm.main(tiny=True, output_dir=tmp_path)
    assert trainer.masked_names == ["embed.weight", "gru.weight_ih_l0", "gru.weight_hh_l0"]
    assert "head.weight" not in trainer.expected_manifest
    assert trainer.module.head.weight is trainer.module.embed.weight
    assert _outputs(tmp_path)["uplink_compression"] > 10


def test_resnet18_groupnorm_trains_on_cifar_shaped_data(tmp_path):
    summary = resnet_groupnorm.main(tiny=True, output_dir=tmp_path)
    assert summary["uplink_compression"] > 30  # 11M masked weights, GroupNorm affine dense
    assert _outputs(tmp_path)["rounds"] == 1


def test_an_example_runs_as_a_script(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["tied_lm", "--tiny", "--output-dir", str(tmp_path)])
    runpy.run_path(str(Path(tied_lm.__file__)), run_name="__main__")
    assert "uplink" in capsys.readouterr().out and (tmp_path / "metrics.json").is_file()


def test_peft_lora_with_a_task_type_trains_adapters_and_head_without_an_exclude_pattern(tmp_path):
    import pytest

    pytest.importorskip("peft")  # the zoo extra; .ci/run installs it
    from examples import peft_lora

    summary, trainer = peft_lora.main(tiny=True, output_dir=tmp_path)
    masked = trainer.masked_names
    assert len(masked) == 9 and sum("lora_" in name for name in masked) == 8
    assert any(name.endswith("classifier.modules_to_save.default.weight") for name in masked)
    assert all(not any(r["dropped_clients"]) for r in summary["per_round"])  # every client's update was accepted
    assert _outputs(tmp_path)["rounds"] == 2
    state = trainer.module.state_dict()
    assert set(state) == set(trainer.global_state) and not any("parametrizations" in name for name in state)
