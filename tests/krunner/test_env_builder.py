"""The krunner environment builder (tools/krunner) on small hand-made inputs, offline."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import lzma
import tarfile
import zipfile
from pathlib import Path

import pytest

from tools.krunner import envbuild
from tools.krunner.cli import main as build_main
from tools.krunner.envbuild import PREFIX, BuildError, build_environment
from tools.krunner.fetch import ChecksumMismatch, Unavailable, fetch
from tools.krunner.pins import (
    Download,
    PinError,
    check_wheel_tags,
    parse_inputs,
    supported_tags,
)
from tools.krunner.sbom import ARCHIVE_MEMBER, InterpreterSource, check_sbom

EPOCH = 1_700_000_000
PYTHON_MINOR = "3.12"


def _tar_gz(path: Path, entries: dict[str, bytes | str | None]) -> Path:
    """bytes: a file (executable under bin/), str: a symlink's target, None: a directory."""
    with tarfile.open(path, "w:gz") as tar:
        for name, content in entries.items():
            info = tarfile.TarInfo(name)
            if content is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o700
                tar.addfile(info)
            elif isinstance(content, str):
                info.type, info.linkname = tarfile.SYMTYPE, content
                tar.addfile(info)
            else:
                info.size, info.mode = len(content), 0o775 if "/bin/" in name else 0o600
                tar.addfile(info, io.BytesIO(content))
    return path


def fake_interpreter(directory: Path, minor: str = PYTHON_MINOR) -> Path:
    """An install_only archive: python/bin, python/lib/pythonX.Y with os.py."""
    return _tar_gz(
        directory / f"cpython-{minor}-install_only.tar.gz",
        {
            "python": None,
            "python/bin": None,
            f"python/bin/python{minor}": b"\x7fELF pretend interpreter",
            "python/bin/python3": f"python{minor}",
            f"python/lib/python{minor}/os.py": b"# os\n",
            f"python/lib/python{minor}/LICENSE.txt": b"PSF\n",
            f"python/include/python{minor}/patchlevel.h": (
                f'#define PY_VERSION "{minor}.16"\n'.encode()
            ),
            f"python/lib/python{minor}/site-packages/README.txt": b"site\n",
            "python/include/python3.12/Python.h": b"/* header */\n",
        },
    )


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def fake_wheel(
    directory: Path, filename: str, tag: str | None = None, extra: dict[str, bytes] | None = None
) -> Path:
    """A tiny wheel with a module and a console script; WHEEL's tag defaults to the name's;
    ``extra`` files go into its dist-info."""
    name, version, rest = filename.removesuffix(".whl").split("-", 2)
    dist_info = f"{name}-{version}.dist-info"
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\nLicense: MIT\n"
    files = {
        **{f"{dist_info}/{n}": d for n, d in (extra or {}).items()},
        f"{name}/__init__.py": b"def main() -> None:\n    print('hello')\n",
        f"{dist_info}/METADATA": metadata.encode(),
        f"{dist_info}/WHEEL": (
            f"Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: {tag or rest}\n"
        ).encode(),
        f"{dist_info}/entry_points.txt": f"[console_scripts]\n{name} = {name}:main\n".encode(),
    }
    record = [_record_line(n, d) for n, d in files.items()] + [f"{dist_info}/RECORD,,"]
    files[f"{dist_info}/RECORD"] = ("\n".join(record) + "\n").encode()
    path = directory / filename
    with zipfile.ZipFile(path, "w") as wheel:
        for member, data in files.items():
            wheel.writestr(member, data)
    return path


def members(archive: Path) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(archive, "r:xz") as tar:
        return {m.name: m for m in tar.getmembers()}


def read_member(archive: Path, name: str) -> bytes:
    with tarfile.open(archive, "r:xz") as tar:
        stream = tar.extractfile(name)
        assert stream is not None
        return stream.read()


@pytest.fixture
def built(tmp_path: Path) -> Path:
    wheel = fake_wheel(tmp_path, "demo-1.0-py3-none-any.whl")
    output = tmp_path / "env.tar.xz"
    build_environment(fake_interpreter(tmp_path), [wheel], PYTHON_MINOR, output, EPOCH)
    return output


