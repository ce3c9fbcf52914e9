"""A blob over the size limit is refused from its header, without being read."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pygit2
import pytest

from promptory.server.files import MAX_FILE_BYTES
from promptory.server.objects import object_size
from support.gitrepo import PromptRepo

BLOB_BYTES = 50 * 1024 * 1024

# Run in a fresh interpreter, so its peak RSS (VmHWM, which belongs to the process image,
# unlike ru_maxrss, which survives exec) says what indexing took and nothing else.
_MEASURE = textwrap.dedent(
    """
    import json, sys
    from promptory.server.store import PromptStore

    def peak_kib():
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])

    before = peak_kib()
    store = PromptStore(sys.argv[1], prepare_in_background=False)
    after = peak_kib()
    problems = [[p.path, p.message] for p in store.snapshot.problems()]
    print(json.dumps({"growth_kib": after - before, "problems": problems}))
    """
)


def test_a_huge_compressible_blob_is_skipped_without_loading_it(tmp_path: Path) -> None:
    repo = PromptRepo(tmp_path / "repo")
    repo.write_prompt("o", "a", "good")
    oid = repo.repo.create_blob(b"---\nversion: 1\n---\n" + b"x" * BLOB_BYTES)
    repo.repo.index.add(pygit2.IndexEntry("o/a/huge.md", oid, pygit2.enums.FileMode.BLOB))
    repo.repo.index.write()
    repo.commit()
    git_size = sum(f.stat().st_size for f in (repo.path / ".git").rglob("*") if f.is_file())
    assert git_size < BLOB_BYTES // 50  # the repository is small; the blob is not

    result = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(repo.path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    measured = json.loads(result.stdout)
    [[path, message]] = measured["problems"]
    assert path == "o/a/huge.md"
    assert f"over the limit of {MAX_FILE_BYTES:,} bytes" in message
    # Loading the blob would raise the peak by its 50 MiB; the header costs nothing.
    assert measured["growth_kib"] < BLOB_BYTES // 1024 // 5


class _BackendsOnly:
    """A repository's real object database, seen as pygit2 before 1.19 shows it (no
    ``Odb.read_header``), so the per-backend path runs on every Python."""

    def __init__(self, odb: pygit2.Odb) -> None:
        self._odb = odb

    @property
    def backends(self) -> Any:
        return self._odb.backends  # an iterator: a new one for each lookup


@pytest.mark.parametrize("packed", [False, True], ids=["loose", "packed"])
@pytest.mark.parametrize("path", ["odb", "backends"])
def test_object_size_comes_from_the_header_of_loose_and_packed_objects(
    tmp_path: Path, packed: bool, path: str
) -> None:
    repo = PromptRepo(tmp_path / "repo")
    blobs = {
        "small": b"---\nversion: 1\n---\nhi\n",
        "large": b"x" * 3_000_000,
        "similar": b"x" * 3_000_000 + b"y",  # packed as a delta against "large"
    }
    oids = {name: repo.repo.create_blob(data) for name, data in blobs.items()}
    if packed:
        repo.repo.pack()
        for oid in oids.values():
            text = str(oid)
            (repo.path / ".git" / "objects" / text[:2] / text[2:]).unlink()
    odb = pygit2.Repository(str(repo.path)).odb
    source = odb if path == "odb" else _BackendsOnly(odb)
    if path == "odb" and not hasattr(odb, "read_header"):
        pytest.skip("this pygit2 has no Odb.read_header")
    for name, oid in oids.items():
        assert object_size(source, oid) == len(blobs[name])
    with pytest.raises(KeyError):
        object_size(source, pygit2.Oid(hex="0" * 40))
