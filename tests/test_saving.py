"""Run files are written whole or not at all: a full disk ends a run in one line, leaving no partial file."""

import builtins
import errno
import json
import os
from pathlib import Path

import pytest
import torch

from fedmrn_pl import saving
from fedmrn_pl.callbacks.checkpoint import load_checkpoint, save_checkpoint
from fedmrn_pl.cli import main
from fedmrn_pl.report import write_metrics_json
from fedmrn_pl.saving import SaveError, atomic_write

RUN = ["data.name=digits", "data.num_clients=6", "train.clients_per_round=2", "train.rounds=2",
       "train.local_epochs=1", "progress=false"]  # fmt: skip


class FullDisk:
    """A file system under ``root`` with ``room`` bytes free: a write stores what fits, then fails with ENOSPC.

    Armed by ``arm_when`` (a file that must exist under ``root``): until then the disk has room.
    Files replaced or removed free their space, as on a real disk.
    """

    def __init__(self, root: Path, room: int, arm_when: str | None = None) -> None:
        self.root, self.room, self.arm_when = root, room, arm_when
        self.capacity: int | None = None if arm_when else self._used() + room

    def _used(self) -> int:
        return sum(path.stat().st_size for path in self.root.rglob("*") if path.is_file())

    def free(self) -> int:
        if self.capacity is None and (self.root / self.arm_when).exists():
            self.capacity = self._used() + self.room
        return 1 << 62 if self.capacity is None else self.capacity - self._used()

    def open(self, path, mode="r", *args, **kwargs):
        handle = builtins.open(path, mode, *args, **kwargs)
        return _FileOn(self, handle) if "w" in mode else handle


class _FileOn:
    def __init__(self, disk: FullDisk, handle) -> None:
        self.disk, self.handle = disk, handle

    def write(self, data) -> int:
        self.handle.flush()
        data = memoryview(data).cast("B")
        fits = max(0, min(self.disk.free(), len(data)))
        self.handle.write(data[:fits])
        self.handle.flush()
        if fits < len(data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return len(data)

    def __getattr__(self, name):
        return getattr(self.handle, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.handle.close()


def _no_temp_files(root: Path) -> list[Path]:
    return [path for path in root.rglob("*") if path.name.endswith(".tmp")]


def test_a_failed_write_leaves_the_previous_file_and_no_temp_file(tmp_path, monkeypatch):
    target = tmp_path / "metrics.json"
    write_metrics_json(target, {"rounds": 1})
    monkeypatch.setattr(saving, "open", FullDisk(tmp_path, room=10).open, raising=False)
    with pytest.raises(SaveError) as caught:
        write_metrics_json(target, {"rounds": 2, "per_round": list(range(1000))})
    assert str(caught.value) == f"no space left on device writing {target}"
    assert caught.value.errno == errno.ENOSPC and isinstance(caught.value, OSError)
    assert json.loads(target.read_text()) == {"rounds": 1} and not _no_temp_files(tmp_path)


def test_torch_save_failing_on_a_full_disk_is_a_save_error_naming_the_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint({"global_state": {"w": torch.ones(3)}, "completed_rounds": 0, "history": []}, path)
    monkeypatch.setattr(saving, "open", FullDisk(tmp_path, room=500).open, raising=False)
    with pytest.raises(SaveError, match=f"no space left on device writing {path}$"):  # not torch's RuntimeError
        save_checkpoint({"global_state": {"w": torch.zeros(100_000)}, "completed_rounds": 1, "history": [{}]}, path)
    assert load_checkpoint(path)["completed_rounds"] == 0 and not _no_temp_files(tmp_path)


def test_an_error_that_is_not_about_writing_passes_through_and_removes_the_temp_file(tmp_path):
    with pytest.raises(ZeroDivisionError), atomic_write(tmp_path / "x.bin") as handle:
        handle.write(b"partial")
        1 / 0
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "overrides, room, failing",
    [
        (["checkpoint_every=1"], 64 * 1024, "checkpoint.pt"),  # room for metrics.json, not for a second checkpoint
        (["checkpoint_every=1", "save_payloads=true"], 4 * 1024, "payloads/round_0002_client_"),
    ],
    ids=["checkpoint", "payload"],
)
def test_a_full_disk_ends_the_run_in_one_line_keeping_the_last_checkpoint_which_resumes_bit_exact(
    tmp_path, monkeypatch, capsys, overrides, room, failing
):
    out = tmp_path / "run"
    with monkeypatch.context() as patch:  # the disk fills once round 1 is saved
        patch.setattr(saving, "open", FullDisk(tmp_path, room, arm_when="run/checkpoint.pt").open, raising=False)
        assert main(["fit", *RUN, *overrides, f"output_dir={out}"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(f"error: no space left on device writing {out / failing}")
    assert f"{out} keeps its checkpoint of round 1; free some space, then continue with: fedmrn-pl fit --resume {out}\n" in err
    assert not _no_temp_files(tmp_path)
    if "save_payloads=true" in overrides:  # every payload left is whole: round 1's two
        payloads = sorted((out / "payloads").iterdir())
        assert [p.name[:10] for p in payloads] == ["round_0001"] * 2
        assert all(main(["inspect", str(p)]) == 0 for p in payloads)
    assert load_checkpoint(out)["completed_rounds"] == 1

    assert main(["fit", "--resume", str(out)]) == 0
    resumed = json.loads((out / "metrics.json").read_text())
    assert main(["fit", *RUN, *overrides, f"output_dir={tmp_path / 'whole'}"]) == 0
    whole = json.loads((tmp_path / "whole" / "metrics.json").read_text())
    assert resumed["rounds"] == 2 and resumed["global_model_sha256"] == whole["global_model_sha256"]
