"""The language table: coverage of upstream's keys and the copy-paste bugs it must not repeat."""

from __future__ import annotations

import dataclasses
import os
import pwd
from pathlib import Path

import pytest

from ai.backend.kernel.environment import build_child_env, promote_path, read_environ_file
from ai.backend.kernel.languages import (
    LANGUAGES,
    NOTHING,
    Jupyter,
    Programs,
    Step,
    choose_step,
    expand_argv,
    find_sources,
    query_stem,
    resolve_runtime,
)

UPSTREAM_KEYS = {
    "python", "app", "c", "cpp", "golang", "rust", "java", "haskell", "julia", "lua",
    "nodejs", "octave", "php", "r", "scheme", "git", "vendor.aws_polly", "vendor.h2o",
}  # fmt: skip


def test_every_upstream_key_is_declared() -> None:
    assert set(LANGUAGES) == UPSTREAM_KEYS
    assert all(lang.key == key for key, lang in LANGUAGES.items())


def test_default_runtimes_fix_upstream_typos() -> None:
    assert LANGUAGES["c"].runtime[0] == "/usr/bin/gcc"
    assert LANGUAGES["cpp"].runtime[0] == "/usr/bin/g++"
    assert "rustc" not in " ".join(LANGUAGES["scheme"].runtime)
    assert LANGUAGES["nodejs"].runtime[0] == "/usr/bin/node"


def test_octave_exec_checks_main_m() -> None:
    (step,) = LANGUAGES["octave"].exec
    assert step.requires == "main.m"
    assert "main.m" in step.argv


def test_jupyter_runtimes_name_their_kernelspec() -> None:
    kernelspecs = {
        key: lang.query.kernelspec
        for key, lang in LANGUAGES.items()
        if isinstance(lang.query, Jupyter)
    }
    assert kernelspecs == {"python": "python", "vendor.h2o": "python", "julia": "julia", "r": "ir"}


def test_java_passes_sources_as_separate_args(tmp_path: Path) -> None:
    java = LANGUAGES["java"]
    (tmp_path / "pkg").mkdir()
    for name in ("Main.java", "pkg/Util.java"):
        (tmp_path / name).write_text("")
    step = choose_step(java.build, tmp_path)
    assert step is not None
    argv = expand_argv(step.argv, {"runtime_dir": "/jdk/bin"}, {}, find_sources(java, tmp_path))
    assert argv == ["/jdk/bin/javac", "-d", ".", "Main.java", "pkg/Util.java"]
    assert not any(arg.startswith("-J") for arg in argv)


def test_go_build_has_no_empty_argument(tmp_path: Path) -> None:
    golang = LANGUAGES["golang"]
    (tmp_path / "main.go").write_text("")
    step = choose_step(golang.build, tmp_path)
    assert step is not None
    argv = expand_argv(step.argv, {"runtime": "go"}, {}, find_sources(golang, tmp_path))
    assert argv == ["go", "build", "-o", "main", "main.go"]


def test_c_build_links_all_sources_with_ldflags(tmp_path: Path) -> None:
    c = LANGUAGES["c"]
    (tmp_path / "sub").mkdir()
    (tmp_path / ".local").mkdir()
    for name in ("main.c", "util.c", "sub/util.c", ".local/installed.c"):
        (tmp_path / name).write_text("")
    step = choose_step(c.build, tmp_path)
    assert step is not None
    env = {"CFLAGS": "-O2 -g", "LDFLAGS": "-L/opt/lib"}
    argv = expand_argv(step.argv, {"runtime": "gcc"}, env, find_sources(c, tmp_path))
    assert argv[:5] == ["gcc", "-Wall", "-O2", "-g", "-o"]
    assert ["main.c", "sub/util.c", "util.c"] == [a for a in argv if a.endswith(".c")]
    assert argv.index("-L/opt/lib") > argv.index("util.c")