def test_member_layout_is_upstreams(built: Path) -> None:
    names = list(members(built))
    assert names == sorted(names)
    assert all(name.startswith("./") for name in names)
    site = "./lib/python3.12/site-packages"
    for expected in (
        "./bin/python3.12",
        "./include/python3.12/Python.h",
        f"{site}/demo/__init__.py",
    ):
        assert expected in names
    # The agent bind-mounts the runner and the helpers onto these; they must be empty dirs.
    for mount_point in (f"{site}/ai/backend/kernel", f"{site}/ai/backend/helpers"):
        assert members(built)[mount_point].isdir()
        assert not [n for n in names if n.startswith(mount_point + "/")]
    python = members(built)["./bin/python"]
    assert python.issym() and python.linkname == "python3"
    assert not [n for n in names if n.endswith(".pyc")]


def test_owners_modes_and_times_are_fixed(built: Path) -> None:
    for info in members(built).values():
        assert (info.uid, info.gid, info.uname, info.gname, info.mtime) == (
            0,
            0,
            "root",
            "root",
            EPOCH,
        )
        expected = 0o777 if info.issym() else 0o755 if info.isdir() else None
        assert info.mode == (expected or info.mode), info.name
        assert info.mode in (0o644, 0o755, 0o777), info.name
    assert members(built)["./bin/python3.12"].mode == 0o755
    assert members(built)["./lib/python3.12/os.py"].mode == 0o644


def test_scripts_point_at_the_volume_and_no_staging_path_remains(built: Path) -> None:
    script = read_member(built, "./bin/demo").decode()
    assert script.splitlines()[0] == f"#!{PREFIX}/bin/python3"
    with tarfile.open(built, "r:xz") as tar:
        for info in tar.getmembers():
            stream = tar.extractfile(info) if info.isreg() else None
            content = (stream.read() if stream else b"") + info.linkname.encode()
            assert b"krunner-staging-" not in content, info.name
            assert b"/tmp" not in content, info.name


def test_two_builds_are_byte_identical(tmp_path: Path, built: Path) -> None:
    # The same inputs (the SBOM's serial number is derived from their sha256), the same name.
    again = tmp_path / "again" / built.name
    again.parent.mkdir()
    wheel = tmp_path / "demo-1.0-py3-none-any.whl"
    interpreter = tmp_path / "cpython-3.12-install_only.tar.gz"
    build_environment(interpreter, [wheel], PYTHON_MINOR, again, EPOCH)
    assert again.read_bytes() == built.read_bytes()
    lzma.decompress(again.read_bytes())  # a valid xz stream


AUDITWHEEL_SBOM = {
    "bomFormat": "CycloneDX",
    "specVersion": "1.4",
    "version": 1,
    "metadata": {"component": {"bom-ref": "pkg:pypi/zmqish@1.0", "name": "zmqish"}},
    "components": [
        {"type": "library", "bom-ref": "pkg:pypi/zmqish@1.0", "name": "zmqish", "version": "1.0"},
        {
            "type": "library",
            "bom-ref": "pkg:apk/alpine/libsodium@1.0.20#ab12",
            "name": "libsodium",
            "version": "1.0.20",
            "purl": "pkg:apk/alpine/libsodium@1.0.20",
        },
    ],
}


