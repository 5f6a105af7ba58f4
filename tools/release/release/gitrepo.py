"""The few git operations a release needs, each failing with one readable line."""

from __future__ import annotations

from pathlib import Path

from release.proc import run_captured, run_unchecked


class Git:
    def __init__(self, root: Path) -> None:
        self.root = root

    def run(self, *args: str) -> str:
        return run_captured(["git", *args], self.root, f"git {args[0]}")

    def _output_if_ok(self, *args: str) -> str | None:
        """The command's stripped output, or None when git says no (e.g. no such ref)."""
        result = run_unchecked(["git", *args], f"git {args[0]}", cwd=self.root)
        return result.stdout.strip() if result.returncode == 0 else None

    def config(self, key: str) -> str | None:
        return self._output_if_ok("config", "--get", key)

    def head(self) -> str:
        return self.run("rev-parse", "HEAD").strip()

    def commit_of(self, ref: str) -> str | None:
        """The commit a tag or other ref names, or None when there is no such ref."""
        return self._output_if_ok("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")

    def tag_exists(self, name: str) -> bool:
        return (
            self._output_if_ok("rev-parse", "--verify", "--quiet", f"refs/tags/{name}") is not None
        )

    def changed_paths(self) -> list[str]:
        """Modified, staged and untracked (not ignored) paths."""
        output = self.run("status", "--porcelain=v1", "-z", "--untracked-files=all")
        return [entry[3:] for entry in output.split("\0") if len(entry) > 3]

    def branch(self) -> str | None:
        name = self.run("rev-parse", "--abbrev-ref", "HEAD").strip()
        return None if name == "HEAD" else name

    def upstream(self) -> str | None:
        return self._output_if_ok("rev-parse", "--abbrev-ref", "--symbolic-full-name", "@{u}")

    def commits_behind(self, upstream: str) -> int:
        return int(self.run("rev-list", "--count", f"HEAD..{upstream}").strip())
