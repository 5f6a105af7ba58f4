"""`changelog`: towncrier with the tool's own configuration."""

from __future__ import annotations

from tests.release.conftest import Repo


def test_draft_prints_the_section_and_changes_nothing(repo: Repo) -> None:
    before = repo.state()
    result = repo.invoke("changelog", "--draft")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("## 24.03.4rc1 (")
    assert "### Features\n\n- Add the manifest API. (#102)" in result.stdout
    assert "### Fixes\n\n- Fix the reconnect loop. (#101)" in result.stdout
    assert repo.state() == before


def test_fold_writes_the_heading_and_stages_fragment_removal(repo: Repo) -> None:
    result = repo.invoke("changelog")
    assert result.exit_code == 0, result.output
    changelog = repo.read("CHANGELOG.md")
    assert changelog.index("## 24.03.4rc1 (") < changelog.index("## 24.03.3 (2024-03-01)")
    assert "- Fix the reconnect loop. (#101)" in changelog
    staged = repo.git("status", "--porcelain").splitlines()
    assert sorted(staged) == [
        "D  changes/101.fix.md",
        "D  changes/102.feature.md",
        "M  CHANGELOG.md",
    ]


def test_fold_refuses_a_version_already_in_the_changelog(repo: Repo) -> None:
    repo.write("VERSION", "24.03.3\n")
    result = repo.invoke("changelog")
    assert result.exit_code == 1
    assert result.output == "Error: CHANGELOG.md already has a section for 24.03.3\n"
    assert len(result.output.splitlines()) == 1
