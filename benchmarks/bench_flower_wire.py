"""Bytes on the real wire of a Flower deployment: each SuperNode reaches the SuperLink through a counting proxy.

A SuperLink and 2 SuperNodes on 127.0.0.1 without TLS (``tests/flower_federation.py``),
one tiny run per method (``digits``, 2 clients, both sampled, 2 rounds, 1 local epoch: 4
replies). The proxy reads the HTTP/1.1 requests a SuperNode sends (Flower 1.42's Fleet
API) and counts, per request, the bytes each way on the socket. A reply is the
``push-messages`` request and the ``push-object`` requests after it; a downloaded message is
``pull-messages`` and the ``pull-object`` requests after it. Payload and model bytes are
the run's own ``uplink/bytes`` and ``downlink/bytes``. Prints the table in BENCHMARKS.md.

    python -m benchmarks.bench_flower_wire                                    # CNN4 rows
    python -m benchmarks.bench_flower_wire --methods fedmrn --overrides model.name=cnn8
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import os
import platform
import socket
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from fedmrn_pl.flower import APP_DIR
from tests.flower_federation import TINY, Federation, free_port, running_federation

HEAD_END = b"\r\n\r\n"
SUPERNODES = 2


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


@contextmanager
def proxied_federation(root: Path) -> Iterator[tuple[Federation, list[CountingProxy]]]:
    """A SuperLink and SuperNodes holding clients 0 .. SUPERNODES-1, each node behind its own proxy."""
    proxies: list[CountingProxy] = []
    with running_federation(root) as federation:
        try:
            federation.start_superlink("--insecure")
            host, port = federation.address.rsplit(":", 1)
            for partition_id in range(SUPERNODES):
                proxy = CountingProxy((host, int(port)))
                proxy.start()
                proxies.append(proxy)
                federation.start_supernode(partition_id, "--insecure", "--superlink", f"127.0.0.1:{proxy.port}")
            federation.connect()
            yield federation, proxies
        finally:
            for proxy in proxies:
                proxy.stop()


def measure(federation: Federation, proxies: list[CountingProxy], overrides: str, output_dir: Path) -> str:
    """One run; its table row."""
    for proxy in proxies:
        proxy.requests.clear()  # the previous run's
    run_id = federation.submit(APP_DIR, {"overrides": f"{overrides} output_dir={output_dir}"})
    metrics = federation.wait_for_run(run_id, output_dir)
    rounds = metrics["per_round"]
    replies = sum(len(r["clients"]) for r in rounds)
    payload = sum(r["uplink/bytes"] for r in rounds)
    dense_down = sum(r["downlink/bytes"] for r in rounds)
    # Each node's replies: the query's (small) first, then one per round it trained in.
    uplink = sorted(t for p in proxies for t in transactions(p.requests, "/push-messages", "/push-object"))[-replies:]
    downlink = sorted(t for p in proxies for t in transactions(p.requests, "/pull-messages", "/pull-object"))
    downlink = [t for t in downlink if t[1] > 1000][-replies:]  # the train messages (the others are empty polls)
    if len(uplink) != replies or len(downlink) != replies:
        raise SystemExit(f"{overrides}: {replies} replies, but the proxies saw {len(uplink)} up and {len(downlink)} down")
    wire_up = sum(sent + received for sent, received in uplink)
    wire_down = sum(sent + received for sent, received in downlink)
    config = metrics["config"]
    return (
        f"| {config['method']['name']}, {config['model']['name']} | {payload / replies:,.0f} B | {wire_up / replies:,.0f} B | "
        f"+{(wire_up - payload) / replies:,.0f} B (+{wire_up / payload - 1:.2%}) | {dense_down / replies:,.0f} B | "
        f"{wire_down / replies:,.0f} B | +{wire_down / dense_down - 1:.2%} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", default=["fedmrn", "fedavg"])
    parser.add_argument("--overrides", default="", help="more key=value overrides, e.g. model.name=cnn8")
    args = parser.parse_args()
    print(f"{datetime.datetime.now().isoformat(timespec='minutes')}  {platform.platform()}  load {os.getloadavg()[0]:.1f}  "
          f"flwr {importlib.metadata.version('flwr')}")  # fmt: skip
    print("| method, model | payload per reply | reply on the wire | overhead | model per request | request on the wire | overhead |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    with tempfile.TemporaryDirectory() as scratch, proxied_federation(Path(scratch)) as (federation, proxies):
        for method in args.methods:
            overrides = f"{TINY} data.num_clients={SUPERNODES} method.name={method} {args.overrides}"
            print(measure(federation, proxies, overrides, Path(scratch) / method), flush=True)


if __name__ == "__main__":
    main()
