"""TLS and SuperNode authentication on a real federation, with a CA and keys made here (``cryptography``)."""

from __future__ import annotations

import datetime
import ipaddress
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("flwr", reason="the flower extra is not installed: pip install -e '.[flower]'")

from cryptography import x509  # noqa: E402  (a dependency of flwr)
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402

from fedmrn_pl.flower import APP_DIR  # noqa: E402
from tests.flower_federation import TINY, Federation, descendants, fit_sha, running_federation  # noqa: E402

pytestmark = pytest.mark.slow


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def make_certificates(folder: Path) -> tuple[Path, Path, Path]:
    """A self-signed CA and a server certificate for 127.0.0.1 and localhost: ``(ca.pem, server.pem, server.key)``."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP384R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fedmrn-pl test CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA384())
    )  # fmt: skip
    key = ec.generate_private_key(ec.SECP384R1())
    server = (
        x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(ca_key, hashes.SHA384())
    )  # fmt: skip
    paths = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(_pem_key(key))
    return paths


def make_node_key(folder: Path, name: str) -> tuple[Path, Path]:
    """A SuperNode's key pair in OpenSSH format (P-384), as Flower reads them: ``(private, public)``."""
    key = ec.generate_private_key(ec.SECP384R1())
    private, public = folder / name, folder / f"{name}.pub"
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()))
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH))
    return private, public


def listening_addresses(pids: list[int]) -> set[str]:
    """The local addresses the TCP sockets of ``pids`` listen on (from /proc)."""
    inodes = set()
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").glob("*"):
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # LISTEN
                address = fields[1].split(":")[0]
                found.add(".".join(str(int(address[i : i + 2], 16)) for i in (6, 4, 2, 0)) if len(address) == 8 else address)
    return found


@pytest.fixture
def federation(tmp_path: Path) -> Iterator[Federation]:
    with running_federation(tmp_path) as running:
        yield running


def test_over_tls_only_registered_supernodes_join_and_the_run_matches_fit(federation: Federation, tmp_path: Path) -> None:
    ca, certificate, key = make_certificates(tmp_path)
    federation.start_superlink("--ssl-ca-certfile", str(ca), "--ssl-certfile", str(certificate), "--ssl-keyfile", str(key),
                               "--enable-supernode-auth")  # fmt: skip
    federation.connect(insecure=False, **{"root-certificates": str(ca)})
    keys = {name: make_node_key(tmp_path, name) for name in ("node-0", "node-1", "intruder")}
    for name in ("node-0", "node-1"):
        federation.flwr("supernode", "register", str(keys[name][1]), "test")
    tls = ("--root-certificates", str(ca))
    for partition_id in range(2):
        federation.start_supernode(partition_id, *tls, "--auth-supernode-private-key", str(keys[f"node-{partition_id}"][0]))
    federation.start_supernode(2, *tls, "--auth-supernode-private-key", str(keys["intruder"][0]), "--max-retries", "2")
    output_dir = tmp_path / "run"
    # One round of one client: both nodes answer the ServerApp's query, one trains; more would repeat it.
    overrides = f"{TINY} data.num_clients=2 train.rounds=1 train.clients_per_round=1"
    run_id = federation.submit(APP_DIR, {"overrides": f"{overrides} output_dir={output_dir}", "node-timeout": 30.0})
    metrics = federation.wait_for_run(run_id, output_dir)
    assert not metrics["dropped_clients"], federation.logs(run_id)
    assert metrics["global_model_sha256"] == fit_sha(overrides)
    # The SuperLink refuses the key it does not know; the intruder never gets a node id and only retries.
    federation.wait_for_log("superlink", "No SuperNode found with the given public key")
    assert "SuperNode ID" not in federation.log_text("supernode-2")
    assert "SuperNode ID" in federation.log_text("supernode-0")
    pids = [pid for process in federation.processes.values() if process.poll() is None
            for pid in (process.pid, *descendants(process.pid))]  # fmt: skip
    assert listening_addresses(pids) <= {"127.0.0.1"}, listening_addresses(pids)