def test_missing_main_file_means_no_step(tmp_path: Path) -> None:
    assert choose_step(LANGUAGES["c"].build, tmp_path) is None
    assert choose_step(LANGUAGES["python"].build, tmp_path) is NOTHING
    assert choose_step(LANGUAGES["python"].exec, tmp_path) is None


def test_rust_exec_lets_cargo_pick_the_binary(tmp_path: Path) -> None:
    (tmp_path / "Cargo.toml").write_text("")
    step = choose_step(LANGUAGES["rust"].exec, tmp_path)
    assert step == Step("Cargo.toml", ("{runtime_dir}/cargo", "run", "--quiet"))


@pytest.mark.parametrize(
    "code, stem",
    [
        ("public class Hello {\n public static void main(String[] a) {} }", "Hello"),
        ("class Hidden {}", "Main"),
    ],
)
def test_java_query_file_is_named_after_the_public_class(code: str, stem: str) -> None:
    assert query_stem(LANGUAGES["java"], code) == stem


def test_compiled_queries_never_write_to_the_cwd() -> None:
    for lang in LANGUAGES.values():
        if isinstance(lang.query, Programs):
            for command in lang.query.commands:
                outputs = [arg for arg in command if arg in ("main", "./main", "a.out")]
                assert not outputs, lang.key


def test_resolve_runtime_prefers_existing_candidates(tmp_path: Path) -> None:
    tool = tmp_path / "gcc"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    # A missing absolute candidate falls through to the one found on the search path.
    c = dataclasses.replace(LANGUAGES["c"], runtime=("/nonexistent/gcc", "gcc"))
    assert resolve_runtime(c, str(tmp_path)) == str(tool)
    # An existing absolute candidate wins over the search path.
    absolute = dataclasses.replace(c, runtime=(str(tool), "gcc"))
    assert resolve_runtime(absolute, "/nonexistent") == str(tool)
    # Nothing exists: the first candidate, which fails when it is run.
    assert resolve_runtime(c, "/nonexistent") == "/nonexistent/gcc"
    assert resolve_runtime(LANGUAGES["vendor.aws_polly"], "") == ""


def test_expand_argv_formats_and_splits() -> None:
    argv = expand_argv(("{runtime}", "$FLAGS", "{src}"), {"runtime": "x", "src": "a b"}, {})
    assert argv == ["x", "a b"]


def test_environ_file_skips_bad_lines(tmp_path: Path) -> None:
    path = tmp_path / "environ.txt"
    path.write_text("A=1\nnot a pair\n=nokey\nB=x=y\n\nC=\n")
    assert read_environ_file(path) == {"A": "1", "B": "x=y", "C": ""}
    assert read_environ_file(tmp_path / "missing") == {}


def test_promote_path_moves_entry_first_without_duplicates() -> None:
    assert promote_path("/a:/b:/c:/b", "/b") == "/b:/a:/c"


def test_home_defaults_to_the_login_home(tmp_path: Path) -> None:
    env = build_child_env({}, LANGUAGES["c"], tmp_path, tmp_path, {})
    assert env["HOME"] == pwd.getpwuid(os.getuid()).pw_dir
    assert env["PATH"].endswith("/usr/bin:/sbin:/bin")


def test_child_env_layers(tmp_path: Path) -> None:
    (tmp_path / "environ.txt").write_text("FROM_FILE=1\nGOPATH=/custom\n")
    base = {"PATH": "/usr/bin:/bin", "HOME": "/root"}
    env = build_child_env(base, LANGUAGES["golang"], tmp_path, tmp_path, {"EXTRA": "e"})
    assert env["FROM_FILE"] == "1"
    assert env["GOPATH"] == "/custom"  # environ.txt overrides the language default
    assert env["HOME"] == "/root"
    assert env["LANG"] == "C.UTF-8"
    assert env["EXTRA"] == "e"
    assert env["PATH"].split(os.pathsep)[0] == str(tmp_path / ".local" / "bin")