def test_the_sbom_describes_what_was_installed(tmp_path: Path) -> None:
    demo = fake_wheel(tmp_path, "demo-1.0-py3-none-any.whl")
    bundling = fake_wheel(
        tmp_path,
        "zmqish-1.0-py3-none-any.whl",
        extra={"sboms/auditwheel.cdx.json": json.dumps(AUDITWHEEL_SBOM).encode()},
    )
    output = tmp_path / "krunner-env.static-gnu.x86_64.tar.xz"
    interpreter = fake_interpreter(tmp_path)
    source = InterpreterSource("1" * 64, "https://example.invalid/releases/download/7/x", "7")
    document = build_environment(interpreter, [demo, bundling], PYTHON_MINOR, output, EPOCH, source)
    assert read_member(output, ARCHIVE_MEMBER) == document
    assert check_sbom(document, document, {"demo": "1.0", "zmqish": "1.0"}, "3.12.16") == []
    sbom = json.loads(document)
    assert sbom["specVersion"] == "1.6"
    assert sbom["metadata"]["timestamp"] == "2023-11-14T22:13:20+00:00"  # EPOCH
    assert sbom["metadata"]["component"]["name"] == "krunner-env.static-gnu.x86_64"
    components = {c["name"]: c for c in sbom["components"]}
    assert set(components) == {"cpython", "demo", "zmqish"}
    assert components["cpython"]["version"] == "3.12.16"
    assert components["cpython"]["hashes"] == [{"alg": "SHA-256", "content": "1" * 64}]
    assert {"name": "backend.ai:krunner:python-build-standalone-release", "value": "7"} in (
        components["cpython"]["properties"]
    )
    assert components["demo"]["purl"] == "pkg:pypi/demo@1.0"
    assert components["demo"]["licenses"] == [{"license": {"id": "MIT"}}]
    wheel_sha256 = hashlib.sha256(demo.read_bytes()).hexdigest()
    assert components["demo"]["hashes"] == [{"alg": "SHA-256", "content": wheel_sha256}]
    [bundled] = components["zmqish"]["components"]
    assert (bundled["name"], bundled["version"], bundled["purl"]) == (
        "libsodium",
        "1.0.20",
        "pkg:apk/alpine/libsodium@1.0.20",
    )
    # Derived from the inputs, not the clock: another set of inputs, another serial number.
    again = build_environment(interpreter, [demo], PYTHON_MINOR, tmp_path / "again", EPOCH, source)
    assert json.loads(again)["serialNumber"] != sbom["serialNumber"]


def test_a_bundled_sbom_cyclonedx_refuses_fails_the_build_naming_it(tmp_path: Path) -> None:
    broken = {**AUDITWHEEL_SBOM, "components": [{"type": "spaceship", "name": "x"}]}
    wheel = fake_wheel(
        tmp_path,
        "zmqish-1.0-py3-none-any.whl",
        extra={"sboms/auditwheel.cdx.json": json.dumps(broken).encode()},
    )
    with pytest.raises(
        BuildError, match="zmqish-1.0.dist-info/sboms/auditwheel.cdx.json lists a component"
    ):
        build_environment(fake_interpreter(tmp_path), [wheel], "3.12", tmp_path / "x", EPOCH)


def test_interpreter_of_another_minor_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BuildError, match="holds CPython 3.11, but krunner-python says 3.12"):
        build_environment(fake_interpreter(tmp_path, "3.11"), [], "3.12", tmp_path / "x", EPOCH)


def test_archive_outside_install_only_layout_is_refused(tmp_path: Path) -> None:
    archive = _tar_gz(tmp_path / "flat.tar.gz", {"bin/python3": b"x"})
    with pytest.raises(BuildError, match="flat.tar.gz is not in the install_only layout"):
        build_environment(archive, [], "3.12", tmp_path / "x", EPOCH)


def _pin(path: Path, sha256: str | None = None) -> Download:
    digest = sha256 or hashlib.sha256(path.read_bytes()).hexdigest()
    return Download(path.name, path.as_uri(), digest)


def test_fetch_verifies_and_caches(tmp_path: Path) -> None:
    source = tmp_path / "input.whl"
    source.write_bytes(b"pinned bytes")
    cached = fetch(_pin(source), tmp_path / "cache")
    assert cached.read_bytes() == b"pinned bytes"
    source.unlink()  # the second fetch reads the cache
    assert fetch(_pin(cached), tmp_path / "cache") == cached


def test_fetch_refuses_a_wrong_sha256_naming_the_file(tmp_path: Path) -> None:
    source = tmp_path / "pyzmq-27.3.0-cp312-abi3-musllinux_1_2_x86_64.whl"
    source.write_bytes(b"tampered")
    with pytest.raises(ChecksumMismatch, match=f"^{source.name} .* refusing to use it"):
        fetch(_pin(source, "0" * 64), tmp_path / "cache")
    assert not list((tmp_path / "cache").rglob("*.whl"))


def test_fetch_of_a_missing_file_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(Unavailable, match="cannot download file://"):
        fetch(Download("x.whl", (tmp_path / "x.whl").as_uri(), "0" * 64), tmp_path / "cache")


