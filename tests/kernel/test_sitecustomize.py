"""The sitecustomize given to user Python processes, outside the runner."""

from __future__ import annotations

import ast
import inspect
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

from ai.backend.kernel import user_sitecustomize

SOURCE = inspect.getsource(user_sitecustomize)


def test_source_stays_valid_for_old_pythons() -> None:
    ast.parse(SOURCE, feature_version=(3, 6))  # the oldest Python its docstring promises


def _answer_once(server: socket.socket, text: bytes) -> None:
    connection, _ = server.accept()
    with connection:
        connection.sendall(text)


def _run_python(tmp_path: Path, env: dict[str, str], code: str) -> subprocess.CompletedProcess[str]:
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    ours.mkdir()
    theirs.mkdir()
    (ours / "sitecustomize.py").write_text(SOURCE)
    (theirs / "sitecustomize.py").write_text("import sys\nsys.stderr.write('image hook\\n')\n")
    full_env = {**os.environ, **env, "PYTHONPATH": f"{ours}{os.pathsep}{theirs}"}
    argv = [sys.executable, "-c", code]
    return subprocess.run(argv, env=full_env, capture_output=True, text=True, timeout=30)


def test_batch_input_goes_through_the_relay(tmp_path: Path) -> None:
    path = tmp_path / "relay.sock"
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(path))
        server.listen()
        threading.Thread(target=_answer_once, args=(server, b"from relay\n"), daemon=True).start()
        env = {"_BACKEND_BATCH_MODE": "1", "BACKENDAI_USER_INPUT_SOCKET": str(path)}
        done = _run_python(tmp_path, env, "print(repr(input('q? ')))")
    assert done.stdout == "q? 'from relay'\n"
    assert done.stderr == "image hook\n"  # the next sitecustomize still runs


def test_query_mode_keeps_the_builtin_input(tmp_path: Path) -> None:
    env = {"BACKENDAI_USER_INPUT_SOCKET": str(tmp_path / "none.sock")}
    done = _run_python(tmp_path, env, "import builtins; print(builtins.input.__module__)")
    assert done.stdout == "builtins\n"
