"""`tag` and `cut`: refusals leave everything as it was; success makes one commit and one tag."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import pytest

from tests.release.conftest import (
    DISTRIBUTIONS,
    PASSING,
    Repo,
    package_command,
    python_command,
)

FAILING = python_command("raise SystemExit(3)")


def release_args(*, test: str = PASSING, package: str | None = None) -> list[str]:
    return ["--test-cmd", test, "--package-cmd", package or package_command()]


def test_tag_releases_the_committed_version(repo: Repo) -> None:
    result = repo.invoke("tag", *release_args())
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        "released 24.03.4rc1; artifacts in dist/release-24.03.4rc1;"
        " next: `publish` (upload) and `push`\n"
    )
    assert repo.git("log", "-1", "--format=%s") == "release: 24.03.4rc1"
    assert repo.git("cat-file", "-t", "24.03.4rc1") == "tag"  # annotated
    assert repo.git("rev-parse", "24.03.4rc1^{commit}") == repo.git("rev-parse", "HEAD")
    assert "## 24.03.4rc1 (" in repo.read("CHANGELOG.md")
    assert list((repo.root / "changes").glob("*.md")) == []
    assert repo.git("status", "--porcelain") == ""
    built = sorted(p.name for p in (repo.root / "dist" / "release-24.03.4rc1").iterdir())
    assert "backend_ai_kernel-24.3.4rc1.tar.gz" in built


def test_cut_bumps_then_tags(repo: Repo) -> None:
    result = repo.invoke("cut", "rc", *release_args())
    assert result.exit_code == 0, result.output
    assert repo.read("VERSION") == "24.03.4rc2\n"
    assert repo.git("describe", "--exact-match", "HEAD") == "24.03.4rc2"
    assert repo.git("show", "--name-only", "--format=", "HEAD").splitlines() == [
        "CHANGELOG.md",
        "VERSION",
        "changes/101.fix.md",
        "changes/102.feature.md",
    ]


@pytest.mark.parametrize("command", ["tag", "cut"])
def test_refuses_a_dirty_tree(repo: Repo, command: str) -> None:
    repo.write("src/kernel/new.py", "x = 1\n")
    before = repo.state()
    result = repo.invoke(command, *(["rc"] if command == "cut" else []), *release_args())
    assert result.exit_code == 1
    assert result.output.startswith("Error: the working tree is not clean (1 changed or untracked")
    assert len(result.output.splitlines()) == 1
    assert repo.state() == before


def test_tag_refuses_an_existing_tag(repo: Repo) -> None:
    repo.git("tag", "24.03.4rc1")
    before = repo.state()
    result = repo.invoke("tag", *release_args())
    assert result.output == "Error: tag 24.03.4rc1 already exists\n"
    assert result.exit_code == 1
    assert repo.state() == before


def test_cut_refuses_when_the_new_tag_exists(repo: Repo) -> None:
    repo.git("tag", "-a", "24.03.4rc2", "-m", "Release 24.03.4rc2")
    before = repo.state()
    result = repo.invoke("cut", "rc", *release_args())
    assert result.output == "Error: tag 24.03.4rc2 already exists\n"
    assert repo.state() == before


def _clone(source: Path, target: Path) -> Repo:
    subprocess.run(["git", "clone", "--quiet", str(source), str(target)], check=True)
    return Repo(target)


def test_refuses_a_branch_behind_its_upstream(repo: Repo, tmp_path: Path) -> None:
    remote = tmp_path / "remote.git"
    subprocess.run(["git", "clone", "--quiet", "--bare", str(repo.root), str(remote)], check=True)
    manager = _clone(remote, tmp_path / "manager")
    colleague = _clone(remote, tmp_path / "colleague")
    colleague.write("src/kernel/fix.py", "fixed = True\n")
    colleague.commit_all("a fix the release manager has not pulled")
    colleague.git("push", "--quiet", "origin", "main")
    before = manager.state()
    for command in (["tag"], ["cut", "rc"]):
        result = manager.invoke(*command, *release_args())
        assert result.output == "Error: main is 1 commit(s) behind origin/main; pull first\n"
        assert manager.state() == before


def test_refuses_a_detached_head(repo: Repo) -> None:
    repo.git("checkout", "--quiet", "--detach")
    result = repo.invoke("tag", *release_args())
    assert result.output == "Error: HEAD is detached; check out the release branch first\n"


@pytest.mark.parametrize(
    ("test_cmd", "package_cmd", "message"),
    [
        (FAILING, None, "Error: the tests failed (exit 3)"),
        (PASSING, FAILING, "Error: packaging failed (exit 3)"),
        (PASSING, package_command("backend.ai-kernel"), "Error: verify found 4 problem(s)"),
    ],
)
def test_cut_rolls_back_on_failure(
    repo: Repo, test_cmd: str, package_cmd: str | None, message: str
) -> None:
    before = repo.state()
    result = repo.invoke("cut", "rc", *release_args(test=test_cmd, package=package_cmd))
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1].startswith(message), result.output
    assert repo.state() == before


def test_cut_rolls_back_after_the_changelog_was_folded(repo: Repo) -> None:
    hook = repo.root / ".git" / "hooks" / "pre-commit"
    hook.write_text("#!/bin/sh\necho 'refused by hook' >&2\nexit 1\n")
    hook.chmod(0o755)
    before = repo.state()
    result = repo.invoke("cut", "final", *release_args())
    assert result.stderr.splitlines()[-1] == "Error: git commit failed (exit 1): refused by hook"
    assert repo.state() == before


@pytest.mark.parametrize("command", [["tag"], ["cut", "final"]])
def test_refuses_a_version_already_in_the_changelog_before_testing(
    repo: Repo, command: list[str]
) -> None:
    repo.write("CHANGELOG.md", repo.read("CHANGELOG.md") + "\n## 24.03.4 (2024-03-02)\n")
    repo.write("VERSION", "24.03.4\n" if command == ["tag"] else "24.03.4rc1\n")
    repo.commit_all("a changelog that already has 24.03.4")
    before = repo.state()
    result = repo.invoke(*command, *release_args(test=FAILING))
    assert result.output == "Error: CHANGELOG.md already has a section for 24.03.4\n"
    assert repo.state() == before


@pytest.mark.parametrize("command", [["tag"], ["cut", "rc"]])
def test_an_empty_test_command_is_one_line(repo: Repo, command: list[str]) -> None:
    before = repo.state()
    result = repo.invoke(*command, *release_args(test=""))
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1] == "Error: a configured command is empty"
    assert result.stdout == ""
    assert repo.state() == before


KRUNNER = "backend.ai-krunner-static-gnu"
SKIPPED = {
    "x86_64": "cannot download https://example.invalid/x86_64.tar.gz: no route",
    "aarch64": "cannot download https://example.invalid/aarch64.tar.gz: no route",
}


def without_platform_wheels(repo: Repo) -> str:
    """A workspace declaring the krunner platform wheels (the real inputs.toml), and a package
    command that, as `./pants package ::` does here, skips them, saying why as Pants logs it."""
    repo.write("tools/krunner/inputs.toml", Path("tools/krunner/inputs.toml").read_text())
    repo.commit_all("declare the krunner platform wheels")
    say = "; ".join(
        f"print('12:00:00.00 [WARN] krunner: skipped manylinux_2_26_{arch} (static-gnu): {why}')"
        for arch, why in SKIPPED.items()
    )
    names = [name if name != KRUNNER else f"{name}:sdist" for name in DISTRIBUTIONS]
    return f"{python_command(say)} && {package_command(*names)}"


def _shell(command: str) -> str:
    return shlex.join(["sh", "-c", command])


def wheel_of(arch: str) -> str:
    return f"backend_ai_krunner_static_gnu-24.3.4rc2-py3-none-manylinux_2_26_{arch}.whl"


@pytest.mark.parametrize("command", [["cut", "rc"], ["tag"]])
def test_missing_platform_wheels_refused_naming_them_and_the_flag(
    repo: Repo, command: list[str]
) -> None:
    package = _shell(without_platform_wheels(repo))
    if command == ["tag"]:
        repo.write("VERSION", "24.03.4rc2\n")
        repo.commit_all("24.03.4rc2")
    before = repo.state()
    result = repo.invoke(*command, *release_args(package=package))
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    for arch, why in SKIPPED.items():
        assert (
            f"missing krunner platform wheel {wheel_of(arch)} (static-gnu, {arch}): {why}" in lines
        )
    assert lines[-1] == (
        "Error: verify found 2 problem(s) in"
        f" {repo.root / 'dist' / 'release-24.03.4rc2'}; krunner platform wheels missing:"
        f" {wheel_of('x86_64')}, {wheel_of('aarch64')}; --allow-missing-platform-wheels"
        " releases without them"
    )
    assert repo.state() == before


def test_cut_with_the_flag_releases_the_krunner_sdist_alone(repo: Repo) -> None:
    package = _shell(without_platform_wheels(repo))
    result = repo.invoke(
        "cut", "rc", *release_args(package=package), "--allow-missing-platform-wheels"
    )
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    allowed = [line for line in lines if line.startswith("releasing without")]
    assert allowed == [
        f"releasing without krunner platform wheel {wheel_of(arch)} (static-gnu, {arch}): {why}"
        for arch, why in SKIPPED.items()  # in inputs.toml's order of architectures
    ]
    assert repo.git("describe", "--exact-match", "HEAD") == "24.03.4rc2"
    built = sorted(p.name for p in (repo.root / "dist" / "release-24.03.4rc2").iterdir())
    assert "backend_ai_krunner_static_gnu-24.3.4rc2.tar.gz" in built
    assert not [
        name for name in built if name.startswith("backend_ai_krunner_static_gnu-24.3.4rc2-")
    ]
    # The reasons are kept in the tag, so that a later verify (and publish) says them again.
    verify = repo.invoke("verify", "--allow-missing-platform-wheels")
    assert verify.exit_code == 0, verify.output
    assert [line for line in verify.stdout.splitlines() if "without" in line] == allowed
    refused = repo.invoke("verify")
    assert refused.exit_code == 1
    assert refused.stdout.splitlines()[-1].endswith(
        "--allow-missing-platform-wheels releases without them"
    )


def test_a_krunner_sdist_is_still_checked_with_the_flag(repo: Repo) -> None:
    package = _shell(without_platform_wheels(repo))
    repo.invoke("cut", "rc", *release_args(package=package), "--allow-missing-platform-wheels")
    sdist = (
        repo.root / "dist" / "release-24.03.4rc2" / "backend_ai_krunner_static_gnu-24.3.4rc2.tar.gz"
    )
    sdist.write_bytes(sdist.read_bytes()[:-30])
    result = repo.invoke("verify", "--allow-missing-platform-wheels")
    assert result.exit_code == 1
    assert result.stdout.splitlines()[0].startswith(f"{sdist}: cannot read the archive")
