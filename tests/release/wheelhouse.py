"""A wheelhouse made from the test environment itself, for an index that must serve a release's
third-party dependencies with no network.

The test environment is installed from requirements/python-default.lock, so packing its
installed distributions back into wheels gives the locked versions, byte for byte the installed
files: what a package index would serve an install check. Files installed outside the
distribution's own directory (console scripts, data under ../share) are left out.
"""

from __future__ import annotations

import base64
import hashlib
import zipfile
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

_LEFT_OUT = {"RECORD", "INSTALLER", "REQUESTED", "direct_url.json"}


def requirement_closure(requirements: Iterable[str], extra: str = "") -> list[str]:
    """The installed distributions `requirements` need (with their extras), transitively;
    `requirements` are read as a distribution's, asked for with `extra`."""
    seen: dict[str, metadata.Distribution] = {}
    pending = [(Requirement(r), e) for r in requirements for e in {"", extra}]
    while pending:
        requirement, extra = pending.pop()
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": extra}):
            continue
        name = canonicalize_name(requirement.name)
        if name in seen:
            continue
        dist = metadata.distribution(name)
        seen[name] = dist
        for line in dist.requires or ():
            for wanted in requirement.extras or {""}:
                pending.append((Requirement(line), wanted))
    return sorted(seen)


def pack_wheel(name: str, out_dir: Path) -> Path:
    """The installed distribution `name` as a wheel in `out_dir`."""
    dist = metadata.distribution(name)
    wheel_text = dist.read_text("WHEEL") or ""
    tags = [
        line.split(":", 1)[1].strip() for line in wheel_text.splitlines() if line.startswith("Tag:")
    ]
    pythons, abis, platforms = (sorted({tag.split("-")[i] for tag in tags}) for i in range(3))
    stem = f"{canonicalize_name(dist.metadata['Name']).replace('-', '_')}-{dist.version}"
    path = out_dir / f"{stem}-{'.'.join(pythons)}-{'.'.join(abis)}-{'.'.join(platforms)}.whl"
    dist_info = None
    record = []
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for file in dist.files or ():
            relative = file.as_posix()
            parts = relative.split("/")
            if parts[0] == ".." or "__pycache__" in parts:
                continue
            if parts[0].endswith(".dist-info"):
                dist_info = parts[0]
                if parts[-1] in _LEFT_OUT:
                    continue
            source = Path(str(dist.locate_file(file)))
            if not source.is_file():
                continue
            data = source.read_bytes()
            archive.writestr(relative, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append(f"{relative},sha256={digest},{len(data)}")
        assert dist_info is not None, f"{name}: no .dist-info among its installed files"
        record.append(f"{dist_info}/RECORD,,")
        archive.writestr(f"{dist_info}/RECORD", "\n".join(record) + "\n")
    return path
