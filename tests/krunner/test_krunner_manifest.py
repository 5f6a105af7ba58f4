"""load_manifest() against throwaway krunner packages, for the cases the real ones cannot show."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

from ai.backend.krunner.manifest import KrunnerManifestError, MissingArchiveError, load_manifest

_serial = itertools.count()

MakePackage = Callable[[Mapping[str, str | bytes]], str]


@pytest.fixture
def make_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> MakePackage:
    """Write a package holding the given data files; return its import name."""
    monkeypatch.syspath_prepend(str(tmp_path))

    def make(data_files: Mapping[str, str | bytes]) -> str:
        name = f"fake_krunner_{next(_serial)}"
        package_dir = tmp_path / name
        package_dir.mkdir()
        (package_dir / "__init__.py").write_text("")
        for filename, content in data_files.items():
            path = package_dir / filename
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content)
        return name

    return make


VALID = {
    "versions.txt": "ubuntu22.04\n\nstatic-gnu\n",
    "krunner-version.ubuntu22.04.txt": "7",
    "krunner-python.ubuntu22.04.txt": "3.12\n",
    "krunner-version.static-gnu.txt": "12\n",
    "krunner-python.static-gnu.txt": "3.12",
}


def test_reads_every_distro_in_order(make_package: MakePackage) -> None:
    package = make_package(VALID)
    manifest = load_manifest(package, libc="gnu")
    assert manifest.distro_keys == ("ubuntu22.04", "static-gnu")
    assert [d.volume_version for d in manifest.distros] == [7, 12]
    assert {d.python_version for d in manifest.distros} == {"3.12"}


def test_archive_present_for_one_arch_only(make_package: MakePackage) -> None:
    package = make_package({**VALID, "krunner-env.static-gnu.x86_64.tar.xz": b"\xfd7zXZ\x00"})
    distro = load_manifest(package, libc="gnu").distro("static-gnu")
    assert distro.available_arches() == ("x86_64",)
    assert distro.archive("x86_64").read_bytes() == b"\xfd7zXZ\x00"
    with pytest.raises(MissingArchiveError) as caught:
        distro.archive("aarch64")
    assert str(caught.value) == (
        f"{package} has no krunner environment for distro 'static-gnu' on aarch64: expected "
        "krunner-env.static-gnu.aarch64.tar.xz in the package (the archive is built separately, "
        "so source distributions and checkouts lack it)"
    )


def test_unknown_arch_and_distro_are_rejected(make_package: MakePackage) -> None:
    manifest = load_manifest(make_package(VALID), libc="gnu")
    with pytest.raises(ValueError, match="unknown architecture 'arm64'"):
        manifest.distro("static-gnu").archive("arm64")  # type: ignore[arg-type]
    with pytest.raises(KeyError, match="no distro 'alpine3.19'"):
        manifest.distro("alpine3.19")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"versions.txt": None}, "lacks its data file versions.txt"),
        ({"versions.txt": "\n"}, "versions.txt lists no distro"),
        ({"versions.txt": "static-gnu\nstatic-gnu\n"}, "lists a distro twice"),
        ({"versions.txt": "static gnu\n"}, "malformed distro key 'static gnu'"),
        ({"krunner-version.static-gnu.txt": None}, "lacks its data file krunner-version"),
        ({"krunner-version.static-gnu.txt": "v12"}, "holds 'v12', not an integer"),
        ({"krunner-python.static-gnu.txt": "3"}, "krunner-python.static-gnu.txt holds '3'"),
    ],
)
def test_malformed_data_files_are_reported(
    make_package: MakePackage, changes: dict[str, str | None], message: str
) -> None:
    data_files: dict[str, str | bytes] = {**VALID, "versions.txt": "static-gnu\n"}
    for filename, content in changes.items():
        if content is None:
            del data_files[filename]
        else:
            data_files[filename] = content
    package = make_package(data_files)
    with pytest.raises(KrunnerManifestError, match=message) as caught:
        load_manifest(package, libc="gnu")
    assert str(caught.value).startswith(package)
