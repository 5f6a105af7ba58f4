"""Write minimal pure-Python wheels by hand, so the tests need no build backend and no network."""

from __future__ import annotations

import base64
import hashlib
import zipfile
from pathlib import Path

from packaging.utils import canonicalize_name


def _record_line(path: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{path},sha256={digest},{len(data)}"


def build_wheel(directory: Path, name: str, version: str, module: str, source: str) -> Path:
    """Write ``<name>-<version>-py3-none-any.whl`` holding ``<module>/__init__.py``."""
    stem = f"{canonicalize_name(name).replace('-', '_')}-{version}"
    dist_info = f"{stem}.dist-info"
    files = {
        f"{module}/__init__.py": source.encode(),
        f"{dist_info}/METADATA": (
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
        ).encode(),
        f"{dist_info}/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: wheelbuilder\nRoot-Is-Purelib: true\n"
            b"Tag: py3-none-any\n"
        ),
    }
    record_path = f"{dist_info}/RECORD"
    record = [_record_line(path, data) for path, data in files.items()]
    record.append(f"{record_path},,")
    files[record_path] = ("\n".join(record) + "\n").encode()
    wheel = directory / f"{stem}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, data in files.items():
            archive.writestr(path, data)
    return wheel
