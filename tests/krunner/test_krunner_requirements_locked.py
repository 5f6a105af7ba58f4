"""The krunner environment must install exactly the versions the kernel runner is tested with.

The runner is tested against requirements/python-default.lock; every container runs it with the
pins in the krunner packages' requirements.txt. A lockfile refresh without updating the pins (or
the reverse) fails here instead of shipping an untested combination.
"""

from __future__ import annotations

import json
from importlib.resources import files
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

LOCKFILE = Path("requirements/python-default.lock")  # a `file` dependency, at the build root
KRUNNER_PACKAGES = ("ai.backend.krunner.static_gnu", "ai.backend.krunner.alpine")
# What the runner imports at run time; the pins must cover these and what they depend on.
RUNNER_REQUIREMENTS = ("pyzmq", "msgpack", "jupyter-client")


def locked_versions() -> dict[str, str]:
    text = LOCKFILE.read_text()
    # A Pants lockfile is JSON after a header of `//` comment lines.
    body = "\n".join(line for line in text.splitlines() if not line.startswith("//"))
    resolves = json.loads(body)["locked_resolves"]
    return {
        canonicalize_name(requirement["project_name"]): requirement["version"]
        for resolve in resolves
        for requirement in resolve["locked_requirements"]
    }


def krunner_pins(package: str) -> dict[str, str]:
    text = files(package).joinpath("requirements.txt").read_text()
    pins: dict[str, str] = {}
    for line in text.splitlines():
        line = line.split("#")[0].strip()
        if not line:
            continue
        requirement = Requirement(line)
        (specifier,) = requirement.specifier
        assert specifier.operator == "==", f"{package}: {line!r} is not an exact pin"
        pins[canonicalize_name(requirement.name)] = specifier.version
    return pins


@pytest.mark.parametrize("package", KRUNNER_PACKAGES)
def test_pins_equal_the_locked_versions(package: str) -> None:
    locked = locked_versions()
    pins = krunner_pins(package)
    mismatched = {
        name: (pin, locked.get(name)) for name, pin in pins.items() if locked.get(name) != pin
    }
    assert not mismatched, f"{package} requirements.txt (pin, locked): {mismatched}"


@pytest.mark.parametrize("package", KRUNNER_PACKAGES)
def test_pins_cover_the_runner_requirements(package: str) -> None:
    pins = krunner_pins(package)
    missing = [name for name in RUNNER_REQUIREMENTS if canonicalize_name(name) not in pins]
    assert not missing, f"{package} requirements.txt lacks {missing}"
