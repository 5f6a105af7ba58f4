"""CalVer bump rules and the `bump` command."""

from __future__ import annotations

import os

import pytest
from packaging.version import Version

from release.errors import ReleaseError
from release.versioning import CalVer, bump, bump_to, written_forms
from tests.release.conftest import Repo


@pytest.mark.parametrize(
    ("current", "kind", "expected"),
    [
        ("24.03.4rc1", "rc", "24.03.4rc2"),
        ("24.03.4rc1", "final", "24.03.4"),
        ("24.03.4rc1", "patch", "24.03.4"),
        ("24.03.4", "rc", "24.03.5rc1"),
        ("24.03.4", "a", "24.03.5a1"),
        ("24.03.4", "b", "24.03.5b1"),
        ("24.03.4", "patch", "24.03.5"),
        ("24.03.4", "dev", "24.03.5.dev0"),
        ("24.03.5a1", "a", "24.03.5a2"),
        ("24.03.5a2", "b", "24.03.5b1"),
        ("24.03.5a2", "rc", "24.03.5rc1"),
        ("24.03.5b1", "rc", "24.03.5rc1"),
        ("24.03.5b3", "final", "24.03.5"),
        ("24.03.5.dev0", "dev", "24.03.5.dev1"),
        ("24.03.0dev0", "dev", "24.03.0dev1"),
        ("24.03.5.dev3", "a", "24.03.5a1"),
        ("24.03.5.dev3", "rc", "24.03.5rc1"),
        ("24.03.5.dev3", "final", "24.03.5"),
        ("24.12.9", "patch", "24.12.10"),
        ("24.01.0", "rc", "24.01.1rc1"),
    ],
)
def test_bump_rules(current: str, kind: str, expected: str) -> None:
    assert str(bump(CalVer.parse(current), kind)) == expected


@pytest.mark.parametrize(
    ("current", "kind", "reason"),
    [
        ("24.03.4", "final", "already final"),
        ("24.03.4rc1", "a", "only move forward"),
        ("24.03.4rc1", "b", "only move forward"),
        ("24.03.4b2", "a", "only move forward"),
        ("24.03.4rc1", "dev", "would be older"),
        ("24.03.4", "minor", "unknown KIND 'minor'"),
    ],
)
def test_bump_refusals(current: str, kind: str, reason: str) -> None:
    with pytest.raises(ReleaseError, match=reason):
        bump(CalVer.parse(current), kind)


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        ("24.03.4rc1", "is the current version"),
        ("24.03.4a9", "is older than the current version 24.03.4rc1"),
        ("24.02.9", "is older"),
        ("24.3.5", "valid PEP 440 but not a release tag"),
        ("24.13.1", "months run from 01 to 12"),
        ("24.03.05", "valid PEP 440 but not a release tag"),
        ("v24.03.5", "valid PEP 440 but not a release tag"),
        ("banana", "not a valid version"),
    ],
)
def test_bump_to_refusals(target: str, reason: str) -> None:
    with pytest.raises(ReleaseError, match=reason):
        bump_to(CalVer.parse("24.03.4rc1"), target)


def test_bump_to_accepts_any_newer_tag() -> None:
    assert str(bump_to(CalVer.parse("24.03.4rc1"), "24.09.0a1")) == "24.09.0a1"


@pytest.mark.parametrize(
    ("written", "canonical"),
    [("24.03.4rc1", "24.3.4rc1"), ("24.03.0dev0", "24.3.0.dev0"), ("24.10.2", "24.10.2")],
)
def test_canonical_form(written: str, canonical: str) -> None:
    assert CalVer.parse(written).canonical == canonical
    assert written in written_forms(Version(canonical))


def test_bump_command_writes_version(repo: Repo) -> None:
    result = repo.invoke("bump", "rc")
    assert result.exit_code == 0, result.output
    assert result.output == "24.03.4rc1 -> 24.03.4rc2 (metadata version 24.3.4rc2)\n"
    assert repo.read("VERSION") == "24.03.4rc2\n"
    assert not [p for p in repo.root.iterdir() if p.name.startswith(".VERSION")]


def test_bump_keeps_file_mode(repo: Repo) -> None:
    os.chmod(repo.root / "VERSION", 0o664)
    assert repo.invoke("bump", "--to", "24.03.4").exit_code == 0
    assert (repo.root / "VERSION").stat().st_mode & 0o777 == 0o664


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["bump", "--to", "24.03.3"],
            "Error: 24.03.3 is older than the current version 24.03.4rc1",
        ),
        (["bump", "--to", "24.03.4rc1"], "Error: 24.03.4rc1 is the current version"),
        (["bump", "minor"], "Error: unknown KIND 'minor'; expected one of: dev, a, b, rc, final"),
        (["bump"], "Error: give either KIND or --to VERSION"),
        (["bump", "rc", "--to", "24.03.5"], "Error: give either KIND or --to VERSION"),
        (["cut", "minor"], "Error: unknown KIND 'minor'"),
    ],
)
def test_bad_bumps_print_one_line_and_change_nothing(
    repo: Repo, args: list[str], message: str
) -> None:
    before = repo.state()
    result = repo.invoke(*args)
    assert result.exit_code == 1
    assert len(result.output.splitlines()) == 1
    assert result.output.startswith(message)
    assert repo.state() == before


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read"),
        ("", "is empty"),
        ("24.3.4rc1\n", "not a release tag"),
        ("24.03.4rc1\n24.03.4rc2\n", "not a valid version"),
    ],
)
def test_unreadable_version_file(repo: Repo, content: str | None, message: str) -> None:
    version_file = repo.root / "VERSION"
    if content is None:
        version_file.unlink()
    else:
        version_file.write_text(content)
    before = {p.name: p.read_bytes() for p in repo.root.iterdir() if p.is_file()}
    for args in (["bump", "rc"], ["changelog", "--draft"], ["cut", "rc"], ["verify"]):
        result = repo.invoke(*args)
        assert result.exit_code == 1, args
        assert len(result.output.splitlines()) == 1, result.output
        assert message in result.output
    assert {p.name: p.read_bytes() for p in repo.root.iterdir() if p.is_file()} == before
