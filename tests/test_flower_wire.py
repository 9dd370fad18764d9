"""Bytes on the real wire: each SuperNode reaches the SuperLink through a counting proxy.

The proxy reads the HTTP/1.1 requests a SuperNode sends (Flower 1.42's Fleet API) and
counts, per request, the bytes each way on the socket. A reply message is the
``push-messages`` request and the ``push-object`` requests after it; a downloaded message
is ``pull-messages`` and the ``pull-object`` requests after it. ``-s`` prints the table
quoted in BENCHMARKS.md.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

pytest.importorskip("flwr", reason="the flower extra is not installed: pip install -e '.[flower]'")

from fedmrn_pl.flower import APP_DIR  # noqa: E402
from tests.test_flower import TINY, free_port, running_federation  # noqa: E402

pytestmark = pytest.mark.slow

HEAD_END = b"\r\n\r\n"


@dataclass
class Request:
    path: str
    sent: int = 0  # bytes the SuperNode sent (request line, headers, body)
    received: int = 0  # bytes of the SuperLink's response


@dataclass
class CountingProxy:
    """Forwards 127.0.0.1:<port> to the SuperLink and keeps every HTTP request's byte counts."""

    target: tuple[str, int]
    port: int = field(default_factory=free_port)
    requests: list[Request] = field(default_factory=list)

    def start(self) -> None:
        self.server = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, daemon=True).start()

    def stop(self) -> None:
        self.server.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            mine: list[Request] = []
            threading.Thread(target=self._requests, args=(client, upstream, mine), daemon=True).start()
            threading.Thread(target=self._responses, args=(upstream, client, mine), daemon=True).start()

    def _requests(self, source: socket.socket, sink: socket.socket, mine: list[Request]) -> None:
        buffer = b""
        try:
            while True:
                while HEAD_END not in buffer:
                    chunk = source.recv(65536)
                    if not chunk:
                        raise ConnectionError
                    buffer += chunk
                head, _, buffer = buffer.partition(HEAD_END)
                lines = head.decode("latin-1").split("\r\n")
                length = next((int(v) for k, _, v in (x.partition(":") for x in lines[1:]) if k.lower() == "content-length"), 0)
                while len(buffer) < length:
                    chunk = source.recv(65536)
                    if not chunk:
                        raise ConnectionError
                    buffer += chunk
                body, buffer = buffer[:length], buffer[length:]
                request = Request(lines[0].split()[1], len(head) + len(HEAD_END) + length)
                mine.append(request)
                self.requests.append(request)
                sink.sendall(head + HEAD_END + body)
        except OSError:
            for end in (source, sink):
                end.close()

    def _responses(self, source: socket.socket, sink: socket.socket, mine: list[Request]) -> None:
        try:
            while chunk := source.recv(65536):
                if mine:
                    mine[-1].received += len(chunk)  # no pipelining: the response of the last request sent
                sink.sendall(chunk)
        except OSError:
            pass
        for end in (source, sink):
            end.close()


@contextmanager
def _stopping(proxies: list[CountingProxy]) -> Iterator[None]:
    try:
        yield
    finally:
        for proxy in proxies:
            proxy.stop()


def transactions(requests: list[Request], first: str, then: str) -> list[tuple[int, int]]:
    """``(sent, received)`` of each ``first`` request plus the ``then`` requests right after it."""
    found: list[list[int]] = []
    for request in requests:
        if request.path.endswith(first):
            found.append([request.sent, request.received])
        elif request.path.endswith(then) and found:
            found[-1][0] += request.sent
            found[-1][1] += request.received
    return [(sent, received) for sent, received in found]


@pytest.mark.parametrize("method", ["fedmrn", "fedavg"])
def test_a_reply_on_the_wire_is_its_payload_plus_a_fixed_envelope(method: str, tmp_path: Path) -> None:
    proxies: list[CountingProxy] = []
    with running_federation(tmp_path) as federation, _stopping(proxies):
        federation.start_superlink("--insecure")
        host, port = federation.address.rsplit(":", 1)
        for partition_id in range(2):
            proxy = CountingProxy((host, int(port)))
            proxy.start()
            proxies.append(proxy)
            federation.start_supernode(partition_id, "--insecure", "--superlink", f"127.0.0.1:{proxy.port}")
        federation.connect()
        output_dir = tmp_path / "run"
        extra = os.environ.get("FLOWER_WIRE_OVERRIDES", "")  # e.g. model.name=cnn8, for BENCHMARKS.md
        overrides = f"{TINY} data.num_clients=2 method.name={method} {extra} output_dir={output_dir}"
        run_id = federation.submit(APP_DIR, {"overrides": overrides})
        metrics = federation.wait_for_run(run_id, output_dir / "metrics.json")
    rounds = metrics["per_round"]
    replies = sum(len(r["clients"]) for r in rounds)
    payload = sum(r["uplink/bytes"] for r in rounds)
    # Each node's replies: the query's (small) first, then one per round it trained in.
    uplink = sorted(t for p in proxies for t in transactions(p.requests, "/push-messages", "/push-object"))[-replies:]
    downlink = sorted(t for p in proxies for t in transactions(p.requests, "/pull-messages", "/pull-object"))
    downlink = [t for t in downlink if t[1] > 1000][-replies:]  # the train messages (the others are empty polls)
    wire_up = sum(sent + received for sent, received in uplink)
    wire_down = sum(sent + received for sent, received in downlink)
    dense_down = sum(r["downlink/bytes"] for r in rounds)
    print(
        f"\n{method}: {replies} replies; payload {payload / replies:,.0f} B, on the wire {wire_up / replies:,.0f} B "
        f"per reply (+{wire_up / payload - 1:.2%}); downlink model {dense_down / replies:,.0f} B, on the wire "
        f"{wire_down / replies:,.0f} B per request (+{wire_down / dense_down - 1:.2%})"
    )
    assert len(uplink) == replies and len(downlink) == replies
    # Flower 1.42 signs every Fleet request (public key, timestamp, signature: ~0.9 KB of headers), and a
    # reply is 4 requests (push-messages, the Message, RecordDict and ConfigRecord objects): a fixed cost
    # per reply, whatever the payload's size. The payload itself crosses as one byte array, in one object.
    overhead = (wire_up - payload) / replies
    assert 0 < overhead < 7000, overhead
    largest_object = max(r.sent for p in proxies for r in p.requests if r.path.endswith("/push-object"))
    assert largest_object < 1.1 * payload / replies + 1500, (largest_object, payload / replies)
    if method == "fedavg":  # 1.57 MB payloads: the fixed cost is well under 1%
        assert wire_up <= 1.01 * payload
    assert wire_down > dense_down and (wire_down - dense_down) / replies < 8000
