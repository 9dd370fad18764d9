"""The Flower app on a real federation: a SuperLink and SuperNodes on 127.0.0.1, runs submitted with ``flwr run``.

The deployment tests share one SuperLink and its SuperNodes (under xdist, one per worker
that runs them): each run has its own run id and output directory. Each run's sha is compared
with ``fedmrn-pl fit`` on the same config. Bytes on the real wire are measured by
``python -m benchmarks.bench_flower_wire``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("flwr", reason="the flower extra is not installed: pip install -e '.[flower]'")

from filelock import FileLock  # noqa: E402

from fedmrn_pl.flower import APP_DIR  # noqa: E402
from fedmrn_pl.run_directory import LOCK_NAME  # noqa: E402
from tests.flower_federation import TINY, Federation, fit_sha, running_federation  # noqa: E402

pytestmark = pytest.mark.slow

SUPERNODES = 3
FEDMRN = f"{TINY} method.name=fedmrn"  # the deployment's and the simulation's: one reference fit


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    """A SuperLink and SuperNodes holding clients 0-2, shared: starting them costs some 7 CPU seconds."""
    with running_federation(tmp_path_factory.mktemp("federation")) as running:
        running.start_insecure(SUPERNODES)
        yield running


def test_fedmrn_fedavg_and_ef_signsgd_through_a_superlink_and_supernodes_match_fit(federation: Federation, tmp_path: Path) -> None:
    runs = []
    # FedAvg's dense payload needs one reply to show it crosses intact; FedMRN's runs show rounds and averaging.
    fedavg = f"{TINY} method.name=fedavg train.rounds=1 train.clients_per_round=1"
    # Error feedback: each request carries the client's residual from its last round, sent to all nodes at once.
    ef_signsgd = f"{TINY} method.name=ef_signsgd"
    for overrides, rounds in ((FEDMRN, 2), (fedavg, 1), (ef_signsgd, 2)):
        output_dir = tmp_path / f"flower-{len(runs)}"
        run_id = federation.submit(APP_DIR, {"overrides": f"{overrides} output_dir={output_dir}"})
        runs.append((overrides, rounds, run_id, output_dir))
    for overrides, rounds, run_id, output_dir in runs:
        metrics = federation.wait_for_run(run_id, output_dir)
        assert metrics["rounds"] == rounds and not metrics["dropped_clients"], federation.logs(run_id)
        assert metrics["global_model_sha256"] == fit_sha(overrides), (overrides, federation.logs(run_id))
        assert (output_dir / "checkpoint.pt").is_file() and (output_dir / "accuracy_vs_round.png").is_file()
        # What the SuperNodes sent for the run, as the SuperLink counts it: the payloads, each in one object, and
        # a fixed envelope per reply (train replies and each node's answer to the query).
        if "ef_signsgd" in overrides:  # its replies also carry each client's residual back (not uplink: see flower.md)
            continue
        replies = sum(len(r["clients"]) for r in metrics["per_round"]) + SUPERNODES
        payload = sum(r["uplink/bytes"] for r in metrics["per_round"])
        envelope = (federation.run_info(run_id)["network-traffic"]["inbound-bytes"] - payload) / replies
        assert 0 < envelope < 2000, (overrides, envelope)


def test_a_restarted_serverapp_resumes_from_its_checkpoint_with_the_same_model(federation: Federation, tmp_path: Path) -> None:
    output_dir = tmp_path / "run"
    overrides = f"{TINY} train.rounds=3 train.clients_per_round=1"  # one client a round: resuming is the point
    run_config = {"overrides": f"{overrides} output_dir={output_dir}"}
    # A stopped ServerApp may still be waiting on replies and the SuperLink starts the next run after it
    # exits: a short reply-timeout keeps that wait well inside the second run's.
    first = federation.submit(APP_DIR, {**run_config, "reply-timeout": 60.0})
    checkpoint, deadline = output_dir / "checkpoint.pt", time.monotonic() + 240
    while not checkpoint.is_file():
        assert time.monotonic() < deadline, federation.logs(first)
        time.sleep(0.2)
    federation.flwr("stop", str(first), "test")  # the ServerApp stops after round 1 (or 2), keeping its checkpoint
    while not (status := federation.status(first)).startswith("finished"):
        time.sleep(1)
    assert status == "finished:stopped"
    # The stopped ServerApp may still be writing what it keeps; it holds the run directory's lock until it exits.
    with FileLock(output_dir / LOCK_NAME, timeout=180):
        pass
    metrics_file = output_dir / "metrics.json"
    metrics_file.unlink(missing_ok=True)
    second = federation.submit(APP_DIR, {**run_config, "resume": True})
    metrics = federation.wait_for_run(second, output_dir)
    assert metrics["rounds"] == 3, federation.logs(second)
    assert "resumed from" in federation.flwr("log", str(second), "test", "--show").stdout, federation.logs(second)
    assert metrics["global_model_sha256"] == fit_sha(overrides)
    assert json.loads(metrics_file.read_text())["per_round"][0]["round"] == 1


def test_the_simulation_engine_matches_fit(tmp_path: Path) -> None:
    pytest.importorskip("ray", reason="Flower's simulation engine needs the flwr[simulation] extra (ray)")
    with running_federation(tmp_path) as federation:
        federation.start_superlink("--insecure", "--simulation")
        federation.connect()
        output_dir = tmp_path / "simulation"
        run_id = federation.submit(APP_DIR, {"overrides": f"{FEDMRN} output_dir={output_dir}"}, "test",
                                   "--federation-config", f"num-supernodes={SUPERNODES}")  # fmt: skip
        metrics = federation.wait_for_run(run_id, output_dir)
        assert metrics["global_model_sha256"] == fit_sha(FEDMRN), federation.logs(run_id)
