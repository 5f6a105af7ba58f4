"""Assembles a krunner environment and packs it into a byte-reproducible tar.xz.

The environment is a relocatable CPython (an `install_only` archive: one top directory
`python/` holding bin, include, lib, share) with the runner's wheels installed into it by PyPA's
`installer`, without running the target's interpreter. Scripts point at PREFIX, where the agent
mounts the extracted volume; the members are `./bin`, `./lib`, ... as upstream packed them, and
`./krunner-env.cdx.json`, the SBOM of what was installed (tools/krunner/sbom.py).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from installer import install
from installer.destinations import SchemeDictionaryDestination
from installer.sources import WheelFile

from tools.krunner import sbom
from tools.krunner.sbom import InterpreterSource, SbomError

PREFIX = "/opt/backend.ai"
INSTALLER_NAME = b"backend.ai-krunner-build\n"
# Preset 3: 8% larger output than 6 in 60% of its time. xz's multi-threaded mode with a fixed
# block size gives the same bytes for any thread count.
XZ_ARGS = ("-3", "--threads=2", "--block-size=16MiB", "--check=crc64")


class BuildError(Exception):
    """The inputs cannot make a valid environment."""


def builder_source() -> bytes:
    """The code that decides an archive's bytes: this module and the SBOM's."""
    return Path(__file__).read_bytes() + Path(sbom.__file__).read_bytes()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def unpack_interpreter(archive: Path, root: Path) -> None:
    """Extract an install_only archive's `python/` directory as ``root``."""
    with tarfile.open(archive) as tar:
        members = tar.getmembers()
        if not members or any(not _under_python(m.name) for m in members):
            raise BuildError(
                f"{archive} is not in the install_only layout: its members must all be under"
                " python/"
            )
        tar.extractall(root.parent / ".unpack", filter="data")
    (root.parent / ".unpack" / "python").rename(root)
    (root.parent / ".unpack").rmdir()


def _under_python(name: str) -> bool:
    parts = Path(name).parts
    return bool(parts) and parts[0] == "python"


def python_minor_of(root: Path) -> str:
    """The X.Y of the interpreter in ``root``, from its lib/pythonX.Y directory."""
    found = [
        p.name.removeprefix("python")
        for p in (root / "lib").glob("python3.*")
        if (p / "os.py").is_file()
    ]
    if len(found) != 1:
        raise BuildError(f"expected one lib/python3.N/os.py in the interpreter, found {found}")
    return found[0]


def install_wheels(root: Path, wheels: Iterable[Path], python_minor: str) -> None:
    site_packages = root / "lib" / f"python{python_minor}" / "site-packages"
    for wheel in wheels:
        with WheelFile.open(wheel) as source:
            name = source.distribution
            destination = SchemeDictionaryDestination(
                scheme_dict={
                    "purelib": str(site_packages),
                    "platlib": str(site_packages),
                    "headers": str(root / "include" / f"python{python_minor}" / name),
                    "scripts": str(root / "bin"),
                    "data": str(root),
                },
                interpreter=f"{PREFIX}/bin/python3",
                script_kind="posix",
                bytecode_optimization_levels=(),  # no .pyc: they would embed build paths
            )
            install(source, destination, additional_metadata={"INSTALLER": INSTALLER_NAME})


def add_mount_points(root: Path, python_minor: str) -> None:
    """Where the agent bind-mounts the runner and the helpers, and the `python` it starts."""
    site_packages = root / "lib" / f"python{python_minor}" / "site-packages"
    for package in ("kernel", "helpers"):
        (site_packages / "ai" / "backend" / package).mkdir(parents=True, exist_ok=True)
    python = root / "bin" / "python"
    if not python.exists() and not python.is_symlink():
        python.symlink_to("python3")
    if not (root / "bin" / "python3").exists():
        raise BuildError("the interpreter has no bin/python3")


