"""The krunner environment must install exactly the versions the kernel runner is tested with.

The runner is tested against requirements/python-default.lock; every container runs it with the
wheels pinned in tools/krunner/inputs.toml. A lockfile refresh without regenerating the pins
(`python -m tools.krunner.pins`) fails here instead of shipping an untested combination.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from packaging.utils import canonicalize_name, parse_wheel_filename

from tools.krunner.pins import ARCHES, INPUTS_FILE, load_inputs, parse_lock, regenerated

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
