"""One declaration per runtime type; the core in ``server.py`` interprets them.

Command templates are argv tuples.  Each item is formatted with ``{runtime}``, ``{runtime_dir}``,
``{work_dir}``, ``{src}``, ``{bin}``, ``{dir}`` and ``{stem}``; an item that is exactly
``{sources}`` expands to the work-dir files matching the language's ``sources`` glob, and an item
``$NAME`` expands to the shell-split value of that environment variable (e.g. ``$LDFLAGS``).
"""

from __future__ import annotations

import glob
import os
import re
import shlex
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

Argv = tuple[str, ...]


@dataclass(frozen=True)
class Step:
    """A batch heuristic: run ``argv`` if the glob ``requires`` matches in the work dir."""

    requires: str
    argv: Argv


NOTHING = Step("", ())
"""Always applies and succeeds without running anything."""


@dataclass(frozen=True)
class Jupyter:
    """Query mode through a Jupyter kernel whose kernelspec name starts with ``kernelspec``."""

    kernelspec: str


@dataclass(frozen=True)
class Programs:
    """Query mode: write the snippet to a private temp file and run ``commands`` in order."""

    commands: tuple[Argv, ...]
    prelude: str = ""


@dataclass(frozen=True)
class Polly:
    """Query mode: the snippet is an AWS Polly request (needs boto3 in the runner's Python)."""


@dataclass(frozen=True)
class NoQuery:
    reason: str


QueryMode = Jupyter | Programs | Polly | NoQuery


@dataclass(frozen=True)
class Language:
    key: str
    runtime: tuple[str, ...]
    """Candidates for the default runtime path: absolute globs or names looked up on PATH."""
    query: QueryMode
    suffix: str = ""
    build: tuple[Step, ...] = (NOTHING,)
    exec: tuple[Step, ...] = ()
    clean: tuple[Step, ...] = (NOTHING,)
    sources: str = ""
    entry_pattern: str = ""
    """Regex whose first group names the query source file (Java's public class)."""
    env: tuple[tuple[str, str], ...] = ()
    extra_path: tuple[str, ...] = ()
    """Globs appended to PATH when they exist."""
    init: Argv = ()
    """Image-provided start-up script, run in the background when it exists."""


def _script(key: str, runtime: tuple[str, ...], suffix: str, flags: Argv = ()) -> Language:
    """An interpreted language: query runs the snippet file, exec runs main<suffix>."""
    return Language(
        key,
        runtime,
        Programs((("{runtime}", *flags, "{src}"),)),
        suffix,
        exec=(Step(f"main{suffix}", ("{runtime}", *flags, f"main{suffix}")),),
    )


def _c_family(key: str, runtime: tuple[str, ...], suffix: str, flags: str) -> Language:
    libs = ("$LDFLAGS", "-lrt", "-lm", "-lpthread", "-ldl")
    return Language(
        key,
        runtime,
        Programs((("{runtime}", "-Wall", flags, "-o", "{bin}", "{src}", *libs), ("{bin}",))),
        suffix,
        # One compiler call compiles and links every source, so objects never collide.
        build=(
            Step(f"main{suffix}", ("{runtime}", "-Wall", flags, "-o", "main", "{sources}", *libs)),
        ),
        exec=(Step("main", ("./main",)), Step("a.out", ("./a.out",))),
        clean=(Step("Makefile", ("make", "clean")), NOTHING),
        sources=f"**/*{suffix}",
    )


# MIT Scheme answers an error in a loaded file with a nested REPL that reads stdin, which the
# runner would take for a program asking the user for input.  Instead, load the file (named
# after --args) with a handler that reports the error on stderr and exits with 14, the code
# MIT Scheme itself ends with when its input runs out in an error REPL, and exit once it is
# loaded.  An interrupt aborts that expression to the top level, where the next one exits
# with 130, as a shell reports SIGINT.
_SCHEME_LOAD = (
    "(begin"
    " (with-exception-handler"
    "  (lambda (e)"
    "   (let ((port (current-error-port)))"
    "    (if (condition? e) (write-string (condition/report-string e) port) (write e port))"
    "    (newline port)"
    "    (exit 14)))"
    "  (lambda ()"
    "   (parameterize ((param:suppress-loading-message? #t))"
    "    (load (car (command-line-arguments))))))"
    " (exit))"
)


