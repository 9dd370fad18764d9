"""The Flower app on a real federation: a SuperLink and SuperNodes on 127.0.0.1, runs submitted with ``flwr run``.

Every process is started here, on free ports, with a temporary ``FLWR_HOME``, and
stopped (with the processes it started) when the test ends, pass or fail.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import pytest

pytest.importorskip("flwr", reason="the flower extra is not installed: pip install -e '.[flower]'")

from fedmrn_pl.config import load_config  # noqa: E402
from fedmrn_pl.experiment import run_experiment  # noqa: E402
from fedmrn_pl.flower import APP_DIR  # noqa: E402

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
TINY = "data.name=digits data.num_clients=3 train.clients_per_round=2 train.rounds=2 train.local_epochs=1 progress=false"
RUN_SECONDS = 240  # the longest a tiny run may take on 2 busy cores


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _descendants(pid: int) -> list[int]:
    """The processes ``pid`` started, and theirs (read from /proc before they are reparented)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


class Federation:
    """A SuperLink and SuperNodes on 127.0.0.1, and the ``flwr`` CLI pointed at them through a temporary FLWR_HOME."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.home = root / "flwr-home"
        self.home.mkdir(parents=True)
        self.env = {**os.environ, "FLWR_HOME": str(self.home), "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
        self.env = {k: v for k, v in self.env.items() if not k.startswith(("PYTEST_", "COV_"))}
        self.processes: dict[str, subprocess.Popen] = {}
        self.address = ""

    def start(self, name: str, *command: str) -> subprocess.Popen:
        log = open(self.root / f"{name}.log", "wb")
        process = subprocess.Popen([str(BIN / command[0]), *command[1:]], env=self.env, stdout=log, stderr=subprocess.STDOUT)
        self.processes[name] = process
        return process

    def start_superlink(self, *extra: str) -> None:
        port = free_port()
        self.address = f"127.0.0.1:{port}"
        self.start("superlink", "flower-superlink", "--host", "127.0.0.1", "--port", str(port),
                   "--disable-runtime-dependency-installation", *extra)  # fmt: skip
        self.wait_for_log("superlink", "Uvicorn running on")

    def start_supernode(self, partition_id: int, *extra: str) -> subprocess.Popen:
        name = f"supernode-{partition_id}"
        process = self.start(name, "flower-supernode", "--superlink", self.address, "--port", str(free_port()),
                             "--node-config", f"partition-id={partition_id}", *extra)  # fmt: skip
        return process

    def start_insecure(self, supernodes: int) -> None:
        """A SuperLink and SuperNodes holding clients 0 .. supernodes-1, without TLS, and the CLI's connection."""
        self.start_superlink("--insecure")
        for partition_id in range(supernodes):
            self.start_supernode(partition_id, "--insecure")
        self.connect()

    def connect(self, name: str = "test", **settings: object) -> str:
        """Write a SuperLink connection into config.toml (insecure unless settings say otherwise)."""
        settings = {"address": self.address, "insecure": True, **settings}
        lines = [f'[superlink]\ndefault = "{name}"\n', f"[superlink.{name}]"]
        lines += [f"{key} = {json.dumps(value)}" for key, value in settings.items()]
        (self.home / "config.toml").write_text("\n".join(lines) + "\n")
        return name

    def submit(self, app: Path, run_config: Mapping[str, object], connection: str = "test", *extra: str) -> int:
        """``flwr run``; returns the run id."""
        values = " ".join(f"{key}={json.dumps(value)}" for key, value in run_config.items())
        done = self.flwr("run", str(app), connection, "--format", "json", "--run-config", values, *extra)
        return int(json.loads(done.stdout)["run-id"])

    def flwr(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run([str(BIN / "flwr"), *args], env=self.env, capture_output=True, text=True, timeout=60)
        if check and done.returncode:
            raise AssertionError(f"flwr {shlex.join(args)} failed:\n{done.stdout}\n{done.stderr}")
        return done

    def status(self, run_id: int, connection: str = "test") -> str:
        done = self.flwr("ls", connection, "--run-id", str(run_id), "--format", "json")
        return json.loads(done.stdout)["runs"][0]["status"]

    def wait_for_run(self, run_id: int, metrics: Path, connection: str = "test", timeout: float = RUN_SECONDS) -> dict:
        """Wait for the run's metrics.json; fail with the ServerApp's log if the run fails or times out."""
        deadline, checked = time.monotonic() + timeout, time.monotonic()
        while not metrics.is_file():
            if time.monotonic() > deadline or (time.monotonic() - checked > 10 and self._finished(run_id, connection)):
                raise AssertionError(f"run {run_id} gave no {metrics}:\n{self.logs(run_id, connection)}")
            checked = checked if time.monotonic() - checked <= 10 else time.monotonic()
            time.sleep(0.5)
        time.sleep(0.2)  # written atomically; the run is finishing
        return json.loads(metrics.read_text())

    def _finished(self, run_id: int, connection: str) -> bool:
        return self.status(run_id, connection).startswith("finished")

    def logs(self, run_id: int, connection: str = "test") -> str:
        listed = self.flwr("ls", connection, "--run-id", str(run_id), "--format", "json", check=False)
        shown = self.flwr("log", str(run_id), connection, "--show", check=False)
        nodes = "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in sorted(self.root.glob("*.log")))
        return f"{listed.stdout[-1500:]}\n{shown.stdout[-6000:]}\n{shown.stderr[-2000:]}\n{nodes}"

    def wait_for_log(self, name: str, text: str, timeout: float = 60) -> None:
        path, deadline = self.root / f"{name}.log", time.monotonic() + timeout
        while text not in path.read_text(errors="replace"):
            if self.processes[name].poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{name} did not log {text!r}:\n{path.read_text(errors='replace')[-3000:]}")
            time.sleep(0.2)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        process = self.processes[name]
        family = _descendants(process.pid)
        process.send_signal(sig)
        for pid in family:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        process.wait(timeout=30)

    def stop(self) -> None:
        """Stop every process started here and those they started: politely, then for good."""
        family = {name: [p.pid, *_descendants(p.pid)] for name, p in self.processes.items() if p.poll() is None}
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + 10
        for process in self.processes.values():
            try:
                process.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                pass
        for pids in family.values():
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for process in self.processes.values():
            if process.poll() is None:
                process.wait(timeout=10)


@contextmanager
def running_federation(root: Path) -> Iterator[Federation]:
    """A ``Federation`` whose processes are stopped when the block ends, however it ends."""
    federation = Federation(root)
    try:
        yield federation
    finally:
        federation.stop()


@pytest.fixture
def federation(tmp_path: Path) -> Iterator[Federation]:
    with running_federation(tmp_path) as running:
        yield running


def reference_sha(overrides: str, output_dir: Path) -> str:
    """``fedmrn-pl fit`` with the same config, in this process."""
    summary = run_experiment(load_config(None, [*shlex.split(overrides), f"output_dir={output_dir}"]))
    return summary["global_model_sha256"]


def test_fedmrn_and_fedavg_through_a_superlink_and_supernodes_match_fit(federation: Federation, tmp_path: Path) -> None:
    federation.start_insecure(supernodes=3)
    runs = {}
    for method in ("fedmrn", "fedavg"):
        overrides = f"{TINY} method.name={method}"
        output_dir = tmp_path / f"flower-{method}"
        run_id = federation.submit(APP_DIR, {"overrides": f"{overrides} output_dir={output_dir}"})
        runs[method] = (run_id, overrides, output_dir)
    for method, (run_id, overrides, output_dir) in runs.items():
        metrics = federation.wait_for_run(run_id, output_dir / "metrics.json")
        assert metrics["rounds"] == 2 and not metrics["dropped_clients"], federation.logs(run_id)
        expected = reference_sha(overrides, tmp_path / f"fit-{method}")
        assert metrics["global_model_sha256"] == expected, (method, federation.logs(run_id))
        assert (output_dir / "checkpoint.pt").is_file() and (output_dir / "accuracy_vs_round.png").is_file()


def test_the_simulation_engine_matches_fit(federation: Federation, tmp_path: Path) -> None:
    pytest.importorskip("ray", reason="Flower's simulation engine needs the flwr[simulation] extra (ray)")
    federation.start_superlink("--insecure", "--simulation")
    federation.connect()
    output_dir = tmp_path / "simulation"
    run_id = federation.submit(APP_DIR, {"overrides": f"{TINY} output_dir={output_dir}"}, "test",
                               "--federation-config", "num-supernodes=3")  # fmt: skip
    metrics = federation.wait_for_run(run_id, output_dir / "metrics.json")
    assert metrics["global_model_sha256"] == reference_sha(TINY, tmp_path / "fit"), federation.logs(run_id)
