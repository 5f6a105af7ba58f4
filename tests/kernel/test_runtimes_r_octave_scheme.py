"""R (IRkernel), Octave, MIT Scheme and Julia (IJulia) with their real toolchains.

One runner per language serves every test of this module (each start-up costs a second or more
of CPU); the tests leave it idle, so their order does not matter.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from jupyter_client.kernelspec import KernelSpecManager

from ai.backend.kernel.protocol import Op, Record

INTERRUPT_GRACE = "1"
# Where the runners started here find kernels: their user and JUPYTER_PATH directories are
# temporary, so a kernel must be in their Python's prefix or a system directory.
SHARED_KERNEL_DIRS = [
    f"{sys.prefix}/share/jupyter/kernels",
    "/usr/local/share/jupyter/kernels",
    "/usr/share/jupyter/kernels",
]


@dataclass(frozen=True)
class Runtime:
    key: str
    tools: tuple[str, ...]
    kernelspec: str
    """The Jupyter kernel query mode needs; empty where each snippet runs in a new process."""
    hello: str
    """Prints "hello 42"."""
    failing: str
    """Prints "before", then fails with an error that mentions "boom"."""
    greeting: str
    """Reads a line and prints "hi <line>"."""
    endless: str
    """Prints "started" (flushed), then never ends."""
    main_file: str
    main: str
    """The batch program: prints "hello 42" and what it reads from stdin."""
    setter: str = ""
    getter: str = ""
    """Where a kernel keeps state: ``setter`` stores 41, ``getter`` prints it plus one."""


RUNTIMES = {
    "r": Runtime(
        "r",
        ("R", "Rscript"),
        "ir",
        hello='cat(sprintf("hello %d\\n", 6L * 7L))',
        failing='cat("before\\n")\nstop("boom")\ncat("after\\n")',
        greeting='name <- readline("name? ")\ncat("hi ", name, "\\n", sep = "")',
        endless='cat("started\\n")\nflush(stdout())\nrepeat Sys.sleep(0.1)',
        main_file="main.R",
        main='cat("hello 42\\n")\n'
        'cat("read", readLines(file("stdin"), n = 1L), "\\n", sep = "")\n',
        setter="answer <- 41",
        getter="cat(answer + 1, '\\n', sep = '')",
    ),
    "octave": Runtime(
        "octave",
        ("octave-cli",),
        "",
        hello='printf("hello %d\\n", 6 * 7);',
        failing='disp("before");\nerror("boom");\ndisp("after");',
        greeting='name = input("name? ", "s");\nprintf("hi %s\\n", name);',
        endless='disp("started"); fflush(stdout);\nwhile true\nend',
        main_file="main.m",
        # "1;" first: a file in the load path that starts with a function is a function file.
        main="1;\nfunction r = twice(x)\n  r = 2 * x;\nend\n"
        'printf("hello %d\\n", twice(21));\nprintf("read%s\\n", input("", "s"));\n',
    ),
    "scheme": Runtime(
        "scheme",
        ("mit-scheme",),
        "",
        hello='(display "hello ")\n(display (* 6 7))\n(newline)',
        failing='(display "before")\n(newline)\n(error "boom:" 42)\n(display "after")',
        greeting='(display "name? ")\n(display (string-append "hi " (read-line)))\n(newline)',
        endless='(display "started")\n(newline)\n(flush-output)\n(let loop () (loop))',
        main_file="main.scm",
        main='(display "hello 42")\n(newline)\n'
        '(display (string-append "read" (read-line)))\n(newline)\n',
    ),
    "julia": Runtime(
        "julia",
        ("julia",),
        "julia",
        hello='println("hello ", 6 * 7)',
        failing='println("before")\nerror("boom")\nprintln("after")',
        greeting='print("name? ")\nname = readline()\nprintln("hi ", name)',
        endless='println("started")\nflush(stdout)\nwhile true\n  sleep(0.1)\nend',
        main_file="main.jl",
        main='println("hello 42")\nprintln("read", readline())\n',
        setter="answer = 41",
        getter="println(answer + 1)",
    ),
}


def _missing(runtime: Runtime) -> str:
    """Why this runtime cannot run here, or "" when it can."""
    absent = [tool for tool in runtime.tools if not shutil.which(tool)]
    if absent:
        return f"{runtime.key}: {', '.join(absent)} not installed"
    if runtime.kernelspec:
        specs = KernelSpecManager(kernel_dirs=SHARED_KERNEL_DIRS).find_kernel_specs()
        if not any(name.startswith(runtime.kernelspec) for name in specs):
            where = ", ".join(SHARED_KERNEL_DIRS)
            return f"{runtime.key}: no Jupyter kernelspec named {runtime.kernelspec}* in {where}"
    return ""


def _params(keys: list[str]) -> list[Any]:
    params = []
    for key in keys:
        reason = _missing(RUNTIMES[key])
        mark = pytest.mark.skipif(bool(reason), reason=reason)
        params.append(pytest.param(key, id=key, marks=mark))
    return params


@pytest.fixture(scope="module", params=_params(list(RUNTIMES)))
def runtime(request: pytest.FixtureRequest) -> Runtime:
    return RUNTIMES[request.param]


@pytest.fixture(scope="module")
def kernel(runtime: Runtime, start_module_kernel: Callable[..., Any]) -> Any:
    return start_module_kernel(runtime.key, "--interrupt-grace", INTERRUPT_GRACE)


def test_query_prints_output(kernel: Any, runtime: Runtime) -> None:
    result = kernel.agent.query(runtime.hello)
    assert (result.stdout, result.exit_code()) == ("hello 42\n", 0), result.stderr
    sshd_keys = {".ssh", "id_container"}  # made at boot where dropbear is installed
    # Query sources live in the private dir.
    assert {path.name for path in kernel.work_dir.iterdir()} - sshd_keys == set()


def test_query_error_stops_with_nonzero_exit(kernel: Any, runtime: Runtime) -> None:
    result = kernel.agent.query(runtime.failing)
    assert result.exit_code() != 0
    assert "boom" in result.stderr
    assert result.stdout == "before\n"  # the error ends the snippet: "after" never runs
    assert Record.WAITING_INPUT not in result.types()  # no debugger prompt waits for input


def test_query_reads_input(kernel: Any, runtime: Runtime) -> None:
    result = kernel.agent.query(runtime.greeting, inputs=["Ann"])
    assert result.types().count(Record.WAITING_INPUT) == 1
    assert (result.stdout, result.exit_code()) == ("name? hi Ann\n", 0), result.stderr


def test_state_is_kept_between_snippets(kernel: Any, runtime: Runtime) -> None:
    if not runtime.kernelspec:
        pytest.skip(f"{runtime.key} runs each snippet in a new process: it keeps no state")
    assert kernel.agent.query(runtime.setter).exit_code() == 0
    result = kernel.agent.query(runtime.getter)
    assert (result.stdout, result.exit_code()) == ("42\n", 0), result.stderr


def test_interrupt_stops_a_running_snippet(kernel: Any, runtime: Runtime) -> None:
    agent = kernel.agent
    agent.send(Op.CODE, runtime.endless)
    agent.collect_until_stdout("started\n")
    agent.send(Op.INTERRUPT)
    result = agent.collect(Record.FINISHED)
    assert result.exit_code() != 0
    assert Record.WAITING_INPUT not in result.types()
    result = agent.query(runtime.hello)  # the runner, and its kernel, still work
    assert (result.stdout, result.exit_code()) == ("hello 42\n", 0), result.stderr


def test_batch_heuristics_run_main(kernel: Any, runtime: Runtime) -> None:
    main = kernel.work_dir / runtime.main_file
    main.write_text(runtime.main)
    try:
        result = kernel.agent.batch(clean="*", build="*", exec="*", inputs=["Bo"])
    finally:
        main.unlink()
    assert result.exit_code(Record.CLEAN_FINISHED) == 0, result.stderr
    assert result.exit_code(Record.BUILD_FINISHED) == 0, result.stderr
    assert (result.stdout, result.exit_code()) == ("hello 42\nreadBo\n", 0), result.stderr
