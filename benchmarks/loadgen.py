"""A closed-loop HTTP/1.1 load generator, run as its own process.

``python -m benchmarks.loadgen URL --seconds S [--warmup W] [--connections C]
[--header "Name: value" ...]`` keeps C keep-alive connections busy with one GET each (a new
one is sent as soon as the answer is read), counts the answers completed after the warm-up,
and prints one JSON line: ``{"requests", "seconds", "statuses", "errors"}``.

It speaks just enough HTTP/1.1 for our servers (Content-Length bodies; none on 304), over
plain non-blocking sockets and one selector, so that one core of load costs the server as
much as possible: an `httpx.Client` loop spends about ten times more CPU per request than the
server does, and would measure itself. Only 127.0.0.1 is accepted; the run ends after
``warmup + seconds`` whatever happens.
"""

from __future__ import annotations

import argparse
import json
import selectors
import socket
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

__all__ = ["main"]

_NO_BODY = (204, 304)


@dataclass
class _Connection:
    sock: socket.socket
    buffer: bytearray = field(default_factory=bytearray)


def _parse(buffer: bytearray) -> tuple[int, int] | None:
    """(status, bytes taken) of the first complete answer in `buffer`, or None."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = bytes(buffer[:end]).lower()
    status = int(head[9:12])
    length = 0
    if status not in _NO_BODY:
        marker = head.find(b"\r\ncontent-length:")
        if marker < 0:
            raise ValueError(f"answer {status} without Content-Length")
        stop = head.find(b"\r\n", marker + 2)
        length = int(head[marker + 17 : stop if stop >= 0 else len(head)])
    total = end + 4 + length
    if len(buffer) < total:
        return None
    return status, total


def run_load(
    url: str, headers: Sequence[str], *, seconds: float, warmup: float, connections: int
) -> dict[str, object]:
    """Drive `url` for `warmup + seconds`; count the answers completed after the warm-up."""
    parts = urlsplit(url)
    if parts.hostname != "127.0.0.1" or parts.port is None:
        raise ValueError("the load generator only targets http://127.0.0.1:<port>")
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    lines = [f"GET {target} HTTP/1.1", f"Host: {parts.netloc}", *headers, "", ""]
    request = "\r\n".join(lines).encode("latin-1")

    selector = selectors.DefaultSelector()
    for _ in range(connections):
        sock = socket.create_connection((parts.hostname, parts.port), timeout=5.0)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ, _Connection(sock))
        sock.sendall(request)

    statuses: dict[int, int] = {}
    errors = 0
    counted = 0
    started = time.monotonic()
    window_start = started + warmup
    window_end = window_start + seconds
    try:
        while True:
            now = time.monotonic()
            if now >= window_end:
                break
            for key, _ in selector.select(timeout=min(0.5, window_end - now)):
                connection: _Connection = key.data
                try:
                    chunk = connection.sock.recv(262144)
                except BlockingIOError:
                    continue
                if not chunk:
                    raise ConnectionError("the server closed a keep-alive connection")
                connection.buffer += chunk
                while (answer := _parse(connection.buffer)) is not None:
                    status, taken = answer
                    del connection.buffer[:taken]
                    if time.monotonic() >= window_start:
                        counted += 1
                        statuses[status] = statuses.get(status, 0) + 1
                    connection.sock.sendall(request)
    except (OSError, ValueError) as exc:
        errors += 1
        print(f"loadgen: {type(exc).__name__}: {exc}", file=sys.stderr)
    elapsed = time.monotonic() - window_start
    for key in list(selector.get_map().values()):
        key.fileobj.close()  # type: ignore[union-attr]
    selector.close()
    return {
        "requests": counted,
        "seconds": elapsed,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "errors": errors,
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line, run the load, print the result as one JSON line; 0."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.loadgen")
    parser.add_argument("url")
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--warmup", type=float, default=0.3)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--header", action="append", default=[])
    args = parser.parse_args(argv)
    seconds = min(max(args.seconds, 0.1), 60.0)  # bounded whatever is asked
    result = run_load(
        args.url,
        args.header,
        seconds=seconds,
        warmup=min(max(args.warmup, 0.0), 10.0),
        connections=min(max(args.connections, 1), 64),
    )
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
