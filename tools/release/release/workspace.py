"""What the tool reads from the monorepo instead of restating: root, distributions, Python range."""

from __future__ import annotations

import ast
import tomllib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from release.errors import ReleaseError
from release.gitrepo import Git
from setupgen.metadata import MetadataError, python_requires


@dataclass(frozen=True)
class Workspace:
    root: Path
    explicit_distributions: tuple[str, ...] = ()

    @property
    def version_file(self) -> Path:
        return self.root / "VERSION"

    def distributions(self) -> tuple[str, ...]:
        """The project names of the workspace's python_distribution targets."""
        if self.explicit_distributions:
            return self.explicit_distributions
        names = tuple(sorted(set(_distributions_in_build_files(self.root))))
        if not names:
            raise ReleaseError(f"no python_distribution found in the BUILD files under {self.root}")
        return names

    def requires_python(self) -> str:
        return interpreter_range(self.root / "pants.toml")


def find_root(start: Path) -> Path:
    for directory in (start, *start.parents):
        if (directory / "pants.toml").is_file():
            return directory
    raise ReleaseError(
        f"no pants.toml in {start} or above; run inside the repository or pass --root"
    )


def interpreter_range(pants_toml: Path) -> str:
    """Requires-Python as derived from `[python] interpreter_constraints`, e.g. >=3.12,<3.13."""
    try:
        config = tomllib.loads(pants_toml.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise ReleaseError(f"cannot read {pants_toml}: {error}") from None
    constraints = config.get("python", {}).get("interpreter_constraints")
    if not isinstance(constraints, list):
        raise ReleaseError(
            f"{pants_toml}: [python] interpreter_constraints must be a list, found {constraints!r}"
        )
    # Derived exactly as the setupgen plugin derives the distributions' Requires-Python.
    try:
        return python_requires([str(c) for c in constraints], str(pants_toml))
    except MetadataError as error:
        raise ReleaseError(str(error)) from None


def _distributions_in_build_files(root: Path) -> Iterator[str]:
    for build_file in _build_files(root):
        try:
            tree = ast.parse(build_file.read_text(encoding="utf-8"), filename=str(build_file))
        except SyntaxError as error:
            raise ReleaseError(f"cannot parse {build_file}: {error}") from None
        for call in ast.walk(tree):
            if isinstance(call, ast.Call) and _called_name(call) == "python_distribution":
                yield _artifact_name(call, build_file)


def _build_files(root: Path) -> list[Path]:
    """BUILD files git knows or would add: ignored trees such as dist/ stay out."""
    listing = Git(root).run("ls-files", "-z", "--cached", "--others", "--exclude-standard")
    paths = sorted({path for path in listing.split("\0") if path})
    return [root / p for p in paths if _is_build_file(Path(p).name) and (root / p).is_file()]


def _is_build_file(name: str) -> bool:
    return name == "BUILD" or name.startswith("BUILD.")


def _called_name(call: ast.Call) -> str | None:
    return call.func.id if isinstance(call.func, ast.Name) else None


def _artifact_name(call: ast.Call, build_file: Path) -> str:
    provides = _keyword(call.keywords, "provides")
    if isinstance(provides, ast.Call) and _called_name(provides) == "python_artifact":
        name = _keyword(provides.keywords, "name")
        if isinstance(name, ast.Constant) and isinstance(name.value, str):
            return name.value
    raise ReleaseError(
        f"{build_file}:{call.lineno}: python_distribution has no literal"
        " provides=python_artifact(name=...); pass the names with --dist"
    )


def _keyword(keywords: Sequence[ast.keyword], name: str) -> ast.expr | None:
    return next((k.value for k in keywords if k.arg == name), None)
