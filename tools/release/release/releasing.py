"""`tag` and `cut`: the checked path from a clean tree to an annotated release tag."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from release.builds import package
from release.changelog import build_changelog, ensure_not_folded
from release.errors import ReleaseError
from release.gitrepo import Git
from release.proc import expand_command, run_streamed
from release.verify import Expectations, missing_platform_wheels, verify_dist
from release.versioning import CalVer, bump, read_version_file, write_version_file
from release.workspace import Workspace
from tools.krunner.pins import INPUTS_FILE

Log = Callable[[str], None]


@dataclass(frozen=True)
class ReleaseSettings:
    test_command: str
    package_command: str
    fetch: bool = True
    wheelhouses: Sequence[Path] = ()
    allow_missing_platform_wheels: bool = False


def tag_release(
    workspace: Workspace, settings: ReleaseSettings, log: Log, kind: str | None = None
) -> CalVer:
    """Releases the version VERSION holds (committed), or with `kind` its next one (`cut`).

    On any failure the branch, index, files and tags are as before.
    """
    current = read_version_file(workspace.version_file)
    version = current if kind is None else bump(current, kind)
    git = Git(workspace.root)
    ensure_ready(git, version, fetch=settings.fetch)
    with rolled_back_on_failure(git, version):
        if kind is not None:
            write_version_file(workspace.version_file, version)
            log(f"VERSION: {current} -> {version}")
        _release(workspace, git, version, settings, log)
    return version


def ensure_ready(git: Git, version: CalVer, *, fetch: bool) -> None:
    dirty = git.changed_paths()
    if dirty:
        raise ReleaseError(
            f"the working tree is not clean ({len(dirty)} changed or untracked paths,"
            f" e.g. {dirty[0]}); commit or stash them first"
        )
    if git.tag_exists(str(version)):
        raise ReleaseError(f"tag {version} already exists")
    ensure_not_folded(git.root / "CHANGELOG.md", version)
    branch = git.branch()
    if branch is None:
        raise ReleaseError("HEAD is detached; check out the release branch first")
    upstream = git.upstream()
    if upstream is None:
        return
    if fetch:
        git.run("fetch", "--quiet")
    behind = git.commits_behind(upstream)
    if behind:
        raise ReleaseError(f"{branch} is {behind} commit(s) behind {upstream}; pull first")


@contextmanager
def rolled_back_on_failure(git: Git, version: CalVer) -> Iterator[None]:
    """Restores HEAD, index and tracked files, and drops the tag, if the block fails.

    Callers have checked that the tree was clean and the tag absent, so nothing else is lost.
    """
    start = git.head()
    try:
        yield
    except BaseException:
        if git.tag_exists(str(version)):
            git.run("tag", "-d", str(version))
        git.run("reset", "--hard", "--quiet", start)
        raise


def _release(
    workspace: Workspace, git: Git, version: CalVer, settings: ReleaseSettings, log: Log
) -> None:
    _test_package_verify(workspace, version, settings, log)
    build_changelog(workspace.root, version, draft=False)
    git.run("add", "--", "VERSION", "CHANGELOG.md")
    git.run("commit", "--quiet", "-m", f"release: {version}")
    git.run("tag", "--annotate", str(version), "-m", f"Release {version}")
    log(f"tagged {version}")


def _test_package_verify(
    workspace: Workspace, version: CalVer, settings: ReleaseSettings, log: Log
) -> None:
    """The whole suite, not only what changed: a release commit touches no source."""
    root = workspace.root
    expected = Expectations.build(version, workspace.distributions(), workspace.requires_python())
    test_command = expand_command(settings.test_command)
    log(f"==> {settings.test_command}")
    run_streamed(test_command, root, "the tests")
    dist_dir = _fresh_dist_dir(root, version)
    log(f"==> packaging into {dist_dir.relative_to(root)}")
    package(root, settings.package_command, dist_dir, "packaging")
    problems = verify_dist(dist_dir, expected, settings.wheelhouses)
    for problem in problems:
        log(problem)
    if problems:
        raise ReleaseError(f"verify found {len(problems)} problem(s) in {dist_dir}")
    missing = missing_platform_wheels(dist_dir, expected.version.canonical, root / INPUTS_FILE)
    for line in missing:
        log(line)
    if missing and not settings.allow_missing_platform_wheels:
        raise ReleaseError(
            f"{len(missing)} declared krunner platform wheel(s) missing from {dist_dir} (their"
            " inputs could not be fetched?); --allow-missing-platform-wheels releases without them"
        )


def release_dist_dir(root: Path, version: CalVer) -> Path:
    """Where `tag` builds: only this release's artifacts, inside the git-ignored dist/.

    Pants requires its dist directory to be inside the build root.
    """
    return root / "dist" / f"release-{version}"


def _fresh_dist_dir(root: Path, version: CalVer) -> Path:
    dist_dir = release_dist_dir(root, version)
    shutil.rmtree(dist_dir, ignore_errors=True)
    dist_dir.mkdir(parents=True)
    return dist_dir