@pytest.mark.parametrize(
    ("filename", "platform", "arch"),
    [
        ("m-1.0-cp312-cp312-musllinux_1_2_aarch64.whl", "musllinux_1_2", "aarch64"),
        ("m-1.0-cp312-cp312-musllinux_1_1_x86_64.whl", "musllinux_1_2", "x86_64"),
        (
            "m-1.0-cp312-cp312-manylinux_2_17_aarch64.manylinux2014_aarch64.whl",
            "manylinux_2_26",
            "aarch64",
        ),
        ("m-1.0-cp312-abi3-manylinux_2_26_x86_64.whl", "manylinux_2_26", "x86_64"),
        ("m-1.0-cp311-abi3-manylinux1_x86_64.whl", "manylinux_2_26", "x86_64"),
        ("m-1.0-py3-none-any.whl", "musllinux_1_2", "aarch64"),
    ],
)
def test_wheels_carrying_the_target_tags_are_accepted(
    tmp_path: Path, filename: str, platform: str, arch: str
) -> None:
    check_wheel_tags(fake_wheel(tmp_path, filename), supported_tags(platform, arch, "3.12"), "t")


@pytest.mark.parametrize(
    ("filename", "platform", "arch"),
    [
        ("m-1.0-cp312-cp312-musllinux_1_2_aarch64.whl", "musllinux_1_2", "x86_64"),
        ("m-1.0-cp312-cp312-musllinux_1_2_aarch64.whl", "manylinux_2_26", "aarch64"),
        ("m-1.0-cp312-cp312-manylinux_2_28_aarch64.whl", "manylinux_2_26", "aarch64"),
        ("m-1.0-cp312-cp312-manylinux_2_17_x86_64.whl", "musllinux_1_2", "x86_64"),
        ("m-1.0-cp311-cp311-musllinux_1_2_x86_64.whl", "musllinux_1_2", "x86_64"),
        ("m-1.0-cp312-cp312-macosx_11_0_arm64.whl", "manylinux_2_26", "aarch64"),
    ],
)
def test_wheels_for_other_targets_are_refused(
    tmp_path: Path, filename: str, platform: str, arch: str
) -> None:
    wheel = fake_wheel(tmp_path, filename)
    with pytest.raises(PinError, match="judging by its file name"):
        check_wheel_tags(wheel, supported_tags(platform, arch, "3.12"), "t")


def test_a_wheel_whose_metadata_contradicts_its_name_is_refused(tmp_path: Path) -> None:
    # Renamed from an x86_64 build, as upstream's CI renamed its pure wheels.
    wheel = fake_wheel(
        tmp_path, "m-1.0-cp312-cp312-musllinux_1_2_aarch64.whl", tag="cp312-cp312-linux_x86_64"
    )
    with pytest.raises(PinError, match="declares the tags \\['cp312-cp312-linux_x86_64'\\]"):
        check_wheel_tags(wheel, supported_tags("musllinux_1_2", "aarch64", "3.12"), "t")


def fake_sdist(directory: Path) -> Path:
    top = "backend_ai_krunner_static_gnu-1.0"
    package = f"{top}/ai/backend/krunner/static_gnu"
    return _tar_gz(
        directory / f"{top}.tar.gz",
        {
            f"{top}/PKG-INFO": (
                b"Metadata-Version: 2.1\nName: backend.ai-krunner-static-gnu\nVersion: 1.0\n"
            ),
            f"{top}/backend.ai_krunner_static_gnu.egg-info/entry_points.txt": (
                b"[backendai_krunner_v10]\nstatic_gnu = ai.backend.krunner.static_gnu.plugin\n"
            ),
            f"{package}/__init__.py": b"",
            f"{package}/krunner-python.static-gnu.txt": b"3.12\n",
            f"{package}/krunner-version.static-gnu.txt": b"7",
        },
    )


def inputs_file(directory: Path, wheel: Path) -> Path:
    """inputs.toml whose interpreters are missing files and whose one wheel is ``wheel``."""
    lines = [
        'runner-requirements = ["demo"]',
        '[distros.static-gnu]\npackage = "static_gnu"\nplatform = "manylinux_2_26"',
        '[python]\nversion = "3.12.16"',
    ]
    for arch in ("x86_64", "aarch64"):
        missing = (directory / f"missing-{arch}.tar.gz").as_uri()
        lines.append(f'[python.static-gnu.{arch}]\nurl = "{missing}"\nsha256 = "{"0" * 64}"')
        pin = _pin(wheel)
        lines.append(
            f'[[wheels.static-gnu.{arch}]]\nname = "demo"\nversion = "1.0"\n'
            f'url = "{pin.url}"\nsha256 = "{pin.sha256}"'
        )
    content = parse_inputs("\n".join(lines)).content("static-gnu", envbuild.builder_source())
    lines.append(f'[volumes.static-gnu]\nversion = 7\ncontent = "{content}"')
    path = directory / "inputs.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def run_builder(tmp_path: Path, *extra: str) -> int:
    wheel = fake_wheel(tmp_path, "demo-1.0-py3-none-any.whl")
    argv = ["--sdist", str(fake_sdist(tmp_path)), "--distro", "static-gnu"]
    argv += ["--out", str(tmp_path / "out"), "--cache", str(tmp_path / "cache")]
    return build_main([*argv, "--inputs", str(inputs_file(tmp_path, wheel)), *extra])


