"""Fixtures: a temporary monorepo in git, and the release CLI run against it with CliRunner."""

from __future__ import annotations

import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from release.cli import cli
from release.proc import python_module_env
from tests.release import distfactory

# Imported, not only named, so that Pants ships it to the sandbox with every test.
DISTFACTORY = Path(distfactory.__file__)
DISTRIBUTIONS = ("backend.ai-kernel", "backend.ai-kernel-helper", "backend.ai-krunner-static-gnu")
PANTS_TOML = '[python]\ninterpreter_constraints = ["CPython>=3.12,<3.13"]\n'
CHANGELOG = (
    "# Changelog\n\n<!-- towncrier release notes start -->\n\n## 24.03.3 (2024-03-01)\n\nOld.\n"
)


def package_command(*names: str) -> str:
    """A stand-in for `./pants package ::` writing a correct release into {dist}."""
    return shlex.join([sys.executable, str(DISTFACTORY), "{dist}", *(names or DISTRIBUTIONS)])


def python_command(code: str) -> str:
    return shlex.join([sys.executable, "-c", code])


PASSING = python_command("pass")


@dataclass
class Repo:
    root: Path

    def git(self, *args: str) -> str:
        result = subprocess.run(
            ["git", *args], cwd=self.root, capture_output=True, text=True, check=True
        )
        return result.stdout.strip()

    def invoke(self, *args: str) -> Result:
        return CliRunner().invoke(cli, ["--root", str(self.root), *args])

    def write(self, relative: str, text: str) -> None:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    def read(self, relative: str) -> str:
        return (self.root / relative).read_text()

    def commit_all(self, message: str) -> None:
        self.git("add", "-A")
        self.git("commit", "--quiet", "-m", message)

    def state(self) -> dict[str, str]:
        """Everything a failed command must leave as it was."""
        return {
            "head": self.git("rev-parse", "HEAD"),
            "branch": self.git("rev-parse", "--abbrev-ref", "HEAD"),
            "tags": self.git("tag", "--list"),
            "status": self.git("status", "--porcelain", "--untracked-files=all"),
            "index": self.git("ls-files", "--stage"),
            "worktrees": self.git("worktree", "list", "--porcelain"),
            "VERSION": self.read("VERSION"),
            "CHANGELOG.md": self.read("CHANGELOG.md"),
            "fragments": " ".join(sorted(p.name for p in (self.root / "changes").iterdir())),
        }


@pytest.fixture(autouse=True)
def hermetic_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for role in ("AUTHOR", "COMMITTER"):
        monkeypatch.setenv(f"GIT_{role}_NAME", "Release Tester")
        monkeypatch.setenv(f"GIT_{role}_EMAIL", "tester@example.invalid")
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    # Stand-in package commands run as `python distfactory.py` and need this environment's packages.
    monkeypatch.setenv("PYTHONPATH", python_module_env()["PYTHONPATH"])
    for name in (
        "RELEASE_DISTRIBUTIONS",
        "RELEASE_TEST_CMD",
        "RELEASE_PACKAGE_CMD",
        "RELEASE_REBUILD_CMD",
        "SOURCE_DATE_EPOCH",
    ):
        monkeypatch.delenv(name, raising=False)


def _build_file(name: str) -> str:
    return (
        f'python_distribution(\n    name="dist",\n    provides=python_artifact(name="{name}"),\n)\n'
    )


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    repo = Repo(tmp_path / "repo")
    repo.root.mkdir()
    repo.git("init", "--quiet", "--initial-branch=main")
    repo.write("pants.toml", PANTS_TOML)
    repo.write("VERSION", "24.03.4rc1\n")
    repo.write(".gitignore", "dist/\n")
    repo.write("CHANGELOG.md", CHANGELOG)
    repo.write("changes/101.fix.md", "Fix the reconnect loop.\n")
    repo.write("changes/102.feature.md", "Add the manifest API.\n")
    for name in DISTRIBUTIONS:
        repo.write(f"src/{name.rsplit('-', 1)[-1]}/BUILD", _build_file(name))
    repo.commit_all("initial")
    return repo
