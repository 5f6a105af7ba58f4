"""Building artifacts with the configured package command, here or in a worktree of a tag."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from release.artifacts import Artifact, list_artifacts
from release.errors import ReleaseError
from release.gitrepo import Git
from release.proc import expand_command, run_streamed


def package(tree: Path, template: str, dist_dir: Path, what: str) -> list[Artifact]:
    """Runs the package command in `tree` with `{dist}` set to `dist_dir` (relative to `tree`)."""
    package_logged(tree, template, dist_dir, what)
    return list_artifacts(dist_dir)


def package_logged(tree: Path, template: str, dist_dir: Path, what: str) -> list[str]:
    """Like `package`; returns the command's output lines (the krunner build's skip lines)."""
    command = expand_command(template, os.path.relpath(dist_dir, tree))
    return run_streamed(command, tree, what)


def build_ref(
    ref: str, role: str, root: Path, template: str, stack: contextlib.ExitStack
) -> list[Artifact]:
    """Builds a tag or other ref in a temporary worktree, removed when `stack` closes."""
    git = Git(root)
    commit = git.commit_of(ref)
    if commit is None:
        raise ReleaseError(f"{role} {ref!r} is not an artifact file, a directory or a git tag")
    scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="release-diff-")))
    tree = scratch / "tree"
    git.run("worktree", "add", "--detach", "--quiet", str(tree), commit)
    stack.callback(_remove_worktree, git, tree)
    artifacts = package(tree, template, tree / "dist", f"building {ref}")
    if not artifacts:
        raise ReleaseError(f"building {ref} produced no sdists or wheels")
    return artifacts


def _remove_worktree(git: Git, tree: Path) -> None:
    git.run("worktree", "remove", "--force", str(tree))
