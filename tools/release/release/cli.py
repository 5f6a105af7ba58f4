"""`release`: bump, changelog, tag, cut, verify and diff the workspace's distributions.

Run it as `./pants run tools/release -- COMMAND` (or `python -m release COMMAND` with
tools/release and tools/pants-plugins on PYTHONPATH). Every refusal is one `Error: ...` line
and exit status 1.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from release.changelog import build_changelog
from release.diffing import diff_report, resolve_side
from release.errors import ReleaseError
from release.gitrepo import Git
from release.platform_wheels import refusal
from release.publish import (
    DEFAULT_DEPS_INDEX,
    Index,
    install_check,
    plan,
    publish_files,
    pypirc_path,
    release_artifacts,
)
from release.releasing import (
    ReleaseSettings,
    check_findings,
    ensure_at_release_tag,
    push_release,
    release_dist_dir,
    tag_release,
    verify_release,
)
from release.verify import Rebuild
from release.versioning import KINDS, bump_to, read_version_file, write_version_file
from release.versioning import bump as bump_version
from release.workspace import Workspace, find_root

# The tool usually runs under `./pants run`, which keeps pantsd busy until it exits: nested runs
# must not wait for it (--concurrent runs them without pantsd).
DEFAULT_TEST_COMMAND = "./pants --concurrent test ::"
DEFAULT_PACKAGE_COMMAND = "./pants --concurrent --pants-distdir={dist} package ::"
# Pants would answer a rebuild from its cache; a reproducibility check must really rebuild.
DEFAULT_REBUILD_COMMAND = "./pants --concurrent --no-local-cache --pants-distdir={dist} package ::"


class ReleaseGroup(click.Group):
    """Turns a ReleaseError anywhere below into click's one-line `Error: ...` and exit 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ReleaseError as error:
            raise click.ClickException(str(error)) from None


@dataclass(frozen=True)
class Options:
    root: Path | None
    distributions: tuple[str, ...]

    def workspace(self) -> Workspace:
        return Workspace(self.root or find_root(Path.cwd()), self.distributions)


@click.group(cls=ReleaseGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--root",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Repository root (default: the nearest directory above with pants.toml).",
)
@click.option(
    "--dist",
    "distributions",
    multiple=True,
    envvar="RELEASE_DISTRIBUTIONS",
    help="A distribution of the workspace (repeatable; default: every"
    " python_distribution in the BUILD files).",
)
@click.pass_context
def cli(ctx: click.Context, root: Path | None, distributions: tuple[str, ...]) -> None:
    """Release the workspace's distributions: one version, every package, checked."""
    ctx.obj = Options(root.resolve() if root else None, distributions)


@cli.command()
@click.argument("kind", required=False, metavar=f"[{'|'.join(KINDS)}]")
@click.option("--to", "target", metavar="VERSION", help="Move to this exact newer version.")
@click.pass_obj
def bump(options: Options, kind: str | None, target: str | None) -> None:
    """Move VERSION to the next release of KIND, or to --to VERSION."""
    if (kind is None) == (target is None):
        raise ReleaseError("give either KIND or --to VERSION")
    workspace = options.workspace()
    current = read_version_file(workspace.version_file)
    new = bump_to(current, target) if target is not None else bump_version(current, str(kind))
    write_version_file(workspace.version_file, new)
    click.echo(f"{current} -> {new} (metadata version {new.canonical})")


@cli.command()
@click.option("--draft", is_flag=True, help="Print the new section; change nothing.")
@click.pass_obj
def changelog(options: Options, draft: bool) -> None:
    """Fold the news fragments in changes/ into CHANGELOG.md under VERSION."""
    workspace = options.workspace()
    version = read_version_file(workspace.version_file)
    rendered = build_changelog(workspace.root, version, draft=draft)
    click.echo(
        rendered.rstrip() if draft else f"CHANGELOG.md: news fragments folded under {version}"
    )


_package_cmd_option = click.option(
    "--package-cmd",
    envvar="RELEASE_PACKAGE_CMD",
    default=DEFAULT_PACKAGE_COMMAND,
    show_default=True,
    help="Command that builds every distribution into {dist}.",
)
_wheelhouse_option = click.option(
    "--wheelhouse",
    multiple=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Directory of third-party wheels for the install check (repeatable): install with"
    " dependencies, import strictly.",
)


