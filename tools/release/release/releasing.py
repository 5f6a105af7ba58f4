"""`tag` and `cut`: the checked path from a clean tree to an annotated release tag."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from release.builds import package_logged
from release.changelog import build_changelog, ensure_not_folded
from release.errors import ReleaseError
from release.gitrepo import Git
from release.platform_wheels import (
    MissingWheel,
    PlatformWheels,
    SkipReasons,
    refusal,
    skip_lines,
    skip_reasons,
)
from release.proc import expand_command, run_streamed
from release.verify import Expectations, Findings, Rebuild, verify_dist
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
    missing = _test_package_verify(workspace, version, settings, log)
    build_changelog(workspace.root, version, draft=False)
    git.run("add", "--", "VERSION", "CHANGELOG.md")
    git.run("commit", "--quiet", "-m", f"release: {version}")
    git.run("tag", "--annotate", str(version), "-m", tag_message(version, missing))
    log(f"tagged {version}")


def tag_message(version: CalVer, missing: Sequence[MissingWheel]) -> str:
    """`Release VERSION`, and the krunner platform wheels it ships without and why, in the
    builder's own words: `verify` and `publish` read them back (`reasons_from_tag`)."""
    message = f"Release {version}"
    if missing:
        message += "\n\nReleased without these krunner platform wheels (sdist only):\n"
        message += "\n".join(skip_lines(missing))
    return message


def reasons_from_tag(git: Git, version: CalVer) -> SkipReasons:
    """The skip reasons `tag` recorded in the tag VERSION's message; none without the tag."""
    if not git.tag_exists(str(version)):
        return {}
    message = git.run("tag", "--list", "--format=%(contents)", str(version))
    return skip_reasons(message.splitlines())


def _test_package_verify(
    workspace: Workspace, version: CalVer, settings: ReleaseSettings, log: Log
) -> list[MissingWheel]:
    """The whole suite, not only what changed: a release commit touches no source.

    Returns the declared krunner platform wheels the release goes without (when allowed)."""
    root = workspace.root
    expected = Expectations.build(version, workspace.distributions(), workspace.requires_python())
    test_command = expand_command(settings.test_command)
    log(f"==> {settings.test_command}")
    run_streamed(test_command, root, "the tests")
    dist_dir = _fresh_dist_dir(root, version)
    log(f"==> packaging into {dist_dir.relative_to(root)}")
    output = package_logged(root, settings.package_command, dist_dir, "packaging")
    platform_wheels = PlatformWheels(
        root / INPUTS_FILE, settings.allow_missing_platform_wheels, skip_reasons(output)
    )
    log(f"==> verifying {dist_dir.relative_to(root)}")
    findings = verify_dist(dist_dir, expected, settings.wheelhouses, None, platform_wheels)
    check_findings(findings, dist_dir, log)
    return findings.missing


def check_findings(findings: Findings, dist_dir: Path, log: Log) -> None:
    """Logs each problem and each allowed missing wheel (one line each); refuses on a problem,
    naming the missing platform wheels and the flag when they are among the problems."""
    for problem in findings.problems:
        log(problem)
    if findings.missing_allowed:
        for missing in findings.missing:
            log(f"releasing without krunner platform wheel {missing.line()}")
    if findings.problems:
        message = f"verify found {len(findings.problems)} problem(s) in {dist_dir}"
        if findings.refused_missing:
            message += f"; {refusal(findings.refused_missing)}"
        raise ReleaseError(message)


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


def verify_release(
    workspace: Workspace,
    version: CalVer,
    dist_dir: Path,
    wheelhouses: Sequence[Path],
    rebuild: Rebuild | None,
    allow_missing_platform_wheels: bool,
) -> Findings:
    """`verify` of a directory built earlier: the skip reasons come from the tag's message."""
    expected = Expectations.build(version, workspace.distributions(), workspace.requires_python())
    reasons = reasons_from_tag(Git(workspace.root), version)
    platform_wheels = PlatformWheels(
        workspace.root / INPUTS_FILE, allow_missing_platform_wheels, reasons
    )
    return verify_dist(dist_dir, expected, wheelhouses, rebuild, platform_wheels)


def ensure_at_release_tag(git: Git, version: CalVer) -> None:
    """Only the tagged commit, from a clean tree, is ever published or pushed."""
    tagged = git.commit_of(f"refs/tags/{version}")
    if tagged is None:
        raise ReleaseError(f"there is no tag {version}; cut or tag the release first")
    head = git.head()
    if head != tagged:
        raise ReleaseError(
            f"HEAD ({head[:12]}) is not the commit of the tag {version} ({tagged[:12]});"
            f" check out {version} first"
        )
    dirty = git.changed_paths()
    if dirty:
        raise ReleaseError(
            f"the working tree is not clean ({len(dirty)} changed or untracked paths,"
            f" e.g. {dirty[0]})"
        )


def push_release(git: Git, version: CalVer) -> str:
    """Pushes the release commit to the branch's upstream and the tag to the same remote,
    atomically; refuses when the remote has the tag at another commit. Returns the remote."""
    ensure_at_release_tag(git, version)
    branch = git.branch()
    if branch is None:
        raise ReleaseError("HEAD is detached; check out the release branch (at the tag) first")
    remote = git.config(f"branch.{branch}.remote")
    merge = git.config(f"branch.{branch}.merge")
    if remote is None or merge is None:
        raise ReleaseError(
            f"{branch} has no upstream; set one (git branch --set-upstream-to REMOTE/BRANCH)"
        )
    tag_ref = f"refs/tags/{version}"
    listing = git.run("ls-remote", "--tags", remote, tag_ref, f"{tag_ref}^{{}}")
    remote_refs: dict[str, str] = {}
    for line in listing.splitlines():
        commit, _, ref = line.partition("\t")
        remote_refs[ref] = commit
    theirs = remote_refs.get(f"{tag_ref}^{{}}") or remote_refs.get(tag_ref)
    ours = git.head()
    if theirs is not None and theirs != ours:
        raise ReleaseError(
            f"{remote} already has the tag {version} at {theirs[:12]}, not at the release"
            f" commit {ours[:12]}: refusing to push"
        )
    git.run("push", "--atomic", "--quiet", remote, f"HEAD:{merge}", f"{tag_ref}:{tag_ref}")
    return remote
