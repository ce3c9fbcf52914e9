"""A loopback address where connections are refused, held for as long as a test needs it.

A port picked by binding and closing a socket can be taken by another server before the test
uses it (tests run in parallel), and the test then talks to that server. Keeping the socket
bound but never listening makes the kernel refuse every connection to it, and keeps the port
ours.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["refused_address"]


@contextmanager
def refused_address() -> Iterator[str]:
    """``http://127.0.0.1:PORT`` where nothing listens, while the block runs."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