def test_unreachable_inputs_skip_their_platform_with_one_line_each(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KRUNNER_PYTHON_ARCHIVE_STATIC_GNU_X86_64", raising=False)
    monkeypatch.delenv("KRUNNER_PYTHON_ARCHIVE_STATIC_GNU_AARCH64", raising=False)
    assert run_builder(tmp_path) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    for line, arch in zip(lines, ("x86_64", "aarch64"), strict=True):
        assert line.startswith(f"skipped manylinux_2_26_{arch} (static-gnu): cannot download file:")
        assert f"missing-{arch}.tar.gz" in line
    assert not list((tmp_path / "out").iterdir())


def test_local_archive_builds_a_platform_wheel(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    interpreter = fake_interpreter(tmp_path)
    monkeypatch.setenv("KRUNNER_PYTHON_ARCHIVE_STATIC_GNU_X86_64", str(interpreter))
    assert run_builder(tmp_path, "--arch", "x86_64") == 0
    name = "backend_ai_krunner_static_gnu-1.0-py3-none-manylinux_2_26_x86_64.whl"
    assert capsys.readouterr().out == f"built {name}\n"
    with zipfile.ZipFile(tmp_path / "out" / name) as wheel:
        wheel_meta = wheel.read("backend_ai_krunner_static_gnu-1.0.dist-info/WHEEL").decode()
        assert "Root-Is-Purelib: false\n" in wheel_meta
        assert "Tag: py3-none-manylinux_2_26_x86_64\n" in wheel_meta
        record = wheel.read("backend_ai_krunner_static_gnu-1.0.dist-info/RECORD").decode()
        listed = {line.split(",")[0]: line for line in record.splitlines()}
        assert set(listed) == set(wheel.namelist())
        for member in wheel.namelist():
            if not member.endswith("RECORD"):
                assert listed[member] == _record_line(member, wheel.read(member))
        archive = "ai/backend/krunner/static_gnu/krunner-env.static-gnu.x86_64.tar.xz"
        assert "./bin/demo" in members_of_bytes(wheel.read(archive))
        # The archive's SBOM, also in the wheel's dist-info (PEP 770).
        sbom = wheel.read("backend_ai_krunner_static_gnu-1.0.dist-info/sboms/krunner-env.cdx.json")
        with tarfile.open(fileobj=io.BytesIO(wheel.read(archive)), mode="r:xz") as tar:
            stream = tar.extractfile(ARCHIVE_MEMBER)
            assert stream is not None and stream.read() == sbom


def members_of_bytes(data: bytes) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:xz") as tar:
        return tar.getnames()


def test_a_named_local_archive_that_does_not_exist_fails_the_build(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KRUNNER_PYTHON_ARCHIVE_STATIC_GNU_X86_64", str(tmp_path / "nope.tgz"))
    assert run_builder(tmp_path, "--arch", "x86_64") == 1
    assert "KRUNNER_PYTHON_ARCHIVE_STATIC_GNU_X86_64=" in capsys.readouterr().err


def test_env_var_names() -> None:
    inputs = parse_inputs(
        'runner-requirements = []\n[distros.musllinux_1_2]\npackage = "alpine"\n'
        'platform = "musllinux_1_2"\n[python]\nversion = "3.12.1"\n'
        + "".join(
            f'[python.musllinux_1_2.{a}]\nurl = "u"\nsha256 = "{"0" * 64}"\n'
            for a in ("x86_64", "aarch64")
        )
    )
    assert inputs.distro("musllinux_1_2").env_var("aarch64") == (
        "KRUNNER_PYTHON_ARCHIVE_MUSLLINUX_1_2_AARCH64"
    )
