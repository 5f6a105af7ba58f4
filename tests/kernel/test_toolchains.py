"""Query and batch mode per language, wherever its toolchain is installed."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from ai.backend.kernel.protocol import Op, Record

StartKernel = Callable[..., Any]


@dataclass(frozen=True)
class Case:
    runtime: str
    tools: tuple[str, ...]
    snippet: str
    files: dict[str, str] = field(default_factory=dict)
    build: str = "*"
    expected: str = "hello 42\n"


GO_HELLO = 'package main\nimport "fmt"\nfunc main() { fmt.Println("hello", 42) }\n'

CASES = [
    Case(
        "c",
        ("gcc",),
        '#include <stdio.h>\nint main(void) { printf("hello %d\\n", 42); return 0; }\n',
        {
            "main.c": "#include <stdio.h>\nint twice(int);\n"
            'int main(void) { printf("hello %d\\n", twice(21)); return 0; }\n',
            "lib/twice.c": "int twice(int x) { return 2 * x; }\n",
        },
    ),
    Case(
        "cpp",
        ("g++",),
        '#include <iostream>\nint main() { std::cout << "hello " << 42 << std::endl; }\n',
        {"main.cpp": '#include <iostream>\nint main() { std::cout << "hello 42\\n"; }\n'},
    ),
    Case(
        "java",
        ("javac", "java"),
        "public class Greeter {\n  public static void main(String[] args) {\n"
        '    System.out.println("hello " + 42);\n  }\n}\n',
        {
            "Main.java": "public class Main {\n  public static void main(String[] a) {\n"
            '    System.out.println("hello " + util.Answer.VALUE);\n  }\n}\n',
            "util/Answer.java": "package util;\n"
            "public class Answer { public static int VALUE = 42; }\n",
        },
    ),
    Case(
        "rust",
        ("rustc", "cargo"),
        'fn main() { println!("hello {}", 42); }\n',
        {
            "Cargo.toml": '[package]\nname = "greeter"\nversion = "0.1.0"\nedition = "2021"\n',
            "src/main.rs": 'fn main() { println!("hello {}", 6 * 7); }\n',
        },
    ),
    Case(
        "nodejs",
        ("node",),
        "console.log('hello', 42);\n",
        {"main.js": "console.log(`hello ${40 + 2}`);\n"},
        build="",
    ),
    Case("git", ("git",), "git --version >/dev/null && echo hello 42\n", build=""),
    Case(
        "golang",
        ("go",),
        GO_HELLO,
        {"main.go": GO_HELLO},
    ),
    Case("lua", ("lua",), "print('hello ' .. 42)\n", {"main.lua": "print('hello 42')\n"}, build=""),
    Case(
        "php",
        ("php",),
        'echo "hello " . 42 . "\\n";\n',
        {"main.php": '<?php echo "hello 42\\n";\n'},
        build="",
    ),
    Case(
        "haskell",
        ("ghc", "runhaskell"),
        'main = putStrLn ("hello " ++ show 42)\n',
        {"main.hs": 'main = putStrLn "hello 42"\n'},
    ),
]


def _param(case: Case) -> Any:
    missing = [tool for tool in case.tools if not shutil.which(tool)]
    reason = f"{case.runtime}: {', '.join(missing)} not installed"
    return pytest.param(
        case, id=case.runtime, marks=pytest.mark.skipif(bool(missing), reason=reason)
    )


@pytest.mark.parametrize("case", [_param(c) for c in CASES])
def test_query_runs_privately(start_kernel: StartKernel, case: Case) -> None:
    kernel = start_kernel(case.runtime)
    result = kernel.agent.query(case.snippet)
    assert (result.stdout, result.exit_code()) == (case.expected, 0), result.stderr
    # Sources and binaries stay in the private dir (sshd's keys may be made at boot).
    assert set(os.listdir(kernel.work_dir)) <= {".ssh", "id_container"}


@pytest.mark.parametrize("case", [_param(c) for c in CASES if c.files])
def test_batch_heuristics(start_kernel: StartKernel, case: Case) -> None:
    files = {f"work/{name}": content for name, content in case.files.items()}
    kernel = start_kernel(case.runtime, files=files)
    result = kernel.agent.batch(clean="*", build=case.build, exec="*")
    assert result.exit_code(Record.BUILD_FINISHED) == 0, result.stderr
    # Compilers may report progress on stdout (ghc does): compare the exec step's output only.
    executed = result.after(Record.BUILD_FINISHED)
    assert (executed.stdout, executed.exit_code()) == (case.expected, 0), result.stderr


@pytest.mark.skipif(not shutil.which("gcc"), reason="gcc not installed")
def test_compile_error_is_reported(start_kernel: StartKernel) -> None:
    result = start_kernel("c").agent.query("int main(void) { return undefined_symbol; }\n")
    assert result.exit_code() != 0
    assert "undefined_symbol" in result.stderr


@pytest.mark.skipif(not shutil.which("gcc"), reason="gcc not installed")
def test_c_program_reading_stdin_gets_input(start_kernel: StartKernel) -> None:
    kernel = start_kernel("c")
    (kernel.work_dir / "main.c").write_text(
        "#include <stdio.h>\nint main(void) {\n  int a, b;\n"
        '  printf("a? "); fflush(stdout); if (scanf("%d", &a) != 1) return 1;\n'
        '  printf("b? "); fflush(stdout); if (scanf("%d", &b) != 1) return 1;\n'
        '  printf("sum=%d\\n", a + b);\n  return 0;\n}\n'
    )
    result = kernel.agent.batch(build="*", exec="*", inputs=["3", "4"])
    assert result.types().count(Record.WAITING_INPUT) == 2
    assert result.stdout == "a? b? sum=7\n"
    assert result.exit_code() == 0


def test_shell_read_in_query_mode_gets_input(start_kernel: StartKernel) -> None:
    result = start_kernel("git").agent.query('read name; echo "hi $name"', inputs=["Ann"])
    assert result.json_payloads(Record.WAITING_INPUT) == [{"is_password": False}]
    assert result.stdout == "hi Ann\n"


def test_python_batch_input_uses_the_relay(start_kernel: StartKernel) -> None:
    kernel = start_kernel("python")
    (kernel.work_dir / "main.py").write_text('print("got", input("name? "))\n')
    result = kernel.agent.batch(exec="*", inputs=["Bo"])
    assert (Record.WAITING_INPUT, b"") in result.records  # the relay's empty payload
    assert result.stdout == "name? got Bo\n"


def test_interrupted_prompt_does_not_block_the_next_one(start_kernel: StartKernel) -> None:
    kernel = start_kernel("python", "--interrupt-grace", "0.5")
    (kernel.work_dir / "main.py").write_text('print("got", input("name? "))\n')
    agent = kernel.agent
    agent.start_batch(exec="*")
    agent.collect(Record.WAITING_INPUT)
    agent.send(Op.INTERRUPT)
    assert agent.collect(Record.FINISHED).exit_code() != 0
    agent.send(Op.INPUT, "too late")  # dropped: nobody waits any more
    result = agent.batch(exec="*", inputs=["Cy"])
    assert result.stdout.endswith("got Cy\n")


@pytest.mark.skipif(not shutil.which("node"), reason="node not installed")
def test_node_waiting_in_its_event_loop_gets_input(start_kernel: StartKernel) -> None:
    code = (
        "const rl = require('readline').createInterface({input: process.stdin});\n"
        "rl.question('name? ', (name) => {\n"
        "  console.log(`hi ${name}`);\n"
        # stdin is a pipe, not a TTY: Node keeps waiting on it until it is released.
        "  rl.close(); process.stdin.destroy();\n"
        "});\n"
    )
    result = start_kernel("nodejs").agent.query(code, inputs=["Di"])
    assert result.types().count(Record.WAITING_INPUT) == 1
    assert result.stdout.endswith("hi Di\n")
    assert result.exit_code() == 0
