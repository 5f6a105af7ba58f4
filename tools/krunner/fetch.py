"""Downloads pinned files once into a cache outside the repository, checked against sha256."""

from __future__ import annotations

import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import BinaryIO

from release.fileio import sha256_file
from tools.krunner.pins import Download

TIMEOUT_SECONDS = 30


class Unavailable(Exception):
    """An input cannot be fetched (no network, no such file): its platform is skipped."""


class ChecksumMismatch(Exception):
    """A file's bytes differ from its pin: never used, whatever the platform."""


def verify(path: Path, pin: Download) -> None:
    actual = sha256_file(path)
    if actual != pin.sha256:
        raise ChecksumMismatch(
            f"{pin.filename} (from {pin.url}) has sha256 {actual}, but the pin says {pin.sha256}:"
            " refusing to use it"
        )


def fetch(pin: Download, cache: Path) -> Path:
    """The pinned file, from the cache or downloaded into it; verified either way, once."""
    target = cache / pin.sha256 / pin.filename
    if target.exists():
        verify(target, pin)
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, partial = tempfile.mkstemp(dir=target.parent, prefix=".partial-")
        try:
            with os.fdopen(handle, "wb") as out:
                _download(pin, out)
            verify(Path(partial), pin)
            os.replace(partial, target)
        finally:
            if os.path.exists(partial):
                os.unlink(partial)
    return target


def _download(pin: Download, out: BinaryIO) -> None:
    try:
        with urllib.request.urlopen(pin.url, timeout=TIMEOUT_SECONDS) as response:
            while chunk := response.read(1 << 20):
                out.write(chunk)
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise Unavailable(f"cannot download {pin.url}: {reason}") from None
