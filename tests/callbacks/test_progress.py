"""ProgressDisplay: one plain line per round off a terminal, bars on one, silence when disabled."""

from __future__ import annotations

import io
import logging
import math
from types import SimpleNamespace
from typing import Any

import pytest

from fedmrn_pl.callbacks import ProgressDisplay
from fedmrn_pl.callbacks.progress import format_round, is_interactive
from fedmrn_pl.monitor import Monitor


def round_metrics(server_round: int, accuracy: float, dropped: int = 0) -> dict[str, Any]:
    return {
        "round": server_round,
        "clients": [0, 1, 2],
        "accepted_clients": 3 - dropped,
        "dropped_clients": [{"client_id": 2, "reason": "training failed"}] * dropped,
        "train/loss": 0.5,
        "uplink/bytes": 290_000,
        "uplink/cumulative_bytes": 290_000 * server_round,
        "uplink/dense_bytes": 7_830_000,
        "test/loss": 0.2311,
        "test/acc": accuracy,
        "round/seconds": 2.14,
    }


def simulate(
    display: ProgressDisplay, rounds: list[dict[str, Any]], total: int, monitor: Monitor = Monitor()
) -> SimpleNamespace:
    """Call the hooks the way FederatedTrainer does, on a stand-in trainer."""
    trainer = SimpleNamespace(rounds=total, completed_rounds=0, history=[], monitor=monitor)
    display.on_fit_start(trainer)
    for metrics in rounds:
        display.on_round_start(trainer, metrics["round"], metrics["clients"])
        for client_id in metrics["clients"]:
            display.on_client_fit_start(trainer, SimpleNamespace(client_id=client_id))
            display.on_client_fit_end(trainer, SimpleNamespace(client_id=client_id))
        trainer.history.append(metrics)
        trainer.completed_rounds = metrics["round"]
        display.on_round_end(trainer, metrics["round"], metrics)
    display.on_fit_end(trainer)
    return trainer


def test_format_round_shows_the_round_figures() -> None:
    metrics = round_metrics(3, 0.93124)
    history = [round_metrics(1, 0.5), round_metrics(2, 0.8), metrics]
    assert format_round(metrics, 10, history) == (
        "round 3/10  acc 0.9312  loss 0.2311  uplink 0.29 MB (cum 0.87 MB, 27.0x)  dropped 0  2.1 s"
    )


def test_format_round_tolerates_missing_and_nan_figures() -> None:
    metrics = {
        "round": 1,
        "test/acc": math.nan,
        "uplink/bytes": 0,
        "uplink/cumulative_bytes": 0,
        "dropped_clients": [{}, {}],
    }
    line = format_round(metrics, 2, [metrics])
    assert line.startswith("round 1/2  acc -  loss -  uplink 0.00 MB (cum 0.00 MB, -)  dropped 2")


def regression_metrics(server_round: int, mse: float) -> dict[str, Any]:
    """A regression module's round: ``test_mse`` and ``test_mae``, no accuracy."""
    metrics = round_metrics(server_round, 0.0)
    del metrics["test/acc"], metrics["test/loss"]
    return {**metrics, "test_mse": mse, "test_mae": 0.5}


def test_the_line_names_the_monitored_metric_and_shows_no_accuracy_a_run_lacks() -> None:
    metrics = regression_metrics(2, 0.01234)
    line = format_round(metrics, 10, [metrics], Monitor("test_mse", "min"))
    assert line.startswith("round 2/10  test_mse 0.0123  loss -  uplink 0.29 MB")
    assert "acc" not in line
    # test/loss mapped to test_mse: the same figure is shown once, by the module's name
    mapped = {**metrics, "test/loss": 0.01234}
    line = format_round(mapped, 10, [mapped], Monitor("test_mse", standard_key="test/loss"))
    assert line.startswith("round 2/10  test_mse 0.0123  uplink 0.29 MB")


def test_a_run_judged_by_its_loss_still_shows_its_accuracy() -> None:
    metrics = round_metrics(1, 0.61)
    assert format_round(metrics, 2, [metrics], Monitor("test/loss")).startswith("round 1/2  loss 0.2311  acc 0.6100  ")


def test_bars_and_lines_show_the_monitored_metric(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="fedmrn_pl")
    rounds = [regression_metrics(1, 0.25), regression_metrics(2, 0.125)]
    simulate(ProgressDisplay(interactive=False), rounds, total=2, monitor=Monitor("test_mse", "min"))
    simulate(ProgressDisplay(interactive=True), rounds, total=2, monitor=Monitor("test_mse", "min"))
    out = capsys.readouterr().out
    assert "round 2/2  test_mse 0.1250  loss -  uplink" in caplog.text and "test_mse=0.1250" in out
    assert "acc" not in out and "acc" not in caplog.text


def test_non_interactive_logs_one_line_per_round(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="fedmrn_pl")
    rounds = [round_metrics(1, 0.61), round_metrics(2, 0.85, dropped=1)]
    simulate(ProgressDisplay(), rounds, total=2)  # captured stdout is no terminal
    assert {record.name for record in caplog.records} == {"fedmrn_pl.progress"}
    lines = caplog.messages
    assert len(lines) == 2
    assert lines[0].startswith("round 1/2  acc 0.6100  loss 0.2311  uplink 0.29 MB (cum 0.29 MB, 27.0x)  dropped 0")
    assert lines[1].startswith("round 2/2  acc 0.8500  loss 0.2311  uplink 0.29 MB (cum 0.58 MB, 27.0x)  dropped 1")


def test_disabled_prints_nothing(capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="fedmrn_pl")
    simulate(ProgressDisplay(enabled=False), [round_metrics(1, 0.6)], total=1)
    simulate(ProgressDisplay(enabled=False, interactive=True), [round_metrics(1, 0.6)], total=1)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == "" and caplog.text == ""


def test_interactive_draws_bars_with_accuracy_and_uplink(capsys: pytest.CaptureFixture[str]) -> None:
    simulate(ProgressDisplay(interactive=True), [round_metrics(1, 0.61), round_metrics(2, 0.85)], total=2)
    out = capsys.readouterr().out
    assert "rounds" in out and "2/2" in out
    assert "acc=0.8500" in out and "uplink=0.58 MB" in out
    assert "round 1/2  acc" not in out  # no plain lines when bars are drawn


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_terminal_is_interactive_unless_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setattr("sys.stdout", _Terminal())
    assert is_interactive()
    monkeypatch.setenv("CI", "true")
    assert not is_interactive()
    monkeypatch.setattr("sys.stdout", io.StringIO())
    monkeypatch.delenv("CI")
    assert not is_interactive()
