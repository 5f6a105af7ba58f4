"""`diff`: per-distribution reports ending in one summary line per distribution."""

from __future__ import annotations

from pathlib import Path

import pytest
from packaging.version import Version

from release.artifacts import Artifact
from release.diffing import Substitution
from tests.release.conftest import DISTRIBUTIONS, Repo, package_command
from tests.release.distfactory import Dist, default_files, write_release, write_sdist, write_wheel


def summary(output: str) -> list[str]:
    return output.split("## Summary\n\n", 1)[1].splitlines()


def test_two_versions_of_the_same_sources_differ_only_in_the_version(
    repo: Repo, tmp_path: Path
) -> None:
    write_release(tmp_path / "old", "24.03.4rc1", DISTRIBUTIONS)
    write_release(tmp_path / "new", "24.03.4rc2", DISTRIBUTIONS)
    result = repo.invoke("diff", str(tmp_path / "old"), str(tmp_path / "new"))
    assert result.exit_code == 0, result.output
    assert summary(result.stdout) == [f"{name}: only the version changed" for name in DISTRIBUTIONS]
    assert "-Version: 24.3.4rc1\n+Version: 24.3.4rc2" in result.stdout
    setup_py = "`backend_ai_kernel-24.3.4rc1/setup.py` & `backend_ai_kernel-24.3.4rc2/setup.py`"
    assert f"#### {setup_py}\n * identical" in result.stdout


def test_identical_directories(repo: Repo, tmp_path: Path) -> None:
    write_release(tmp_path / "dist", "24.03.4rc1", DISTRIBUTIONS)
    result = repo.invoke("diff", str(tmp_path / "dist"), str(tmp_path / "dist"))
    assert summary(result.stdout) == [f"{name}: identical" for name in DISTRIBUTIONS]


def test_content_changes_are_shown_and_counted(repo: Repo, tmp_path: Path) -> None:
    old_files = {**default_files("kernel", "24.03.4rc1"), "ai/backend/kernel/gone.py": b"x = 1\n"}
    old_files["ai/backend/kernel/blob.bin"] = b"\0\1\2"
    new_files = {**default_files("kernel", "24.03.4rc2"), "ai/backend/kernel/new.py": b"y = 2\n"}
    new_files["ai/backend/kernel/blob.bin"] = b"\0\1\3"
    new_files["ai/backend/kernel/__init__.py"] += b"RETRIES = 3\n"
    (tmp_path / "old").mkdir()
    (tmp_path / "new").mkdir()
    old_wheel = write_wheel(tmp_path / "old", Dist("backend.ai-kernel", "24.03.4rc1", old_files))
    new_wheel = write_wheel(tmp_path / "new", Dist("backend.ai-kernel", "24.03.4rc2", new_files))
    write_sdist(tmp_path / "new", Dist("backend.ai-kernel", "24.03.4rc2", new_files))
    result = repo.invoke("diff", str(tmp_path / "old"), str(tmp_path / "new"))
    assert result.exit_code == 0, result.output
    report = result.stdout
    assert '-__version__ = "24.3.4rc1"\n+__version__ = "24.3.4rc2"\n+RETRIES = 3' in report
    assert " * binary: sha256 " in report
    assert "#### `ai/backend/kernel/gone.py`\n * removed" in report
    assert "#### `ai/backend/kernel/new.py`\n * added" in report
    assert "### backend_ai_kernel-24.3.4rc2.tar.gz\n * only in NEW" in report
    assert summary(report) == [
        "backend.ai-kernel: 3 files changed, 1 file added, 1 file removed, sdist only in NEW"
    ]
    single = repo.invoke("diff", str(old_wheel), str(new_wheel))
    assert summary(single.stdout) == [
        "backend.ai-kernel: 3 files changed, 1 file added, 1 file removed"
    ]


def test_git_tags_are_built_in_temporary_worktrees(repo: Repo) -> None:
    repo.git("tag", "-a", "24.03.4rc1", "-m", "Release 24.03.4rc1")
    repo.write("VERSION", "24.03.4rc2\n")
    repo.commit_all("release: 24.03.4rc2")
    repo.git("tag", "-a", "24.03.4rc2", "-m", "Release 24.03.4rc2")
    before = repo.state()
    result = repo.invoke("diff", "24.03.4rc1", "24.03.4rc2", "--package-cmd", package_command())
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("# Comparing `24.03.4rc1` & `24.03.4rc2`")
    assert summary(result.stdout) == [f"{name}: only the version changed" for name in DISTRIBUTIONS]
    assert repo.state() == before


@pytest.mark.parametrize(
    ("old", "message"),
    [
        (
            "no-such-tag",
            "Error: OLD 'no-such-tag' is not an artifact file, a directory or a git tag",
        ),
        ("VERSION", "Error: OLD VERSION is neither an sdist (.tar.gz) nor a wheel (.whl)"),
        ("changes", "Error: OLD changes holds no sdists or wheels"),
    ],
)
def test_bad_inputs_are_one_line(
    repo: Repo, old: str, message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(repo.root)
    write_release(repo.root / "dist", "24.03.4rc1", DISTRIBUTIONS)
    before = repo.state()
    result = repo.invoke("diff", old, "dist")
    assert result.exit_code == 1
    assert result.output == message + "\n"
    assert repo.state() == before


def _wheel(version: str) -> Artifact:
    return Artifact(Path("x.whl"), "wheel", "backend-ai-kernel", Version(version))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("version", "text", "expected"),
    [
        ("24.3.4", "Version: 24.3.4\n", "Version: {VERSION}\n"),
        (
            "24.3.4",
            "backend_ai_kernel-24.3.4.dist-info/RECORD",
            "backend_ai_kernel-{VERSION}.dist-info/RECORD",
        ),
        (
            "24.3.4",
            "pins 24.3.45 and 24.3.4rc1 and 124.3.4",
            "pins 24.3.45 and 24.3.4rc1 and 124.3.4",
        ),
        ("24.3.4rc1", "tag 24.03.4rc1, ==24.3.4rc1", "tag {VERSION}, =={VERSION}"),
        ("24.3.5.dev0", "24.03.5dev0 24.03.5.dev0 24.3.5.dev0", "{VERSION} {VERSION} {VERSION}"),
    ],
)
def test_version_substitution(version: str, text: str, expected: str) -> None:
    assert Substitution(_wheel(version)).text(text) == expected
