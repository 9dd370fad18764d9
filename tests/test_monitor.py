"""Monitor: the metric a run is judged by, which way is better, and its best round."""

import math

import pytest

from fedmrn_pl.monitor import Monitor, MonitorMode


def rounds(key: str, values: list[float | None]) -> list[dict]:
    return [{"round": r, key: v} for r, v in enumerate(values, start=1)]


@pytest.mark.parametrize(
    ("key", "standard_key", "mode"),
    [("test/acc", None, "max"), ("test/loss", None, "min"), ("train/loss", None, "min"), ("val_loss", "test/loss", "min")],
)
def test_standard_keys_bring_their_own_mode(key, standard_key, mode):
    assert Monitor(key, standard_key=standard_key).mode is MonitorMode(mode)


def test_a_key_of_the_module_must_say_which_way_is_better():
    with pytest.raises(ValueError, match=r"^monitor='test_mse' needs monitor_mode='max' \(higher is better\) or 'min'"):
        Monitor("test_mse")
    with pytest.raises(ValueError, match=r"monitor_mode 'lower' is not valid; choose one of \['max', 'min'\]"):
        Monitor("test_mse", "lower")
    with pytest.raises(ValueError, match="monitor must be a non-empty str"):
        Monitor("")


def test_lower_is_better_picks_the_lowest_round_and_the_earliest_on_ties():
    monitor = Monitor("test_mse", "min")
    history = rounds("test_mse", [0.5, 0.2, None, math.nan, 0.2, 0.9])
    assert monitor.best(history) == (2, 0.2)
    assert Monitor("test_mse", "max").best(history) == (6, 0.9)
    assert monitor.best(rounds("test_mse", [None, math.nan])) is None


def test_labels_name_the_metric_and_the_direction():
    assert (Monitor().label, Monitor().better) == ("test accuracy", "higher is better")
    assert (Monitor("test_mse", "min").label, Monitor("test_mse", "min").better) == ("test_mse", "lower is better")


def test_a_summary_without_a_monitor_is_judged_by_test_accuracy():
    assert Monitor.of_summary({"method": "fedavg"}) == Monitor("test/acc", "max")
    assert Monitor.of_summary({"monitor": "test_mse", "monitor_mode": "min"}) == Monitor("test_mse", "min")
