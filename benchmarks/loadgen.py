"""A closed-loop HTTP/1.1 load generator, run as its own process.

``python -m benchmarks.loadgen URL --seconds S [--warmup W] [--connections C]
[--header "Name: value" ...] [--post JSON] [--honor-retry-after]`` keeps C keep-alive
connections busy with one GET (or a POST of JSON) each (a new one is sent as soon as the
answer is read, or after its ``Retry-After`` on a 429 when asked to honour it), counts the
answers completed after the warm-up, and prints one JSON line: ``{"requests", "seconds",
"statuses", "errors"}``.

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


def _retry_after(buffer: bytearray) -> float:
    """The Retry-After seconds of the answer at the start of `buffer` (1 if unreadable)."""
    head = bytes(buffer[: buffer.find(b"\r\n\r\n")]).lower()
    marker = head.find(b"\r\nretry-after:")
    if marker < 0:
        return 1.0
    stop = head.find(b"\r\n", marker + 2)
    try:
        return min(float(head[marker + 14 : stop if stop >= 0 else len(head)]), 10.0)
    except ValueError:
        return 1.0


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
    url: str,
    headers: Sequence[str],
    *,
    seconds: float,
    warmup: float,
    connections: int,
    post: str | None = None,
    honor_retry_after: bool = False,
) -> dict[str, object]:
    """Drive `url` for `warmup + seconds`; count the answers completed after the warm-up."""
    parts = urlsplit(url)
    if parts.hostname != "127.0.0.1" or parts.port is None:
        raise ValueError("the load generator only targets http://127.0.0.1:<port>")
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    if post is None:
        lines = [f"GET {target} HTTP/1.1", f"Host: {parts.netloc}", *headers, "", ""]
        request = "\r\n".join(lines).encode("latin-1")
    else:
        body = post.encode("utf-8")
        lines = [f"POST {target} HTTP/1.1", f"Host: {parts.netloc}", *headers]
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}", "", ""]
        request = "\r\n".join(lines).encode("latin-1") + body
    delayed: list[tuple[float, socket.socket]] = []  # (when, connection) to send again

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
            due = [sock for when, sock in delayed if when <= now]
            if due:
                delayed = [(when, sock) for when, sock in delayed if when > now]
                for sock in due:
                    sock.sendall(request)
            for key, _ in selector.select(timeout=min(0.05, window_end - now)):
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
                    wait = _retry_after(connection.buffer) if status == 429 else 0.0
                    del connection.buffer[:taken]
                    if time.monotonic() >= window_start:
                        counted += 1
                        statuses[status] = statuses.get(status, 0) + 1
                    if honor_retry_after and wait:
                        delayed.append((time.monotonic() + wait, connection.sock))
                    else:
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
    parser.add_argument("--post", metavar="JSON", help="POST this JSON body instead of a GET")
    parser.add_argument(
        "--honor-retry-after",
        action="store_true",
        help="on a 429, wait its Retry-After before the connection's next request",
    )
    args = parser.parse_args(argv)
    seconds = min(max(args.seconds, 0.1), 60.0)  # bounded whatever is asked
    result = run_load(
        args.url,
        args.header,
        seconds=seconds,
        warmup=min(max(args.warmup, 0.0), 10.0),
        connections=min(max(args.connections, 1), 64),
        post=args.post,
        honor_retry_after=args.honor_retry_after,
    )
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
