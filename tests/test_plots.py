"""Run plots: PNGs from hand-written metrics.json files, and clear errors for bad ones."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from matplotlib.image import imread

from fedmrn_pl import plots
from fedmrn_pl.monitor import Monitor
from fedmrn_pl.plots import PLOT_NAMES, load_run, plot_histories, plot_runs

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def write_run(run_dir: Path, method: str, accuracies: list[float | None], bytes_per_round: int) -> Path:
    """A metrics.json in the documented format, with made-up per-round values."""
    per_round = []
    for server_round, accuracy in enumerate(accuracies, start=1):
        per_round.append(
            {
                "round": server_round,
                "clients": [0, 1],
                "accepted_clients": 2,
                "dropped_clients": [],
                "kept_previous_model": False,
                "train/loss": 1.0 / server_round,
                "uplink/bytes": bytes_per_round,
                "uplink/cumulative_bytes": bytes_per_round * server_round,
                "uplink/dense_bytes": 3_134_784,
                "uplink/compression": 3_134_784 / bytes_per_round,
                "downlink/bytes": 3_134_784,
                "test/loss": 2.0 / server_round,
                "test/acc": accuracy,
                "round/seconds": 1.5,
            }
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    summary = {"method": method, "rounds": len(per_round), "per_round": per_round}
    (run_dir / "metrics.json").write_text(json.dumps(summary))
    return run_dir


@pytest.fixture
def two_runs(tmp_path: Path) -> list[Path]:
    """A FedAvg run (dense uplink) and a FedMRN run (about 27x less uplink)."""
    return [
        write_run(tmp_path / "fedavg", "fedavg", [0.52, 0.81, 0.90, 0.93], 3_134_784),
        write_run(tmp_path / "fedmrn", "fedmrn-binary", [0.31, 0.74, None, 0.91], 115_522),
    ]


def assert_valid_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, f"{path} is not a PNG"
    assert len(data) > 10_000, f"{path} is suspiciously small ({len(data)} bytes)"
    height, width, _ = imread(path).shape
    assert width > 400 and height > 300


def test_plot_runs_writes_both_pngs(two_runs: list[Path], tmp_path: Path) -> None:
    paths = plot_runs(two_runs, tmp_path / "plots")
    assert [path.name for path in paths] == list(PLOT_NAMES)
    for path in paths:
        assert path.parent == tmp_path / "plots"
        assert_valid_png(path)


def test_plot_run_writes_into_the_run_directory(two_runs: list[Path]) -> None:
    paths = plot_runs([two_runs[1]], two_runs[1])
    assert paths == [two_runs[1] / name for name in PLOT_NAMES]
    for path in paths:
        assert_valid_png(path)


def test_lines_are_labelled_by_method_and_by_directory_when_methods_collide(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[list[str]] = []
    monkeypatch.setattr(plots, "plot_histories", lambda runs, out_dir, monitor=None: seen.append([label for label, _ in runs]) or [])
    first = write_run(tmp_path / "seed0", "fedmrn-binary", [0.5], 100)
    second = write_run(tmp_path / "seed1", "fedmrn-binary", [0.6], 100)
    dense = write_run(tmp_path / "dense", "fedavg", [0.7], 1000)
    plot_runs([first, second, dense], tmp_path / "out")
    assert seen == [["fedmrn-binary (seed0)", "fedmrn-binary (seed1)", "fedavg"]]


def test_plot_histories_takes_live_histories(tmp_path: Path) -> None:
    _, history = load_run(write_run(tmp_path / "run", "fedavg", [0.4, 0.6], 1000))
    paths = plot_histories([("live", history)], tmp_path / "live")
    assert all(path.is_file() for path in paths)


def write_regression_run(run_dir: Path, mse: list[float]) -> Path:
    """A regression run's metrics.json: judged by test_mse (lower is better), no test/acc at all."""
    run_dir.mkdir(parents=True, exist_ok=True)
    per_round = [
        {"round": r, "uplink/cumulative_bytes": 1000 * r, "test_mse": value, "test_mae": 2 * value}
        for r, value in enumerate(mse, start=1)
    ]
    summary = {"method": "fedavg", "monitor": "test_mse", "monitor_mode": "min", "per_round": per_round}
    (run_dir / "metrics.json").write_text(json.dumps(summary))
    return run_dir


def test_a_regression_run_is_plotted_by_its_metric_with_the_lowest_round_circled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    drawn: list[tuple] = []
    draw = plots._draw
    monkeypatch.setattr(plots, "_draw", lambda runs, monitor: drawn.append(draw(runs, monitor)) or drawn[-1])
    paths = plot_runs([write_regression_run(tmp_path / "run", [0.61, 0.12, 0.30])], tmp_path / "out")
    assert all(path.is_file() for path in paths)
    by_round, by_uplink = drawn[0]
    assert by_round.axes[0].get_title() == "test_mse per round"
    assert by_uplink.axes[0].get_title() == "test_mse vs. cumulative uplink"
    assert by_round.axes[0].get_ylabel() == by_uplink.axes[0].get_ylabel() == "test_mse (lower is better)"
    circles = [line for line in by_round.axes[0].get_lines() if line.get_label() == "_best"]
    assert [(list(c.get_xdata()), list(c.get_ydata())) for c in circles] == [([2], [0.12])]


def test_accuracy_plots_keep_their_titles(tmp_path: Path) -> None:
    by_round, _ = plots._draw([("fedavg", load_run(write_run(tmp_path, "fedavg", [0.5, 0.9, 0.8], 100))[1])], Monitor())
    assert by_round.axes[0].get_title() == "Test accuracy per round"
    assert by_round.axes[0].get_ylabel() == "test accuracy (higher is better)"
    circles = [line for line in by_round.axes[0].get_lines() if line.get_label() == "_best"]
    assert [(list(c.get_xdata()), list(c.get_ydata())) for c in circles] == [([2], [0.9])]


def test_runs_judged_by_different_metrics_are_not_drawn_on_one_axis(two_runs: list[Path], tmp_path: Path) -> None:
    regression = write_regression_run(tmp_path / "regression", [0.5])
    with pytest.raises(ValueError, match=r"judged by different metrics .*by test_mse \(min\).*plot them separately"):
        plot_runs([two_runs[0], regression], tmp_path / "out")


def test_missing_metrics_json_names_the_path(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"empty/metrics\.json"):
        plot_runs([tmp_path / "empty"], tmp_path / "out")


def test_invalid_json_names_the_path(tmp_path: Path) -> None:
    run_dir = tmp_path / "broken"
    run_dir.mkdir()
    (run_dir / "metrics.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"broken/metrics\.json is not valid JSON"):
        plot_runs([run_dir], run_dir)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"method": "fedavg"}, "no 'per_round' list"),
        ({"method": "fedavg", "per_round": []}, "no rounds to plot"),
        (
            {"method": "fedavg", "per_round": [{"round": 1, "test/acc": 0.5}]},
            r"per_round\[0\] lacks \['uplink/cumulative_bytes'\]",
        ),
    ],
)
def test_malformed_metrics_are_rejected(tmp_path: Path, content: dict, message: str) -> None:
    (tmp_path / "metrics.json").write_text(json.dumps(content))
    with pytest.raises(ValueError, match=message):
        load_run(tmp_path)


def test_no_runs_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no run directories"):
        plot_runs([], tmp_path)
