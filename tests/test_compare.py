"""``fedmrn-pl compare`` on a tiny config: the CSV, the Markdown table, the plots, and resuming."""

from __future__ import annotations

import csv
import json
import math

import pytest

from fedmrn_pl.cli import main
from fedmrn_pl.compare import parse_compare_args, summarise
from fedmrn_pl.methods import compare_variants

TINY = ["data.name=digits", "data.num_clients=6", "train.clients_per_round=2", "train.rounds=2",
        "train.local_epochs=1", "train.batch_size=32", "progress=false"]  # fmt: skip


def test_compare_writes_the_table_and_plots_and_a_second_call_resumes(tmp_path, capsys):
    out = tmp_path / "cmp"
    args = ["compare", "methods=[fedavg,fedmrn,ef_signsgd,topk]", "seeds=[0,1]", "target_accuracy=0.15",
            *TINY, f"output_dir={out}"]  # fmt: skip
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "| method |" in printed and "ef_signsgd" in printed
    for name in ("compare.csv", "compare.md", "accuracy_vs_round.png", "accuracy_vs_uplink.png"):
        assert (out / name).stat().st_size > 0
    rows = {row["method"]: row for row in csv.DictReader((out / "compare.csv").open())}
    assert list(rows) == ["fedavg", "fedmrn", "ef_signsgd", "topk"]
    # dense float32, deflated by byte plane where shorter (method.dense_encoding=deflate, the default)
    assert 20 < float(rows["fedavg"]["bits_per_param"]) <= 32.1
    assert float(rows["fedmrn"]["bits_per_param"]) < 1.2
    assert all(rows[m]["seeds"] == "2" for m in rows)
    for method in rows:
        for seed in (0, 1):
            assert json.loads((out / method / f"seed_{seed}" / "metrics.json").read_text())["rounds"] == 2
    md = (out / "compare.md").read_text()
    assert md.count("\n") == 2 + 4 and " ± " in md

    # Stopped part-way: one run lost its metrics.json but kept its checkpoint; another never ran.
    (out / "topk" / "seed_1" / "metrics.json").unlink()
    before = (out / "fedavg" / "seed_0" / "metrics.json").read_text()
    assert main([*args[:1], "methods=[fedavg,topk]", "seeds=[0,1]", *TINY, f"output_dir={out}"]) == 0
    log = capsys.readouterr().out
    assert "resuming topk seed 1" in log and "fedavg seed 0 already done" in log
    assert (out / "fedavg" / "seed_0" / "metrics.json").read_text() == before


def test_compare_refuses_to_reuse_finished_runs_made_with_other_settings(tmp_path, capsys):
    out = tmp_path / "cmp"
    args = ["compare", "methods=[fedavg]", "seeds=[0]", *TINY, f"output_dir={out}"]
    assert main(args) == 0
    before = (out / "fedavg" / "seed_0" / "metrics.json").read_text()
    capsys.readouterr()
    assert main([*args, "train.lr=0.5"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "other settings" in err and "overwrite=true" in err
    assert (out / "fedavg" / "seed_0" / "metrics.json").read_text() == before
    assert main([*args, "train.lr=0.5", "overwrite=true"]) == 0
    assert json.loads((out / "fedavg" / "seed_0" / "metrics.json").read_text())["config"]["train"]["lr"] == 0.5


def test_compare_arguments_are_checked():
    settings, overrides = parse_compare_args(["methods=[fedavg,eden]", "seeds=[3]", "train.rounds=2"])
    assert settings.methods == ["fedavg", "eden"] and settings.seeds == [3] and overrides == ["train.rounds=2"]
    assert parse_compare_args([])[0].methods == list(compare_variants())
    with pytest.raises(ValueError, match="choose from"):
        parse_compare_args(["methods=[nope]"])
    with pytest.raises(ValueError, match="target_accuracy"):
        parse_compare_args(["target_accuracy=2"])


def test_summary_reports_the_cost_to_reach_the_target():
    run = lambda accs: {"final_test_accuracy": accs[-1], "best_test_accuracy": max(accs), "uplink_bytes": 300,  # noqa: E731
                        "dense_uplink_bytes": 9600, "wall_seconds": 1.0,
                        "per_round": [{"round": i + 1, "test/acc": a, "uplink/cumulative_bytes": 100 * (i + 1)}
                                      for i, a in enumerate(accs)]}  # fmt: skip
    (row,) = summarise({"m": [run([0.2, 0.6, 0.7]), run([0.5, 0.4, 0.9])]}, target=0.5)
    assert row["bits_per_param"] == 1.0 and row["final_acc_mean"] == pytest.approx(0.8)
    assert row["rounds_to_target"] == 1.5 and row["reached_target"] == "2/2"
    assert row["uplink_mb_to_target"] == pytest.approx(150 / 1e6)
    (never,) = summarise({"m": [run([0.2, 0.3, 0.4])]}, target=0.5)
    assert math.isnan(never["rounds_to_target"]) and never["reached_target"] == "0/1"


def test_every_named_variant_is_a_valid_config():
    from fedmrn_pl.config import load_config

    for name, overrides in compare_variants().items():
        config = load_config(None, list(overrides))
        assert config.method.name == overrides[0].partition("=")[2], name
