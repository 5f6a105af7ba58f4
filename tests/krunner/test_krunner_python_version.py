"""The krunner Python version must follow the interpreter constraints in pants.toml.

The agent mounts the kernel runner into ``lib/python<krunner-python.txt>/site-packages`` of the
environment that the Dockerfiles build, and the kernel runner is tested with the interpreters that
pants.toml allows: all three must name the same ``major.minor``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from importlib.resources import files

import pytest

from setupgen.metadata import MetadataError, python_requires
from tests.workspace_python import interpreter_constraints, python_minors

KRUNNERS = {
    "ai.backend.krunner.static_gnu": "static-gnu",
    "ai.backend.krunner.alpine": "musllinux_1_2",
}

# Where a Dockerfile states a Python version: PYTHON_VERSION=3.12.7, python:3.12-alpine,
# cpython-3.12.7, python3.12, idle3.12, pydoc3.12, 2to3-3.12, cp312.
_VERSION_MENTION = re.compile(
    r"(?:PYTHON_VERSION=|python[:-]?|idle|pydoc|2to3-)(?P<major>\d)\.(?P<minor>\d+)"
    r"|\bcp(?P<cp_major>\d)(?P<cp_minor>\d+)\b"
)


def constraint_minor(constraint: str) -> str:
    """The one ``major.minor`` an interpreter constraint like ``CPython>=3.12,<3.13`` admits."""
    try:
        minors = python_minors(python_requires([constraint], constraint))
    except MetadataError:  # not a usable range at all
        minors = []
    if len(minors) != 1:
        raise ValueError(f"{constraint!r} admits {minors or 'no'} Python 3 minor versions, not one")
    return minors[0]


def dockerfile_python_minors(text: str) -> set[str]:
    minors = set()
    for match in _VERSION_MENTION.finditer(text):
        major = match["major"] or match["cp_major"]
        minor = match["minor"] or match["cp_minor"]
        minors.add(f"{major}.{minor}")
    return minors


def python_version_drift(
    constraint: str, krunner_python: Mapping[str, str], dockerfiles: Mapping[str, str]
) -> list[str]:
    """Every file, by name, whose Python version differs from the interpreter constraint's."""
    expected = constraint_minor(constraint)
    problems = [
        f"{name} says {text.strip()!r}"
        for name, text in krunner_python.items()
        if text.strip() != expected
    ]
    for name, text in dockerfiles.items():
        stale = dockerfile_python_minors(text) - {expected}
        if stale:
            problems.append(f"{name} mentions Python {', '.join(sorted(stale))}")
    return [f"{problem}, but {constraint!r} means {expected}" for problem in problems]


def _shipped_files(prefix: str, suffix: str) -> dict[str, str]:
    """The krunner packages' data files named ``<prefix>*<suffix>``, keyed by package/name."""
    return {
        f"{package}/{resource.name}": resource.read_text(encoding="utf-8")
        for package in KRUNNERS
        for resource in files(package).iterdir()
        if resource.name.startswith(prefix) and resource.name.endswith(suffix)
    }


def test_krunner_python_follows_pants_interpreter_constraints() -> None:
    constraints = interpreter_constraints()
    krunner_python = _shipped_files("krunner-python.", ".txt")
    dockerfiles = _shipped_files("krunner-", ".dockerfile")
    assert constraints
    assert (len(krunner_python), len(dockerfiles)) == (len(KRUNNERS), 3 * len(KRUNNERS))
    for constraint in constraints:
        assert python_version_drift(constraint, krunner_python, dockerfiles) == []


@pytest.mark.parametrize("package,distro", KRUNNERS.items())
@pytest.mark.parametrize("stage", ["python", "wheels"])
def test_python_and_wheels_dockerfiles_state_their_python(
    package: str, distro: str, stage: str
) -> None:
    # Otherwise the drift check above would pass vacuously.
    text = files(package).joinpath(f"krunner-{stage}.{distro}.dockerfile").read_text()
    (constraint,) = interpreter_constraints()
    assert dockerfile_python_minors(text) == {constraint_minor(constraint)}


AGREEING_DOCKERFILE = "ARG PYTHON_VERSION=3.12.7\nFROM python:${PYTHON_VERSION}-alpine\n"


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


def test_no_drift_when_all_agree() -> None:
    problems = python_version_drift(
        "CPython>=3.12,<3.13",
        {"krunner-python.x.txt": "3.12\n"},
        {"x.dockerfile": AGREEING_DOCKERFILE + "RUN /opt/python/cp312-cp312/bin/python3 -V\n"},
    )
    assert problems == []


@pytest.mark.parametrize(
    ("constraint", "krunner_python", "dockerfile", "problem"),
    [
        # upstream's alpine Dockerfile still edited idle3.11 after moving to 3.12
        ("CPython>=3.12,<3.13", "3.12", "RUN sed -i s/x/y/ bin/idle3.11", "x.dockerfile"),
        ("CPython>=3.12,<3.13", "3.12", "RUN /opt/python/cp311-cp311/bin/pip", "x.dockerfile"),
        ("CPython>=3.12,<3.13", "3.12", "ADD .../cpython-3.11.9+20240726-x.tar.gz", "x.dockerfile"),
        ("CPython>=3.12,<3.13", "3.11", "", "krunner-python.x.txt says '3.11'"),
        ("CPython>=3.13,<3.14", "3.12", "", "krunner-python.x.txt says '3.12'"),
        ("CPython>=3.13,<3.14", "3.13", AGREEING_DOCKERFILE, "x.dockerfile mentions Python 3.12"),
    ],
)
def test_drift_is_reported(
    constraint: str, krunner_python: str, dockerfile: str, problem: str
) -> None:
    problems = python_version_drift(
        constraint, {"krunner-python.x.txt": krunner_python}, {"x.dockerfile": dockerfile}
    )
    assert len(problems) == 1
    assert problems[0].startswith(problem)
    assert problems[0].endswith(f"but {constraint!r} means {constraint_minor(constraint)}")
