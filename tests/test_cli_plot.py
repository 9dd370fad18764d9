"""`fedmrn-pl plot`: writes the PNGs, prints their paths, fails with one line on bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from fedmrn_pl.cli import main
from fedmrn_pl.plots import PLOT_NAMES
from tests.test_plots import write_run


def test_plot_one_run_writes_into_its_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = write_run(tmp_path / "run", "fedmrn-binary", [0.3, 0.7], 115_522)
    assert main(["plot", str(run_dir)]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed == [str(run_dir / name) for name in PLOT_NAMES]
    assert all((run_dir / name).is_file() for name in PLOT_NAMES)


def test_plot_several_runs_defaults_to_plots_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    dense = write_run(tmp_path / "fedavg", "fedavg", [0.5, 0.8], 3_134_784)
    masked = write_run(tmp_path / "fedmrn", "fedmrn-binary", [0.3, 0.7], 115_522)
    assert main(["plot", str(dense), str(masked)]) == 0
    assert capsys.readouterr().out.splitlines() == [str(Path("plots") / name) for name in PLOT_NAMES]
    assert all((tmp_path / "plots" / name).is_file() for name in PLOT_NAMES)


def test_plot_out_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = write_run(tmp_path / "run", "fedavg", [0.5], 1000)
    assert main(["plot", str(run_dir), "--out", str(tmp_path / "figures")]) == 0
    assert capsys.readouterr().out.splitlines() == [str(tmp_path / "figures" / name) for name in PLOT_NAMES]


def test_plot_missing_run_is_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = write_run(tmp_path / "good", "fedavg", [0.5], 1000)
    assert main(["plot", str(good), str(tmp_path / "nowhere")]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "nowhere/metrics.json" in lines[0]


def test_plot_malformed_run_is_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "metrics.json").write_text("[1, 2")
    assert main(["plot", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not valid JSON" in err and "Traceback" not in err
