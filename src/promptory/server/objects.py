"""The size of a git object, read from its header: never from its data.

A blob can be hundreds of megabytes in a repository of a few: it compresses well. Its size
is known from the object's header (libgit2's ``git_odb_read_header``: the start of a loose
object, the entry header of a packed one), so an oversized blob is refused without being
loaded. pygit2 offers it as ``Odb.read_header`` from 1.19 (Python 3.11+); before, each
backend of the object database offers it as ``OdbBackend.read_header``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["object_size"]


def object_size(odb: Any, oid: Any) -> int:
    """The size in bytes of the object `oid` of the object database `odb` (a
    ``pygit2.Odb``), read from its header.

    Raises:
        KeyError: no backend holds the object.
    """
    read_header = getattr(odb, "read_header", None)
    if read_header is not None:
        return int(read_header(oid)[1])
    for backend in odb.backends:
        try:
            return int(backend.read_header(oid)[1])
        except (KeyError, LookupError):
            continue  # another backend (loose, packed, an alternate) may hold it
    raise KeyError(str(oid))