def _scheme_run(file: str) -> Argv:
    return ("{runtime}", "--quiet", "--eval", _SCHEME_LOAD, "--eval", "(exit 130)", "--args", file)


# Octave 7 reports an error at exit when it cannot create ~/.local/share/octave for its
# history; a script run has no use for the history anyway.
_OCTAVE_FLAGS = ("--no-history",)
_PYTHON_BUILD = ("{runtime}", "-m", "pip", "install", "--user", "-e", ".")

LANGUAGES: Mapping[str, Language] = {
    lang.key: lang
    for lang in (
        Language(
            "python",
            ("/usr/bin/python", "python3", "python"),
            Jupyter("python"),
            ".py",
            build=(Step("setup.py", _PYTHON_BUILD), Step("pyproject.toml", _PYTHON_BUILD), NOTHING),
            exec=(Step("main.py", ("{runtime}", "main.py")),),
        ),
        Language(
            "vendor.h2o",
            ("/opt/h2oai/dai/python/bin/python",),
            Jupyter("python"),
            ".py",
            build=(Step("setup.py", _PYTHON_BUILD), NOTHING),
            exec=(Step("main.py", ("{runtime}", "main.py")),),
            init=("/opt/h2oai/dai/run-dai.sh",),
        ),
        Language(
            "app",
            ("/opt/backend.ai/bin/python",),
            NoQuery("the app runtime only runs services; it has no query mode"),
            exec=(NOTHING,),
        ),
        _c_family("c", ("/usr/bin/gcc", "gcc"), ".c", "$CFLAGS"),
        _c_family("cpp", ("/usr/bin/g++", "g++"), ".cpp", "$CXXFLAGS"),
        Language(
            "golang",
            ("/usr/local/go/bin/go", "/usr/local/bin/go", "go"),
            Programs((("{runtime}", "run", "{src}"),)),
            ".go",
            build=(
                Step("go.mod", ("{runtime}", "build", "-o", "main", ".")),
                Step("main.go", ("{runtime}", "build", "-o", "main", "{sources}")),
            ),
            exec=(Step("main", ("./main",)),),
            sources="*.go",
            env=(("GOPATH", "{work_dir}"),),
            extra_path=("/go/bin", "/usr/local/go/bin", "{work_dir}/bin"),
        ),
        Language(
            "rust",
            ("/usr/bin/rustc", "rustc"),
            Programs((("{runtime}", "-o", "{bin}", "{src}"), ("{bin}",))),
            ".rs",
            build=(
                Step("Cargo.toml", ("{runtime_dir}/cargo", "build")),
                Step("main.rs", ("{runtime}", "-o", "main", "main.rs")),
            ),
            # cargo itself picks the package's binary (or the one named by `default-run`).
            exec=(
                Step("Cargo.toml", ("{runtime_dir}/cargo", "run", "--quiet")),
                Step("main", ("./main",)),
            ),
        ),
        Language(
            "java",
            ("/usr/lib/jvm/java-*/bin/java", "java"),
            Programs(
                (
                    ("{runtime_dir}/javac", "-d", "{dir}", "{src}"),
                    ("{runtime}", "-cp", "{dir}", "{stem}"),
                )
            ),
            ".java",
            build=(Step("**/*.java", ("{runtime_dir}/javac", "-d", ".", "{sources}")),),
            exec=(
                Step("main/Main.class", ("{runtime}", "-cp", ".", "main.Main")),
                Step("Main.class", ("{runtime}", "-cp", ".", "Main")),
            ),
            sources="**/*.java",
            entry_pattern=r"public\s+(?:final\s+)?class\s+(\w+)",
            extra_path=("/usr/lib/jvm/java-*/bin",),
        ),
        Language(
            "haskell",
            ("/usr/bin/ghc", "ghc"),
            Programs((("{runtime_dir}/runhaskell", "{src}"),)),
            ".hs",
            build=(Step("main.hs", ("{runtime}", "--make", "-o", "main", "main.hs")),),
            exec=(Step("main", ("./main",)),),
            extra_path=(
                "/opt/happy/*/bin",
                "/opt/alex/*/bin",
                "/opt/cabal/*/bin",
                "/opt/ghc/*/bin",
                "{work_dir}/.cabal/bin",
            ),
        ),
        Language(
            "julia",
            ("/usr/local/julia/bin/julia", "/usr/local/bin/julia", "julia"),
            Jupyter("julia"),
            ".jl",
            exec=(Step("main.jl", ("{runtime}", "main.jl")),),
            # The images' package directories first; the trailing separator appends Julia's
            # default load path (the active project, ~/.julia's environment, the stdlib), where
            # a stock install keeps IJulia.
            env=(("JULIA_LOAD_PATH", "/opt/julia:/usr/local/julia:"),),
            init=("/usr/local/bin/movecompiled.sh",),
        ),
        Language(
            "r",
            ("/usr/bin/R", "R"),
            Jupyter("ir"),
            ".R",
            exec=(Step("main.R", ("{runtime_dir}/Rscript", "main.R")),),
        ),
        _script("lua", ("/usr/local/bin/lua", "/usr/bin/lua", "lua"), ".lua"),
        _script("nodejs", ("/usr/bin/node", "node"), ".js"),
        _script("octave", ("/usr/bin/octave-cli", "octave-cli"), ".m", _OCTAVE_FLAGS),
        Language(
            "php",
            ("/usr/bin/php", "php"),
            Programs((("{runtime}", "{src}"),), prelude="<?php\n"),
            ".php",
            exec=(Step("main.php", ("{runtime}", "main.php")),),
        ),
        Language(
            "scheme",
            ("/usr/bin/scheme", "scheme", "mit-scheme"),
            Programs((_scheme_run("{src}"),)),
            ".scm",
            exec=(Step("main.scm", _scheme_run("main.scm")),),
        ),
        # A snippet for the git runtime is a shell script (e.g. `git log --oneline`).
        _script("git", ("/bin/sh",), ".sh"),
        Language("vendor.aws_polly", (), Polly()),
    )
}


