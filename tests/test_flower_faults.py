"""Faults on a real federation: a SuperNode killed mid-round and a reply that fails validation.

The test has a federation of its own: the killed SuperNode stays listed for two heartbeats
(a minute), so a federation shared with later runs would wait for it. A ServerApp restart is
in ``test_flower.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("flwr", reason="the flower extra is not installed: pip install -e '.[flower]'")

from fedmrn_pl.flower import APP_DIR  # noqa: E402
from tests.flower_federation import TINY, Federation, running_federation  # noqa: E402

pytestmark = pytest.mark.slow

# A ClientApp that damages the payload of the node holding client 1: one flipped byte.
FAULTY_CLIENT = '''
from flwr.clientapp import ClientApp

from fedmrn_pl.flower import client_app

app = ClientApp()
app.query()(client_app.query)


@app.train()
def train(message, context):
    reply = client_app.train(message, context)
    fields = reply.content.config_records["fit"]
    if context.node_config.get("partition-id") == 1 and "payload" in fields:
        payload = bytearray(fields["payload"])
        payload[len(payload) // 2] ^= 0xFF
        fields["payload"] = bytes(payload)
    return reply
'''


@pytest.fixture
def federation(tmp_path: Path) -> Iterator[Federation]:
    with running_federation(tmp_path) as running:
        yield running


def faulty_app(root: Path) -> Path:
    """The fedmrn-pl app with ``faulty_client:app`` as its ClientApp."""
    app = root / "faulty-app"
    app.mkdir()
    pyproject = (APP_DIR / "pyproject.toml").read_text()
    (app / "pyproject.toml").write_text(pyproject.replace("fedmrn_pl.flower.client_app:app", "faulty_client:app"))
    (app / "faulty_client.py").write_text(FAULTY_CLIENT)
    return app


def test_a_killed_supernode_and_a_damaged_payload_drop_their_clients_and_the_round_goes_on(
    federation: Federation, tmp_path: Path
) -> None:
    federation.start_insecure(supernodes=3)
    output_dir = tmp_path / "run"
    overrides = f"{TINY} train.rounds=1 train.clients_per_round=3 output_dir={output_dir}"
    run_id = federation.submit(faulty_app(tmp_path), {"overrides": overrides, "reply-timeout": 45.0})
    federation.wait_for_log("supernode-2", "Receiving: train message", timeout=120)
    federation.kill("supernode-2")  # mid-round: it received its request and never replies
    metrics = federation.wait_for_run(run_id, output_dir)
    (first,) = metrics["per_round"]
    reasons = {d["client_id"]: d["reason"] for d in first["dropped_clients"]}
    assert first["accepted_clients"] == 1 and not first["kept_previous_model"], federation.logs(run_id)
    assert sorted(reasons) == [1, 2], reasons
    assert reasons[1].startswith("invalid payload: ") and "checksum" in reasons[1], reasons[1]
    # The SuperLink says so once the node misses its heartbeats; else the ServerApp stops waiting at reply-timeout.
    assert "Node Unavailable" in reasons[2] or reasons[2].startswith("no reply from SuperNode"), reasons[2]
    log = federation.logs(run_id)
    assert "client 1 dropped, invalid payload" in log and "client 2 dropped, " in log
