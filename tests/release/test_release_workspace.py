"""What the tool reads from the repository: distributions from BUILD files, the Python range."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from release.cli import cli
from release.errors import ReleaseError
from release.workspace import Workspace, interpreter_range
from tests.release.conftest import DISTRIBUTIONS, Repo


def test_distributions_come_from_build_files(repo: Repo) -> None:
    repo.write("dist/stale/BUILD", 'python_distribution(provides=python_artifact(name="old"))\n')
    assert Workspace(repo.root).distributions() == tuple(sorted(DISTRIBUTIONS))


def test_explicit_distributions_win(repo: Repo) -> None:
    assert Workspace(repo.root, ("backend.ai-kernel",)).distributions() == ("backend.ai-kernel",)


def test_a_computed_name_asks_for_explicit_names(repo: Repo) -> None:
    repo.write("src/macro/BUILD", "python_distribution(provides=python_artifact(name=NAME))\n")
    with pytest.raises(ReleaseError, match=r"src/macro/BUILD:1: .* pass the names with --dist"):
        Workspace(repo.root).distributions()


@pytest.mark.parametrize(
    ("constraints", "expected"),
    [('["CPython>=3.12,<3.13"]', ">=3.12,<3.13"), ('["==3.12.*"]', "==3.12.*")],
)
def test_interpreter_range(repo: Repo, constraints: str, expected: str) -> None:
    repo.write("pants.toml", f"[python]\ninterpreter_constraints = {constraints}\n")
    assert interpreter_range(repo.root / "pants.toml") == expected


@pytest.mark.parametrize(
    "constraints", ['["CPython==3.11.*", "CPython==3.12.*"]', '"CPython>=3.12"', '["CPython>=>3"]']
)
def test_interpreter_range_refusals(repo: Repo, constraints: str) -> None:
    repo.write("pants.toml", f"[python]\ninterpreter_constraints = {constraints}\n")
    with pytest.raises(ReleaseError, match="pants.toml"):
        interpreter_range(repo.root / "pants.toml")


def test_the_root_is_found_from_a_subdirectory(repo: Repo, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(repo.root / "src" / "kernel")
    result = CliRunner().invoke(cli, ["bump", "final"])
    assert result.exit_code == 0, result.output
    assert repo.read("VERSION") == "24.03.4\n"


def test_outside_a_repository_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["bump", "rc"])
    assert result.exit_code == 1
    assert result.output.startswith("Error: no pants.toml in ")
    assert len(result.output.splitlines()) == 1
