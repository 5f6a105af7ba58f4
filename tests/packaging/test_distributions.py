"""Opens the sdists and wheels `./pants package ::` builds and checks what users will install."""

from __future__ import annotations

import email.parser
import subprocess
import tarfile
import zipfile
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.built_wheels import (
    clean_env,
    create_venv_with_wheels,
    sdists_by_project,
    wheels_by_project,
)
from tests.workspace_python import python_minors, requires_python


@dataclass(frozen=True)
class Expected:
    package: str  # the import package
    files: tuple[str, ...] = ()  # what the package directory must ship besides its modules
    entry_points: dict[str, dict[str, str]] = field(default_factory=dict)


EXPECTED = {
    "backend.ai-kernel": Expected("ai.backend.kernel", ("__main__.py", "user_sitecustomize.py")),
    "backend.ai-kernel-helper": Expected("ai.backend.helpers", ("py.typed",)),
    "backend.ai-krunner-manifest": Expected("ai.backend.krunner.manifest", ("py.typed",)),
    **{
        f"backend.ai-krunner-{name.replace('_', '-')}": Expected(
            f"ai.backend.krunner.{name}",
            (
                "py.typed",
                "versions.txt",
                f"krunner-version.{distro}.txt",
                f"krunner-python.{distro}.txt",
            ),
            {"backendai_krunner_v10": {name: f"ai.backend.krunner.{name}.plugin"}},
        )
        for name, distro in (("static_gnu", "static-gnu"), ("alpine", "musllinux_1_2"))
    },
}
# Their wheels are platform wheels carrying an environment archive, built by `krunner_wheels`
# targets and tested in tests/krunner/test_krunner_wheels.py; here only their sdists.
PLATFORM_WHEELS = {"backend.ai-krunner-static-gnu", "backend.ai-krunner-alpine"}
PURE = sorted(set(EXPECTED) - PLATFORM_WHEELS)
BUILD_ROOT = Path.cwd()


def workspace_version() -> Version:
    return Version((BUILD_ROOT / "VERSION").read_text().strip())


