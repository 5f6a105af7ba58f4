"""The krunner environment must install exactly the versions the kernel runner is tested with.

The runner is tested against requirements/python-default.lock; every container runs it with the
wheels pinned in tools/krunner/inputs.toml. A lockfile refresh without regenerating the pins
(`python -m tools.krunner.pins`) fails here instead of shipping an untested combination.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name, parse_wheel_filename

from tools.krunner import envbuild
from tools.krunner.pins import (
    ARCHES,
    INPUTS_FILE,
    PinError,
    load_inputs,
    parse_lock,
    regenerated,
)

LOCKFILE = Path("requirements/python-default.lock")  # a `file` dependency, at the build root


def test_wheel_pins_are_regenerated_from_the_lock() -> None:
    text = INPUTS_FILE.read_text()
    assert regenerated(text, LOCKFILE.read_text()) == text


@pytest.mark.parametrize("arch", ARCHES)
@pytest.mark.parametrize("distro", ["static-gnu", "musllinux_1_2"])
def test_pins_equal_the_lock_and_cover_the_runner(distro: str, arch: str) -> None:
    locked = parse_lock(LOCKFILE.read_text())
    pins = load_inputs().wheels[(distro, arch)]
    assert {pin.name: pin.version for pin in pins} == {
        pin.name: locked[pin.name].version for pin in pins
    }
    assert {"pyzmq", "msgpack", "jupyter-client"} <= {pin.name for pin in pins}
    for pin in pins:
        name, version, _, _ = parse_wheel_filename(pin.filename)
        assert (canonicalize_name(name), str(version)) == (pin.name, pin.version)
        assert any(a.sha256 == pin.sha256 for a in locked[pin.name].artifacts)


@pytest.mark.parametrize(
    ("package", "distro"),
    [
        ("ai.backend.krunner.static_gnu", "static-gnu"),
        ("ai.backend.krunner.alpine", "musllinux_1_2"),
    ],
)
def test_volume_version_follows_the_archive_content(package: str, distro: str) -> None:
    # The agent never re-extracts a volume whose name it knows: new content needs a new number.
    volume_version = int(files(package).joinpath(f"krunner-version.{distro}.txt").read_text())
    load_inputs().check_volume(distro, envbuild.builder_source(), volume_version)


def test_changed_content_without_a_new_volume_version_is_refused() -> None:
    inputs = load_inputs()
    builder = envbuild.builder_source()
    with pytest.raises(PinError, match="archive's content changed: raise krunner-version"):
        inputs.check_volume("static-gnu", builder + b"\n# changed\n", 102)
    with pytest.raises(PinError, match="records version 102 for the current static-gnu content"):
        inputs.check_volume("static-gnu", builder, 103)
