"""normalize_sdist(): sdists with sorted members, fixed owners and modes, one mtime."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

from setupgen.reproducible_sdist import normalize_sdist

FILES = {"pkg-1.0/PKG-INFO": b"Name: pkg\n", "pkg-1.0/pkg/__init__.py": b"", "pkg-1.0/run.sh": b"#"}


def write_sdist(path: Path, order: list[str], mtime: int, uid: int) -> None:
    with tarfile.open(path, "w:gz") as archive:
        for name in order:
            member = tarfile.TarInfo(name)
            member.size, member.mtime, member.uid, member.uname = len(FILES[name]), mtime, uid, "ci"
            member.mode = 0o775 if name.endswith(".sh") else 0o664
            archive.addfile(member, io.BytesIO(FILES[name]))


def test_same_content_gives_same_bytes(tmp_path: Path) -> None:
    first, second = tmp_path / "a.tar.gz", tmp_path / "b.tar.gz"
    write_sdist(first, sorted(FILES), mtime=1_700_000_000, uid=1000)
    write_sdist(second, sorted(FILES, reverse=True), mtime=1_800_000_000, uid=0)
    assert first.read_bytes() != second.read_bytes()
    for path in (first, second):
        normalize_sdist(str(path), 1_600_000_000)
    assert first.read_bytes() == second.read_bytes()


def test_members_are_sorted_with_fixed_metadata(tmp_path: Path) -> None:
    path = tmp_path / "a.tar.gz"
    write_sdist(path, sorted(FILES, reverse=True), mtime=1_700_000_000, uid=1000)
    normalize_sdist(str(path), 1_600_000_000)
    with tarfile.open(path) as archive:
        members = archive.getmembers()
        assert [m.name for m in members] == sorted(FILES)
        assert {(m.mtime, m.uid, m.gid, m.uname) for m in members} == {
            (1_600_000_000, 0, 0, "root")
        }
        assert {m.name: m.mode for m in members}["pkg-1.0/run.sh"] == 0o755
        assert {m.name: m.mode for m in members}["pkg-1.0/PKG-INFO"] == 0o644
        assert archive.extractfile("pkg-1.0/PKG-INFO").read() == FILES["pkg-1.0/PKG-INFO"]  # type: ignore[union-attr]
