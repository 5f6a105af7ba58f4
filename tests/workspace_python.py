"""The workspace's Python range, read from pants.toml and derived as setupgen derives it."""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.specifiers import SpecifierSet

from setupgen.metadata import python_minor_versions, python_requires

PANTS_TOML = Path(__file__).absolute().parents[1] / "pants.toml"


def interpreter_constraints() -> list[str]:
    constraints: list[str] = tomllib.loads(PANTS_TOML.read_text())["python"][
        "interpreter_constraints"
    ]
    return constraints


def requires_python() -> str:
    """What every distribution's Requires-Python must say, e.g. >=3.12,<3.13."""
    return python_requires(interpreter_constraints(), str(PANTS_TOML))


def python_minors(requires: str) -> list[str]:
    return python_minor_versions(SpecifierSet(requires))
