"""Builds a krunner package's platform wheels from its sdist: one per architecture it can.

Run by the `krunner_wheels` Pants target (tools/pants-plugins/krunner_wheels) during
`./pants package`, or by hand:

    python -m tools.krunner.cli --sdist dist/backend.ai-krunner-static-gnu-X.tar.gz \
        --distro static-gnu --out dist

Each architecture whose inputs cannot be fetched is skipped with one line on stdout,
`skipped <wheel platform>: <why>`; a file whose sha256 differs from its pin fails the build.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import sys
import tempfile
from pathlib import Path

from release.fileio import sha256_file
from tools.krunner import envbuild
from tools.krunner.envbuild import BuildError, build_environment
from tools.krunner.fetch import ChecksumMismatch, Unavailable, fetch
from tools.krunner.pins import (
    ARCHES,
    Distro,
    Inputs,
    PinError,
    check_wheel_tags,
    load_inputs,
    supported_tags,
)
from tools.krunner.platform_wheel import SdistError, build_wheel, read_sdist
from tools.krunner.sbom import SBOM_FILE, InterpreterSource

FALLBACK_EPOCH = 315532800  # 1980-01-01, as the sdists use outside a checkout


def default_cache() -> Path:
    if explicit := os.environ.get("KRUNNER_CACHE_DIR"):
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base, "backend.ai-kernel", "krunner")


def interpreter_archive(
    inputs: Inputs, distro: Distro, arch: str, cache: Path
) -> tuple[Path, InterpreterSource]:
    """The local archive named by the distro's environment variable, or the pinned download;
    with its sha256 and origin."""
    local = os.environ.get(distro.env_var(arch))
    if local:
        path = Path(local)
        if not path.is_file():
            raise BuildError(f"{distro.env_var(arch)}={local} names no file")
        origin = f"a local archive named by {distro.env_var(arch)}, not a release input"
        return path, InterpreterSource(sha256_file(path), origin, None)
    pin = inputs.interpreters[(distro.key, arch)]
    release = re.search(r"/releases/download/(\d+)/", pin.url)
    source = InterpreterSource(pin.sha256, pin.url, release[1] if release else None)
    return fetch(pin, cache), source


def build_arch(
    inputs: Inputs, distro: Distro, arch: str, sdist: Path, out: Path, cache: Path, epoch: int
) -> Path:
    package = read_sdist(sdist)
    package_dir = f"ai/backend/krunner/{distro.package}"
    python_file = f"{package_dir}/krunner-python.{distro.key}.txt"
    if python_file not in package.files:
        raise SdistError(f"{sdist.name} has no {python_file}")
    expected_minor = package.files[python_file].decode().strip()
    if not os.environ.get(distro.env_var(arch)):  # a stand-in's archive is never released
        version_file = f"{package_dir}/krunner-version.{distro.key}.txt"
        volume_version = int(package.files[version_file].decode())
        inputs.check_volume(distro.key, envbuild.builder_source(), volume_version)
    interpreter, source = interpreter_archive(inputs, distro, arch, cache)
    wheel_pins = inputs.wheels[(distro.key, arch)]
    wheels = [fetch(pin, cache) for pin in wheel_pins]
    if not wheels:
        raise PinError(f"inputs.toml pins no wheels for {distro.key}.{arch}")
    tags = supported_tags(distro.platform, arch, expected_minor)
    for wheel in wheels:
        check_wheel_tags(wheel, tags, distro.platform_tag(arch))
    digests = [source.sha256, *(pin.sha256 for pin in wheel_pins)]  # fetch verified them
    archive = cache / "archives" / archive_key(digests, expected_minor, epoch)
    archive /= f"krunner-env.{distro.key}.{arch}.tar.xz"
    sbom = archive.with_name(SBOM_FILE)  # the archive's own ./krunner-env.cdx.json
    if not (archive.is_file() and sbom.is_file()):
        archive.parent.mkdir(parents=True, exist_ok=True)
        document = build_environment(interpreter, wheels, expected_minor, archive, epoch, source)
        _write_atomically(sbom, document)
    return build_wheel(
        package, package_dir, archive, sbom.read_bytes(), distro.platform_tag(arch), out, epoch
    )


def _write_atomically(path: Path, data: bytes) -> None:
    handle, partial = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.replace(partial, path)
    finally:
        if os.path.exists(partial):
            os.unlink(partial)


def archive_key(input_digests: list[str], python_minor: str, epoch: int) -> str:
    """Names a built archive by everything its bytes depend on (the builder, the sha256 of each
    input, the Python minor and the epoch), so that a rebuild can reuse it."""
    digest = hashlib.sha256(envbuild.builder_source())
    for part in (*input_digests, python_minor, str(epoch)):
        digest.update(part.encode() + b"\0")
    return digest.hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--sdist", type=Path, required=True)
    parser.add_argument("--distro", required=True, help="static-gnu or musllinux_1_2")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--inputs", type=Path, default=Path("tools/krunner/inputs.toml"))
    parser.add_argument("--cache", type=Path, default=None)
    parser.add_argument("--arch", action="append", choices=ARCHES, default=None)
    args = parser.parse_args(argv)
    epoch = int(os.environ.get("SOURCE_DATE_EPOCH") or FALLBACK_EPOCH)
    try:
        inputs = load_inputs(args.inputs)
        distro = inputs.distro(args.distro)
        args.out.mkdir(parents=True, exist_ok=True)
        for arch in args.arch or ARCHES:
            try:
                wheel = build_arch(
                    inputs, distro, arch, args.sdist, args.out, args.cache or default_cache(), epoch
                )
            except Unavailable as why:
                print(f"skipped {distro.platform_tag(arch)} ({distro.key}): {why}", flush=True)
            else:
                print(f"built {wheel.name}", flush=True)
    except (BuildError, ChecksumMismatch, PinError, SdistError, OSError) as error:
        print(f"krunner build failed: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