def resolve_runtime(lang: Language, search_path: str) -> str:
    """The first existing candidate; the first candidate if none exists (it fails at exec)."""
    for candidate in lang.runtime:
        if os.path.isabs(candidate):
            matches = sorted(glob.glob(candidate))
            if matches:
                return matches[-1]
        elif found := shutil.which(candidate, path=search_path):
            return found
    return lang.runtime[0] if lang.runtime else ""


def choose_step(steps: Sequence[Step], work_dir: Path) -> Step | None:
    for step in steps:
        if not step.requires or any(work_dir.glob(step.requires)):
            return step
    return None


def query_stem(lang: Language, code: str) -> str:
    if lang.entry_pattern and (m := re.search(lang.entry_pattern, code)):
        return m.group(1)
    return "Main" if lang.entry_pattern else "main"


def find_sources(lang: Language, work_dir: Path) -> list[str]:
    """The user's sources, skipping hidden directories such as ~/.local and ~/.cache."""
    if not lang.sources:
        return []
    found = (p.relative_to(work_dir) for p in work_dir.glob(lang.sources) if p.is_file())
    return sorted(str(p) for p in found if not any(part.startswith(".") for part in p.parts))


def expand_argv(
    template: Argv,
    values: Mapping[str, str],
    env: Mapping[str, str],
    sources: Sequence[str] = (),
) -> list[str]:
    argv: list[str] = []
    for item in template:
        if item == "{sources}":
            argv.extend(sources)
        elif item.startswith("$"):
            argv.extend(shlex.split(env.get(item[1:], "")))
        else:
            argv.append(item.format_map(values))
    return argv
