"""Building artifacts with the configured package command, here or in a worktree of a tag."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from release.artifacts import Artifact, list_artifacts, parse_artifact
from release.diffing import Side
from release.errors import ReleaseError
from release.fileio import sha256_file
from release.gitrepo import Git
from release.proc import expand_command, run_streamed


def package(tree: Path, template: str, dist_dir: Path, what: str) -> list[Artifact]:
    """Runs the package command in `tree` with `{dist}` set to `dist_dir` (relative to `tree`)."""
    command = expand_command(template, os.path.relpath(dist_dir, tree))
    run_streamed(command, tree, what)
    return list_artifacts(dist_dir)


def resolve_side(
    spec: str, role: str, root: Path, template: str, stack: contextlib.ExitStack
) -> Side:
    """OLD or NEW of `diff`: an artifact file, a dist directory, or a git ref (built)."""
    path = Path(spec)
    if path.is_file():
        artifact = parse_artifact(path)
        if artifact is None:
            raise ReleaseError(f"{role} {spec} is neither an sdist (.tar.gz) nor a wheel (.whl)")
        return Side(spec, [artifact])
    if path.is_dir():
        artifacts = list_artifacts(path)
        if not artifacts:
            raise ReleaseError(f"{role} {spec} holds no sdists or wheels")
        return Side(spec, artifacts)
    return _build_ref(spec, role, root, template, stack)


def _build_ref(ref: str, role: str, root: Path, template: str, stack: contextlib.ExitStack) -> Side:
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
    return Side(ref, artifacts)


def _remove_worktree(git: Git, tree: Path) -> None:
    git.run("worktree", "remove", "--force", str(tree))


def check_reproducible(root: Path, release: list[Artifact], template: str) -> list[str]:
    """Rebuilds the tree and compares digests with the given artifacts, one line per mismatch."""
    (root / "dist").mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".rebuild-", dir=root / "dist") as scratch:
        rebuilt = {a.path.name: a for a in package(root, template, Path(scratch), "the rebuild")}
        return [problem for artifact in release if (problem := _compare(artifact, rebuilt))]


def _compare(artifact: Artifact, rebuilt: dict[str, Artifact]) -> str | None:
    twin = rebuilt.get(artifact.path.name)
    if twin is None:
        return f"{artifact.path.name}: the rebuild produced no file of this name"
    before, after = sha256_file(artifact.path), sha256_file(twin.path)
    if before != after:
        return (
            f"{artifact.path.name}: not reproducible: sha256 {before} != {after} after rebuilding"
        )
    return None
