"""``fedmrn-pl inspect`` on hostile files: memory bounded by the file, no hang on a pipe, quiet into ``head``."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

from fedmrn_pl.cli import main
from fedmrn_pl.update import ClientUpdate, NoiseSpec
from fedmrn_pl.wire import encode_update
from tests.wire.test_describe import coded_body
from tests.wire.test_format import raw_payload

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc, RLIMIT_AS and FIFOs as on Linux")

ROOT = Path(__file__).resolve().parents[1]
CODED, NOISE_CODED, UNIFORM, GAUSS = 4, 7, 0, 1
MiB = 1 << 20
# Runs the CLI in-process, then writes its own peak RSS and address space (kB, from /proc) to $PEAK_FILE.
CHILD = """
import os, sys
from fedmrn_pl.cli import main
try:
    code = main(sys.argv[1:])
finally:
    status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines() if ":" in line)
    open(os.environ["PEAK_FILE"], "w").write(status["VmHWM"].split()[0] + " " + status["VmPeak"].split()[0])
sys.exit(code)
"""


def _inspect(tmp_path: Path, *argv: str, address_space: int | None = None) -> tuple[int, str, int, int]:
    """``fedmrn-pl inspect ARGV`` in a child, its address space capped: exit code, stderr, peak RSS and VM in bytes."""

    def cap() -> None:
        if address_space is not None:
            import resource

            resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))

    peak_file = tmp_path / "peak"
    peak_file.unlink(missing_ok=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PEAK_FILE": str(peak_file), "OMP_NUM_THREADS": "1",
           "MALLOC_ARENA_MAX": "2"}  # fmt: skip
    done = subprocess.run([sys.executable, "-c", CHILD, "inspect", *argv], capture_output=True, text=True, timeout=300,
                          env=env, preexec_fn=cap, stdin=subprocess.DEVNULL)  # fmt: skip
    rss, vm = (int(kb) * 1024 for kb in peak_file.read_text().split()) if peak_file.exists() else (-1, -1)
    return done.returncode, done.stderr, rss, vm


def _oversized(tmp_path: Path, numel: int, code: int, family: int) -> Path:
    """The issue's files: a mask body of the fewest bytes the parser allows for ``numel`` elements, checksum valid."""
    body = coded_body(numel, code)
    path = tmp_path / f"declares_{numel}_as_{code}.fmrn"
    path.write_bytes(raw_payload([(b"w", code, (numel,), len(body))], [body], family=family))
    return path


@pytest.fixture(scope="module")
def baseline(tmp_path_factory) -> tuple[int, int]:
    """Peak RSS and address space of inspecting a valid payload of 40 coded masks: the interpreter, torch and numpy."""
    tmp_path = tmp_path_factory.mktemp("baseline")
    gen = torch.Generator().manual_seed(0)
    masks = {f"layer{i}.weight": torch.rand(64, 32, 3, 3, generator=gen) < 0.2 for i in range(40)}
    path = tmp_path / "valid.fmrn"
    path.write_bytes(encode_update(ClientUpdate(1, 2, 3, "binary", NoiseSpec(), 4, masks=masks)))
    code, err, rss, vm = _inspect(tmp_path, str(path))
    assert code == 0 and err == "" and rss > 0, err
    return rss, vm