def _walk(root: Path) -> Iterator[Path]:
    for directory, subdirs, files in os.walk(root):
        for name in subdirs + files:
            yield Path(directory, name)


def check_no_trace(root: Path, staging: Path) -> None:
    """No file may mention the staging directory (scripts, RECORD, metadata)."""
    needle = str(staging).encode()
    for path in _walk(root):
        if path.is_symlink():
            if needle in os.readlink(path).encode():
                raise BuildError(f"{path.relative_to(root)} links into the staging directory")
        elif path.is_file() and needle in path.read_bytes():
            raise BuildError(f"{path.relative_to(root)} mentions the staging directory {staging}")


def _member(root: Path, path: Path, epoch: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo("./" + path.relative_to(root).as_posix())
    info.mtime = epoch
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    if path.is_symlink():
        info.type, info.linkname, info.mode = tarfile.SYMTYPE, os.readlink(path), 0o777
    elif path.is_dir():
        info.type, info.mode = tarfile.DIRTYPE, 0o755
    elif path.is_file():
        info.size = path.stat().st_size
        info.mode = 0o755 if path.stat().st_mode & 0o100 else 0o644
    else:
        raise BuildError(f"{path.relative_to(root)} is neither a file, a directory nor a link")
    return info


def pack(root: Path, output: Path, epoch: int) -> None:
    """``root``'s tree as ./-relative members, sorted, with fixed owners, modes and times."""
    xz = shutil.which("xz")
    if xz is None:
        raise BuildError("the `xz` program is needed to compress the archive (Debian: xz-utils)")
    members = sorted(_walk(root), key=lambda p: p.relative_to(root).as_posix())
    handle, partial = tempfile.mkstemp(dir=output.parent, prefix=f".{output.name}.")
    try:
        with os.fdopen(handle, "wb") as out:
            compressor = subprocess.Popen([xz, *XZ_ARGS, "-c"], stdin=subprocess.PIPE, stdout=out)
            assert compressor.stdin is not None
            with tarfile.open(
                fileobj=compressor.stdin, mode="w|", format=tarfile.GNU_FORMAT
            ) as tar:
                for path in members:
                    info = _member(root, path, epoch)
                    if info.isreg():
                        with path.open("rb") as data:
                            tar.addfile(info, data)
                    else:
                        tar.addfile(info)
            compressor.stdin.close()
            if compressor.wait() != 0:
                raise BuildError(f"xz failed with exit code {compressor.returncode}")
        os.replace(partial, output)
    finally:
        if os.path.exists(partial):
            os.unlink(partial)


def build_environment(
    interpreter: Path,
    wheels: Iterable[Path],
    expected_minor: str,
    output: Path,
    epoch: int,
    source: InterpreterSource | None = None,
) -> bytes:
    """The whole build: unpack, install, add mount points and the SBOM, check, pack into
    ``output``. Returns the SBOM. ``source`` says where the interpreter archive came from (by
    default: its file name)."""
    wheels = list(wheels)
    source = source or InterpreterSource(_sha256(interpreter), interpreter.name, None)
    with tempfile.TemporaryDirectory(prefix="krunner-staging-") as staging_name:
        staging = Path(staging_name)
        root = staging / "env"
        unpack_interpreter(interpreter, root)
        minor = python_minor_of(root)
        if minor != expected_minor:
            raise BuildError(
                f"{interpreter.name} holds CPython {minor},"
                f" but krunner-python says {expected_minor}"
            )
        install_wheels(root, wheels, minor)
        add_mount_points(root, minor)
        name = output.name.removesuffix(".tar.xz")
        try:
            document = sbom.build_sbom(
                root, minor, name, source, {w.name: _sha256(w) for w in wheels}, epoch
            )
        except SbomError as error:
            raise BuildError(f"{interpreter.name}: {error}") from None
        (root / sbom.SBOM_FILE).write_bytes(document)
        check_no_trace(root, staging)
        pack(root, output, epoch)
    return document
