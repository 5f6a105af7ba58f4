"""Installed as ``sitecustomize`` for the user's Python processes; the runner only copies it.

In batch mode, ``input()`` asks the runner for a line through its Unix-socket input relay, whose
path is in ``BACKENDAI_USER_INPUT_SOCKET``.  Then the next ``sitecustomize`` on ``sys.path`` (for
example the image's own) is loaded, so shadowing it changes nothing else.

Images may ship old Pythons: keep this file valid for Python 3.6 (no walrus, no removesuffix).
"""

import builtins
import importlib.machinery
import importlib.util
import os
import socket
import sys

_original_input = builtins.input


def _relay_input(prompt: object = "") -> str:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(os.environ["BACKENDAI_USER_INPUT_SOCKET"])
    except OSError:
        sock.close()
        return _original_input(prompt)  # the runner still answers reads of stdin
    with sock:
        sys.stdout.write(str(prompt))
        sys.stdout.flush()
        chunks = []
        chunk = sock.recv(65536)
        while chunk:
            chunks.append(chunk)
            chunk = sock.recv(65536)
    text = b"".join(chunks).decode("utf-8", "replace")
    return text[:-1] if text.endswith("\n") else text


def _load_next_sitecustomize() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    rest = [p for p in sys.path if os.path.abspath(p or ".") != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", rest)
    if spec is not None and spec.loader is not None:
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)


def _install() -> None:
    if os.environ.get("_BACKEND_BATCH_MODE") == "1" and "BACKENDAI_USER_INPUT_SOCKET" in os.environ:
        builtins.input = _relay_input
    _load_next_sitecustomize()


if __name__ == "sitecustomize":  # loaded by Python's site module, not imported by the runner
    _install()
