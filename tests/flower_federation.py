"""A real Flower federation on 127.0.0.1 for the Flower tests and the wire benchmark.

Every process is started here, on free ports, with a temporary ``FLWR_HOME``, and
stopped (with the processes it started) when its block ends, pass or fail. Each message
a SuperNode receives starts a ``flwr-clientapp`` process (a train message imports torch
and Lightning: some 7 CPU seconds), so the tests keep their runs small.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock

from fedmrn_pl.run_directory import LOCK_NAME

BIN = Path(sys.executable).parent
TINY = "data.name=digits data.num_clients=3 train.clients_per_round=2 train.rounds=2 train.local_epochs=1 progress=false"
RUN_SECONDS = 240  # the longest a tiny run may take on 2 busy cores


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def descendants(pid: int) -> list[int]:
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


@functools.cache
def fit_sha(overrides: str) -> str:
    """The global model sha of ``fedmrn-pl fit`` with ``overrides``, run in this process once: tests share references."""
    from fedmrn_pl.config import load_config
    from fedmrn_pl.experiment import run_experiment

    with tempfile.TemporaryDirectory() as output_dir:
        summary = run_experiment(load_config(None, [*shlex.split(overrides), f"output_dir={output_dir}"]))
    return summary["global_model_sha256"]


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

    def run_info(self, run_id: int, connection: str = "test") -> dict:
        """What ``flwr ls`` says of the run: its status, and the bytes the SuperLink counted each way."""
        done = self.flwr("ls", connection, "--run-id", str(run_id), "--format", "json")
        return json.loads(done.stdout)["runs"][0]

    def status(self, run_id: int, connection: str = "test") -> str:
        return self.run_info(run_id, connection)["status"]

    def wait_for_run(self, run_id: int, output_dir: Path, connection: str = "test", timeout: float = RUN_SECONDS) -> dict:
        """The run's metrics.json once the run has written all its files; fail with the logs if it ends without or times out.

        The SuperLink's log says when a ServerApp ends: reading it is free, where each ``flwr ls`` is a process.
        """
        metrics, deadline = output_dir / "metrics.json", time.monotonic() + timeout
        ended = re.compile(rf"Finished task \d+ of run {run_id}\b")
        while not metrics.is_file():
            # A run writes metrics.json before its ServerApp ends: look once more after the log says it ended.
            if (ended.search(self.log_text("superlink")) and not metrics.is_file()) or time.monotonic() > deadline:
                raise AssertionError(f"run {run_id} gave no {metrics}:\n{self.logs(run_id, connection)}")
            time.sleep(0.5)
        with FileLock(output_dir / LOCK_NAME, timeout=max(deadline - time.monotonic(), 30)):
            pass  # the run holds its directory's lock until its plots are written too
        return json.loads(metrics.read_text())

    def logs(self, run_id: int, connection: str = "test") -> str:
        listed = self.flwr("ls", connection, "--run-id", str(run_id), "--format", "json", check=False)
        shown = self.flwr("log", str(run_id), connection, "--show", check=False)
        nodes = "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in sorted(self.root.glob("*.log")))
        return f"{listed.stdout[-1500:]}\n{shown.stdout[-6000:]}\n{shown.stderr[-2000:]}\n{nodes}"

    def log_text(self, name: str) -> str:
        """What the process ``name`` logged so far."""
        return (self.root / f"{name}.log").read_text(errors="replace")

    def wait_for_log(self, name: str, text: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log_text(name):
            if self.processes[name].poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{name} did not log {text!r}:\n{self.log_text(name)[-3000:]}")
            time.sleep(0.2)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        process = self.processes[name]
        family = descendants(process.pid)
        process.send_signal(sig)
        for pid in family:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        process.wait(timeout=30)

    def stop(self) -> None:
        """Stop every process started here and those they started: politely, then for good."""
        family = {name: [p.pid, *descendants(p.pid)] for name, p in self.processes.items() if p.poll() is None}
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