_allow_missing_option = click.option(
    "--allow-missing-platform-wheels",
    is_flag=True,
    help="Release even if a krunner platform wheel that tools/krunner/inputs.toml declares was"
    " not built (that krunner ships as its sdist alone); one line per missing wheel says why.",
)


def _release_options[F: Callable[..., Any]](command: F) -> F:
    decorators = [
        click.option(
            "--test-cmd",
            envvar="RELEASE_TEST_CMD",
            default=DEFAULT_TEST_COMMAND,
            show_default=True,
            help="Command that runs every test.",
        ),
        _package_cmd_option,
        click.option("--no-fetch", is_flag=True, help="Compare with the upstream as last fetched."),
        _wheelhouse_option,
        _allow_missing_option,
    ]
    for decorator in reversed(decorators):
        command = decorator(command)
    return command


def _settings(
    test_cmd: str,
    package_cmd: str,
    no_fetch: bool,
    wheelhouse: tuple[Path, ...],
    allow_missing_platform_wheels: bool,
) -> ReleaseSettings:
    return ReleaseSettings(
        test_cmd,
        package_cmd,
        fetch=not no_fetch,
        wheelhouses=wheelhouse,
        allow_missing_platform_wheels=allow_missing_platform_wheels,
    )


def _release(options: Options, kind: str | None, settings: ReleaseSettings) -> None:
    workspace = options.workspace()
    version = tag_release(workspace, settings, _log, kind)
    artifacts = release_dist_dir(workspace.root, version).relative_to(workspace.root)
    click.echo(f"released {version}; artifacts in {artifacts}; next: `publish` (upload) and `push`")


def _log(message: str) -> None:
    click.echo(message, err=True)


@cli.command()
@_release_options
@click.pass_obj
def tag(
    options: Options,
    test_cmd: str,
    package_cmd: str,
    no_fetch: bool,
    wheelhouse: tuple[Path, ...],
    allow_missing_platform_wheels: bool,
) -> None:
    """Test, package, verify, fold the changelog, commit `release: VERSION` and tag VERSION."""
    settings = _settings(test_cmd, package_cmd, no_fetch, wheelhouse, allow_missing_platform_wheels)
    _release(options, None, settings)


@cli.command()
@click.argument("kind", metavar=f"{'|'.join(KINDS)}")
@_release_options
@click.pass_obj
def cut(
    options: Options,
    kind: str,
    test_cmd: str,
    package_cmd: str,
    no_fetch: bool,
    wheelhouse: tuple[Path, ...],
    allow_missing_platform_wheels: bool,
) -> None:
    """`bump KIND` then `tag`; on any failure the tree is left as it was."""
    settings = _settings(test_cmd, package_cmd, no_fetch, wheelhouse, allow_missing_platform_wheels)
    _release(options, kind, settings)


@cli.command()
@click.argument("dist_dir", required=False, type=click.Path(path_type=Path))
@click.option("--reproducible", is_flag=True, help="Also rebuild and compare digests.")
@_wheelhouse_option
@_allow_missing_option
@click.option(
    "--rebuild-cmd",
    envvar="RELEASE_REBUILD_CMD",
    default=DEFAULT_REBUILD_COMMAND,
    show_default=True,
    help="Command that rebuilds every distribution into {dist}.",
)
@click.pass_obj
def verify(
    options: Options,
    dist_dir: Path | None,
    reproducible: bool,
    wheelhouse: tuple[Path, ...],
    allow_missing_platform_wheels: bool,
    rebuild_cmd: str,
) -> None:
    """Check DIST_DIR (default dist/release-VERSION) holds a correct release of every
    distribution, and nothing else."""
    workspace = options.workspace()
    version = read_version_file(workspace.version_file)
    directory = dist_dir or release_dist_dir(workspace.root, version)
    rebuild = Rebuild(workspace.root, rebuild_cmd) if reproducible else None
    findings = verify_release(
        workspace, version, directory, wheelhouse, rebuild, allow_missing_platform_wheels
    )
    for problem in findings.problems:
        click.echo(problem)
    for missing in findings.missing if findings.missing_allowed else ():
        click.echo(f"releasing without krunner platform wheel {missing.line()}")
    if findings.problems:
        if findings.refused_missing:
            click.echo(refusal(findings.refused_missing))
        raise SystemExit(1)
    count = len(workspace.distributions())
    click.echo(f"{directory}: {count} distributions at {version.canonical} verified")