def wheel_metadata(wheel: Path) -> Message:
    with zipfile.ZipFile(wheel) as archive:
        (name,) = (n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        return email.parser.Parser().parsestr(archive.read(name).decode())


def wheel_file(wheel: Path, suffix: str) -> str:
    with zipfile.ZipFile(wheel) as archive:
        (name,) = (n for n in archive.namelist() if n.endswith(suffix))
        return archive.read(name).decode()


def sdist_member(sdist: Path, relative: str) -> str:
    with tarfile.open(sdist) as archive:
        top = archive.getnames()[0].split("/")[0]
        member = archive.extractfile(f"{top}/{relative}")
        assert member is not None, f"{sdist.name} has no {relative}"
        return member.read().decode()


@pytest.fixture(scope="module")
def wheels() -> dict[str, Path]:
    return wheels_by_project(BUILD_ROOT)


@pytest.fixture(scope="module")
def sdists() -> dict[str, Path]:
    return sdists_by_project(BUILD_ROOT)


def test_every_distribution_is_built_once_as_sdist_and_wheel(
    wheels: dict[str, Path], sdists: dict[str, Path]
) -> None:
    assert set(wheels) == {canonicalize_name(name) for name in PURE}
    assert set(sdists) == {canonicalize_name(name) for name in EXPECTED}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_file_names_are_canonical(
    name: str, wheels: dict[str, Path], sdists: dict[str, Path]
) -> None:
    # PEP 625 / the binary distribution format: lower-case, runs of -_. become one underscore.
    stem = canonicalize_name(name).replace("-", "_")
    version = workspace_version()
    assert sdists[canonicalize_name(name)].name == f"{stem}-{version}.tar.gz"
    if name in PLATFORM_WHEELS:
        return
    assert wheels[canonicalize_name(name)].name == f"{stem}-{version}-py3-none-any.whl"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_metadata(name: str, wheels: dict[str, Path], sdists: dict[str, Path]) -> None:
    version = workspace_version()
    sources = (
        []
        if name in PLATFORM_WHEELS
        else [("wheel", wheel_metadata(wheels[canonicalize_name(name)]))]
    )
    for source, metadata in (
        *sources,
        (
            "sdist",
            email.parser.Parser().parsestr(
                sdist_member(sdists[canonicalize_name(name)], "PKG-INFO")
            ),
        ),
    ):
        assert metadata["Name"] == name, source
        assert metadata["Version"] == str(version), source
        assert metadata["Requires-Python"] == requires_python(), source
        classifiers = metadata.get_all("Classifier") or []
        for minor in python_minors(requires_python()):
            assert f"Programming Language :: Python :: {minor}" in classifiers, source
        status = "4 - Beta" if version.pre and version.pre[0] in ("b", "rc") else None
        if status:
            assert f"Development Status :: {status}" in classifiers, source
        assert metadata["Author"], source
        assert metadata.get_payload(), f"{source} has no long description"


@pytest.mark.parametrize("name", PURE)
def test_requirements_have_no_type_stubs_and_pin_first_party(
    name: str, wheels: dict[str, Path]
) -> None:
    requirements = [
        Requirement(r)
        for r in wheel_metadata(wheels[canonicalize_name(name)]).get_all("Requires-Dist") or []
    ]
    assert not [r for r in requirements if r.name.startswith("types-")]
    for requirement in requirements:
        if requirement.name.startswith("backend.ai-"):
            assert str(requirement.specifier) == f"=={workspace_version()}"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_setup_py_carries_the_canonical_version(name: str, sdists: dict[str, Path]) -> None:
    setup_py = sdist_member(sdists[canonicalize_name(name)], "setup.py")
    assert f"'version': '{workspace_version()}'" in setup_py
    assert "\\n'" not in setup_py.split("'version':")[1].split(",")[0]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_entry_points_and_package_data(
    name: str, wheels: dict[str, Path], sdists: dict[str, Path]
) -> None:
    expected = EXPECTED[name]
    package_dir = expected.package.replace(".", "/")
    if name in PLATFORM_WHEELS:  # their wheels are built from the sdist's files
        sdist = sdists[canonicalize_name(name)]
        with tarfile.open(sdist) as archive:
            names = {n.split("/", 1)[1] for n in archive.getnames() if "/" in n}
        entry_points_file = next((n for n in names if n.endswith(".egg-info/entry_points.txt")), "")
        entry_points = sdist_member(sdist, entry_points_file) if entry_points_file else ""
    else:
        wheel = wheels[canonicalize_name(name)]
        with zipfile.ZipFile(wheel) as archive:
            names = set(archive.namelist())
        has_entry_points = any(n.endswith(".dist-info/entry_points.txt") for n in names)
        entry_points = wheel_file(wheel, ".dist-info/entry_points.txt") if has_entry_points else ""
    for data_file in expected.files:
        assert f"{package_dir}/{data_file}" in names
    if expected.entry_points:
        for group, points in expected.entry_points.items():
            assert f"[{group}]" in entry_points
            for point, target in points.items():
                assert f"{point} = {target}" in entry_points


def test_wheels_install_together_and_import(wheels: dict[str, Path], tmp_path: Path) -> None:
    python = create_venv_with_wheels(tmp_path / "venv", wheels.values())
    packages = [EXPECTED[name].package for name in PURE]
    probe = (
        "import importlib, sys\n"
        f"for name in {packages!r}:\n"
        "    module = importlib.import_module(name)\n"
        f"    assert module.__file__ and module.__file__.startswith({str(tmp_path)!r}), module\n"
    )
    result = subprocess.run(
        [str(python), "-c", probe], capture_output=True, text=True, env=clean_env()
    )
    assert result.returncode == 0, result.stderr
