"""run_summary: the best value and round follow the monitored metric and its direction."""

import torch

from fedmrn_pl.monitor import Monitor
from fedmrn_pl.report import run_summary

STATE = {"w": torch.zeros(2)}


def history(per_key: dict[str, list[float]]) -> list[dict]:
    """Rounds with the byte counts a summary sums, and the given metrics."""
    count = len(next(iter(per_key.values())))
    return [
        {
            "round": index + 1,
            "uplink/bytes": 10,
            "uplink/dense_bytes": 320,
            "downlink/bytes": 320,
            "dropped_clients": [],
            **{key: values[index] for key, values in per_key.items()},
        }
        for index in range(count)
    ]


def test_a_regression_run_is_judged_by_its_lowest_error():
    rounds = history({"test_mse": [0.61, 0.12, 0.30], "test_mae": [0.7, 0.3, 0.4]})
    summary = run_summary("fedavg", rounds, STATE, 1.0, monitor=Monitor("test_mse", "min"))
    assert (summary["monitor"], summary["monitor_mode"]) == ("test_mse", "min")
    assert (summary["best_value"], summary["best_round"], summary["final_value"]) == (0.12, 2, 0.30)
    assert summary["best_test_accuracy"] is None and summary["final_test_accuracy"] is None


def test_an_error_mapped_to_test_acc_is_best_at_its_lowest_when_monitored_so():
    # metric_keys={"test/acc": "test_mse"}: the run, whose best accuracy was its worst round
    rounds = history({"test/acc": [0.61, 0.12, 0.30]})
    summary = run_summary("fedavg", rounds, STATE, 1.0, monitor=Monitor("test/acc", "min"))
    assert summary["best_test_accuracy"] == 0.12 and summary["best_round"] == 2


def test_accuracy_runs_keep_their_summary_and_name_the_monitor():
    rounds = history({"test/acc": [0.5, 0.9, 0.8], "test/loss": [1.0, 0.4, 0.5]})
    summary = run_summary("fedavg", rounds, STATE, 1.0)
    assert (summary["final_test_accuracy"], summary["best_test_accuracy"]) == (0.8, 0.9)
    assert (summary["monitor"], summary["monitor_mode"], summary["best_round"]) == ("test/acc", "max", 2)
    by_loss = run_summary("fedavg", rounds, STATE, 1.0, monitor=Monitor("test/loss"))
    assert (by_loss["best_value"], by_loss["best_round"], by_loss["best_test_accuracy"]) == (0.4, 2, 0.9)
