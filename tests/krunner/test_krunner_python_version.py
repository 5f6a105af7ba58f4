"""The krunner Python version must follow the interpreter constraints in pants.toml.

The agent mounts the kernel runner into ``lib/python<krunner-python.txt>/site-packages`` of the
environment built from tools/krunner/inputs.toml, and the kernel runner is tested with the
interpreters that pants.toml allows: all three must name the same ``major.minor``.
"""

from __future__ import annotations

from importlib.resources import files

import pytest

from setupgen.metadata import MetadataError, python_requires
from tests.workspace_python import interpreter_constraints, python_minors
from tools.krunner.pins import load_inputs

KRUNNERS = {
    "ai.backend.krunner.static_gnu": "static-gnu",
    "ai.backend.krunner.alpine": "musllinux_1_2",
}


def constraint_minor(constraint: str) -> str:
    """The one ``major.minor`` an interpreter constraint like ``CPython>=3.12,<3.13`` admits."""
    try:
        minors = python_minors(python_requires([constraint], constraint))
    except MetadataError:  # not a usable range at all
        minors = []
    if len(minors) != 1:
        raise ValueError(f"{constraint!r} admits {minors or 'no'} Python 3 minor versions, not one")
    return minors[0]


@pytest.mark.parametrize("package,distro", KRUNNERS.items())
def test_krunner_python_follows_pants_interpreter_constraints(package: str, distro: str) -> None:
    (constraint,) = interpreter_constraints()
    text = files(package).joinpath(f"krunner-python.{distro}.txt").read_text()
    assert text.strip() == constraint_minor(constraint)


def test_pinned_interpreter_follows_pants_interpreter_constraints() -> None:
    (constraint,) = interpreter_constraints()
    assert load_inputs().python_minor == constraint_minor(constraint)


@pytest.mark.parametrize(
    ("constraint", "minor"),
    [("CPython>=3.12,<3.13", "3.12"), ("CPython==3.12.*", "3.12"), (">=3.11.4,<3.12", "3.11")],
)
def test_constraint_minor(constraint: str, minor: str) -> None:
    assert constraint_minor(constraint) == minor


@pytest.mark.parametrize("constraint", ["CPython>=3.11,<3.13", "CPython", "CPython<3"])
def test_constraint_admitting_other_than_one_minor_is_rejected(constraint: str) -> None:
    with pytest.raises(ValueError, match="not one"):
        constraint_minor(constraint)