@cli.command()
@click.argument("dist_dir", required=False, type=click.Path(path_type=Path))
@click.option("--repository", metavar="NAME", help="A ~/.pypirc section (twine's --repository).")
@click.option("--repository-url", metavar="URL", help="The index's upload URL.")
@click.option(
    "--index-url",
    metavar="URL",
    help="The index's simple page, if not the default for the upload URL (URL/simple/; PyPI's"
    " and TestPyPI's own).",
)
@click.option(
    "--deps-index-url",
    metavar="URL",
    default=DEFAULT_DEPS_INDEX,
    show_default=True,
    envvar="RELEASE_DEPS_INDEX_URL",
    help="Where the install check takes third-party dependencies from.",
)
@_allow_missing_option
@click.option("--dry-run", is_flag=True, help="Print what would be uploaded and skipped only.")
@click.pass_obj
def publish(
    options: Options,
    dist_dir: Path | None,
    repository: str | None,
    repository_url: str | None,
    index_url: str | None,
    deps_index_url: str,
    allow_missing_platform_wheels: bool,
    dry_run: bool,
) -> None:
    """Upload DIST_DIR (default dist/release-VERSION) to an index with twine, then install it
    from there into a fresh virtualenv.

    Only from the commit of the tag VERSION with a clean tree, and only if verify passes. Files
    the index has with the same sha256 are skipped (a publish that stopped halfway finishes on
    the next run); one it has with another sha256 stops everything before any upload.
    Credentials: twine's (TWINE_USERNAME/TWINE_PASSWORD, keyring, ~/.pypirc).
    """
    workspace = options.workspace()
    version = read_version_file(workspace.version_file)
    index = Index.choose(repository, repository_url, index_url, pypirc_path(os.environ))
    directory = dist_dir or release_dist_dir(workspace.root, version)
    ensure_at_release_tag(Git(workspace.root), version)
    _log(f"==> verifying {directory}")
    findings = verify_release(
        workspace, version, directory, (), None, allow_missing_platform_wheels
    )
    check_findings(findings, directory, _log)
    artifacts = release_artifacts(directory)
    _log(f"==> {'planning' if dry_run else 'publishing'} {version} to {index.upload_url}")
    steps = publish_files(artifacts, index, dry_run=dry_run, log=_log)
    uploads = sum(step.action == "upload" for step in steps)
    if dry_run:
        click.echo(
            f"dry run: would upload {uploads} and skip {len(steps) - uploads} file(s) of"
            f" {version} to {index.upload_url}; nothing changed"
        )
        return
    for step in plan(artifacts, index):  # every file must be on the index now, byte for byte
        if step.action != "skip":
            raise ReleaseError(
                f"{step.artifact.path.name} is not on {index.simple_url} after uploading"
            )
        click.echo(f"{step.artifact.path.name} {step.url}")
    _log(f"==> installing {version.canonical} from {index.simple_url}")
    install_check(artifacts, version, index, deps_index_url, _log)
    click.echo(
        f"published {version}: {uploads} uploaded, {len(steps) - uploads} already there;"
        f" installed from {index.simple_url} and ran"
    )


@cli.command()
@click.pass_obj
def push(options: Options) -> None:
    """Push the release commit and the tag VERSION to the branch's remote (atomically); refuses
    when the remote has that tag at another commit."""
    workspace = options.workspace()
    version = read_version_file(workspace.version_file)
    remote = push_release(Git(workspace.root), version)
    click.echo(f"pushed {version} to {remote}")


@cli.command()
@click.argument("old")
@click.argument("new")
@_package_cmd_option
@click.pass_obj
def diff(options: Options, old: str, new: str, package_cmd: str) -> None:
    """Report what changed from OLD to NEW: artifact files, dist directories or git tags."""
    with contextlib.ExitStack() as stack:
        root = options.root or _root_if_any()
        sides = [
            resolve_side(spec, role, root, package_cmd, stack)
            for spec, role in ((old, "OLD"), (new, "NEW"))
        ]
        click.echo("\n".join(diff_report(*sides)))


def _root_if_any() -> Path:
    """diff of two paths needs no repository; a tag does, and then the lookup must succeed."""
    try:
        return find_root(Path.cwd())
    except ReleaseError:
        return Path.cwd()


def main() -> None:
    cli(prog_name="release")
