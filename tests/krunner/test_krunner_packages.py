"""The krunner packages' data files, read as the agent and the environment build read them."""

from __future__ import annotations

import asyncio
import inspect
import re
from dataclasses import dataclass
from importlib.resources import files
from types import ModuleType

import pytest

from ai.backend.krunner.alpine import plugin as alpine_plugin
from ai.backend.krunner.manifest import ARCHES, Arch, MissingArchiveError
from ai.backend.krunner.static_gnu import plugin as static_gnu_plugin
from tests.workspace_python import python_minors, requires_python


@dataclass(frozen=True)
class Krunner:
    plugin: ModuleType
    package: str
    distro: str
    libc: str

    def read(self, name: str) -> str:
        return files(self.package).joinpath(name).read_text(encoding="utf-8")


def workspace_minor() -> str:
    """The Python minor version pants.toml allows (the drift test checks that it is just one)."""
    return python_minors(requires_python())[0]


KRUNNERS = [
    Krunner(static_gnu_plugin, "ai.backend.krunner.static_gnu", "static-gnu", "gnu"),
    Krunner(alpine_plugin, "ai.backend.krunner.alpine", "musllinux_1_2", "musl"),
]


@pytest.fixture(params=KRUNNERS, ids=lambda krunner: krunner.distro)
def krunner(request: pytest.FixtureRequest) -> Krunner:
    result: Krunner = request.param
    return result


def test_entry_point_module_is_the_plugin(krunner: Krunner) -> None:
    # The agent loads ai.backend.krunner.<entry-point name>.plugin and reads data next to it.
    assert krunner.plugin.__name__ == f"{krunner.package}.plugin"
    assert krunner.plugin.PACKAGE == krunner.package


def test_init_is_awaitable(krunner: Krunner) -> None:
    assert inspect.iscoroutinefunction(krunner.plugin.init)
    assert asyncio.run(krunner.plugin.init({})) is None


def test_manifest_reads_package_data(krunner: Krunner) -> None:
    manifest = krunner.plugin.manifest()
    assert (manifest.package, manifest.libc) == (krunner.package, krunner.libc)
    assert manifest.distro_keys == (krunner.distro,)
    distro = manifest.distro(krunner.distro)
    assert distro.python_version == workspace_minor()
    assert distro.volume_version == int(krunner.read(f"krunner-version.{krunner.distro}.txt"))


def test_data_files_keep_agent_conventions(krunner: Krunner) -> None:
    assert krunner.read("versions.txt").splitlines() == [krunner.distro]
    # The volume version has no trailing newline; the Python version is major.minor.
    assert re.fullmatch(r"[1-9]\d*", krunner.read(f"krunner-version.{krunner.distro}.txt"))
    assert krunner.read(f"krunner-python.{krunner.distro}.txt").strip() == workspace_minor()


@pytest.mark.parametrize("arch", ARCHES)
def test_archive_is_there_or_reported_missing(krunner: Krunner, arch: Arch) -> None:
    # Checkouts and sdists carry no archive; wheels will once the environment build lands.
    distro = krunner.plugin.manifest().distro(krunner.distro)
    expected_file = f"krunner-env.{krunner.distro}.{arch}.tar.xz"
    if arch in distro.available_arches():
        assert distro.archive(arch).name == expected_file
        return
    with pytest.raises(MissingArchiveError) as caught:
        distro.archive(arch)
    error = caught.value
    assert (error.package, error.distro, error.arch) == (krunner.package, krunner.distro, arch)
    assert error.filename == expected_file
    assert all(part in str(error) for part in (repr(krunner.distro), arch, expected_file))