@pytest.mark.parametrize(
    ("numel", "code", "family", "argv"),
    [
        (2**30, NOISE_CODED, UNIFORM, ()),  # 754 KB (131 KB in format 5: 125 s and 14.1 GB before it was refused)
        (2**27, NOISE_CODED, UNIFORM, ()),  # 94 KB (16 KB: 2.2 GB)
        (2**30, CODED, GAUSS, ()),  # 754 KB (131 KB: 2.65 GB)
        (2**25, NOISE_CODED, UNIFORM, ("--max-elements", "99999999999")),  # decoded all the same: noise drawn in chunks
        (2**28, CODED, GAUSS, ("--max-elements", "99999999999")),  # decoded all the same: symbols counted in chunks
    ],
)
def test_inspect_of_a_payload_declaring_huge_masks_takes_memory_bounded_by_its_size(
    numel, code, family, argv, baseline, tmp_path
):
    path = _oversized(tmp_path, numel, code, family)
    size = path.stat().st_size
    base_rss, base_vm = baseline
    returned, err, rss, _ = _inspect(tmp_path, *argv, str(path), address_space=base_vm + 1024 * MiB)
    assert returned == 1 and err.count("\n") == 1 and err.startswith(f"error: invalid payload {path}: "), err
    assert ("more than any valid payload" in err) == (not argv)
    assert rss - base_rss < 48 * MiB + 16 * size  # the file is 24 KB to 754 KB; the masks it declares 32 MB to 1 GB


def _payload(tmp_path: Path) -> Path:
    gen = torch.Generator().manual_seed(1)
    update = ClientUpdate(1, 2, 3, "binary", NoiseSpec(), 4, masks={"w": torch.rand(64, 9, 3, 3, generator=gen) < 0.2},
                          dense={f"b{i}": torch.randn(8, generator=gen) for i in range(30)})  # fmt: skip
    path = tmp_path / "p.fmrn"
    path.write_bytes(encode_update(update))
    return path


def test_inspect_of_a_named_pipe_without_a_writer_does_not_wait(tmp_path):
    fifo = tmp_path / "fifo.fmrn"
    os.mkfifo(fifo)
    done = subprocess.run([sys.executable, "-m", "fedmrn_pl.cli", "inspect", str(fifo)], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
    assert done.returncode == 1 and done.stderr.count("\n") == 1 and "payload truncated at byte 0" in done.stderr


def test_inspect_reads_a_pipe_that_has_a_writer(tmp_path, capsys):
    """As ``fedmrn-pl inspect <(cat p.fmrn)`` does: the open does not wait, the reads wait for what is still to come."""
    data = _payload(tmp_path).read_bytes()
    fifo = tmp_path / "fifo.fmrn"
    os.mkfifo(fifo)
    holder = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # a reader that never reads, so the writer can open at once
    writer = os.open(fifo, os.O_WRONLY)
    os.write(writer, data[:100])

    def rest() -> None:
        threading.Event().wait(0.3)
        os.write(writer, data[100:])
        os.close(writer)

    late = threading.Thread(target=rest)
    late.start()
    try:
        assert main(["inspect", str(fifo)]) == 0
    finally:
        late.join(10)
        os.close(holder)
    assert "valid FedMRN payload" in capsys.readouterr().out


def test_inspect_piped_into_a_reader_that_stops_exits_quietly(tmp_path):
    """``fedmrn-pl inspect p.fmrn | head -1``: no BrokenPipeError; the exit code still says the payload is valid."""
    path = _payload(tmp_path)
    read, write = os.pipe()
    os.close(read)  # the reader is gone before inspect writes a byte
    try:
        command = [sys.executable, "-m", "fedmrn_pl.cli", "inspect", str(path)]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        done = subprocess.run(command, stdout=write, stderr=subprocess.PIPE, text=True, timeout=120, env=env)
    finally:
        os.close(write)
    assert done.returncode == 0 and done.stderr == ""


def test_max_elements_refuses_larger_payloads_in_one_line(tmp_path, capsys):
    path = _payload(tmp_path)
    assert main(["inspect", "--max-elements", "5424", str(path)]) == 0  # 64 * 9 * 3 * 3 mask + 30 * 8 dense
    capsys.readouterr()
    assert main(["inspect", "--max-elements", "5000", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "its tensors declare 5424 elements, more than max_elements=5000" in err
    with pytest.raises(SystemExit):
        main(["inspect", "--max-elements", "-1", str(path)])
    assert "expected a whole number >= 0, got '-1'" in capsys.readouterr().err
