"""The published runner to compare with, installed once from PyPI into a cached virtualenv."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

from tests.support.processes import RunnerCommand

from .config import BenchError, Config, notice, progress
from .runners import runner_env

UPSTREAM_VERSION = "24.3.3"
UPSTREAM_PORTS = (2000, 2001)
UPSTREAM_DIRS = (Path("/home/work"), Path("/home/config"))
CACHE_DIR = Path.home() / ".cache" / "backend.ai-kernel-bench"


def upstream_command(python: Path) -> RunnerCommand:
    """Upstream's runner as the agent starts it in a container (fixed ports and dirs)."""
    argv = [str(python), "-m", "ai.backend.kernel", "python", str(python)]
    env = {k: v for k, v in runner_env().items() if k != "PYTHONPATH"}
    in_port, out_port = UPSTREAM_PORTS
    return RunnerCommand(
        "upstream", argv, UPSTREAM_DIRS[0], env, in_port, out_port, fixed_ports=True
    )


def upstream_venv_ok(python: Path) -> bool:
    probe = (
        "import importlib.metadata as m, ipykernel, ai.backend.kernel; "
        "print(m.version('backend.ai-kernel'))"
    )
    if not python.exists():
        return False
    out = subprocess.run([str(python), "-c", probe], capture_output=True, text=True)
    return out.returncode == 0 and out.stdout.strip() == UPSTREAM_VERSION


def run_quietly(argv: Sequence[str], timeout: float) -> None:
    out = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        tail = (out.stdout + out.stderr).strip().splitlines()[-8:]
        raise BenchError(f"`{' '.join(argv[:4])} ...` failed:\n    " + "\n    ".join(tail))


def create_upstream_venv(venv: Path, base_python: str) -> None:
    progress(f"creating {venv} (backend.ai-kernel=={UPSTREAM_VERSION} + ipykernel from PyPI)")
    run_quietly([base_python, "-m", "venv", "--clear", str(venv)], 300)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check"]
    run_quietly([*pip, f"backend.ai-kernel=={UPSTREAM_VERSION}", "ipykernel"], 900)


def ensure_upstream(cfg: Config) -> Path | None:
    """The upstream virtualenv's python, created on first use; None (with a notice) if it
    cannot be had."""
    venv = CACHE_DIR / f"upstream-{UPSTREAM_VERSION}"
    python = venv / "bin" / "python"
    if upstream_venv_ok(python):
        return python
    try:
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        create_upstream_venv(venv, cfg.base_python)
    except (BenchError, OSError, subprocess.TimeoutExpired) as exc:
        notice(f"cannot create the upstream virtualenv (no network?): {exc}")
        return None
    if not upstream_venv_ok(python):
        notice(f"the upstream virtualenv at {venv} does not import backend.ai-kernel")
        return None
    return python


def prepare_upstream_dirs() -> bool:
    try:
        for path in UPSTREAM_DIRS:
            path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        notice(f"upstream needs {UPSTREAM_DIRS[0]} and {UPSTREAM_DIRS[1]}: {exc}")
        return False
    return True
