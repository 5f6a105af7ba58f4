"""Finding the image's Jupyter kernelspec, wherever the runtime (not the runner) is installed.

The runner runs on the krunner's Python while user code runs on RUNTIME_PATH, so jupyter_client's
default search (the runner's own prefix) can miss the image's kernel and pick the wrong
interpreter.  The search order and the choice rule are in this package's README ("Query mode's
Jupyter kernel"); ``search_path`` and ``choose`` implement them.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .subprocesses import run_to_end

log = logging.getLogger(__name__)

SYSTEM_KERNEL_DIRS = (Path("/usr/local/share/jupyter/kernels"), Path("/usr/share/jupyter/kernels"))
PREFIX_QUERY_TIMEOUT = 30.0
BARE_PYTHON = re.compile(r"python(\d+(\.\d+)?)?")
"""An argv[0] that jupyter_client would replace by its own interpreter, the runner's."""
VALID_NAME = re.compile(r"[a-z0-9._-]+", re.IGNORECASE)


class KernelspecNotFound(RuntimeError):
    pass


@dataclass(frozen=True)
class Kernelspec:
    name: str
    directory: Path


def user_data_dir(env: Mapping[str, str]) -> Path | None:
    if data_dir := env.get("JUPYTER_DATA_DIR"):
        return Path(data_dir)
    if xdg := env.get("XDG_DATA_HOME"):
        return Path(xdg) / "jupyter"
    if home := env.get("HOME"):
        return Path(home) / ".local" / "share" / "jupyter"
    return None


def search_path(env: Mapping[str, str], runtime_prefixes: Sequence[Path]) -> list[Path]:
    """Kernel directories in the documented order, without duplicates."""
    data_dirs = [Path(p) for p in env.get("JUPYTER_PATH", "").split(os.pathsep) if p]
    data_dirs += filter(None, [user_data_dir(env)])
    data_dirs += [prefix / "share" / "jupyter" for prefix in runtime_prefixes]
    kernel_dirs = [d / "kernels" for d in data_dirs] + list(SYSTEM_KERNEL_DIRS)
    return list(dict.fromkeys(kernel_dirs))


def list_kernelspecs(kernel_dirs: Sequence[Path]) -> dict[str, Path]:
    """Kernelspec names (lower case) and their directories; the first directory wins."""
    found: dict[str, Path] = {}
    for kernel_dir in kernel_dirs:
        try:
            entries = sorted(kernel_dir.iterdir())
        except OSError:
            continue
        for entry in entries:
            name = entry.name.lower()
            if VALID_NAME.fullmatch(name) and (entry / "kernel.json").is_file():
                found.setdefault(name, entry)
    return found


def choose(found: Mapping[str, Path], wanted: str, searched: Sequence[Path]) -> Kernelspec:
    """The exact name if present, else the greatest name starting with ``wanted``."""
    if not wanted:
        raise ValueError("a kernelspec name prefix is required")
    matches = sorted(name for name in found if name.startswith(wanted))
    if not matches:
        dirs = "".join(f"\n  {d}" for d in searched)
        names = ", ".join(sorted(found)) or "none"
        raise KernelspecNotFound(
            f"no Jupyter kernelspec named {wanted}* (kernels found: {names}); searched:{dirs}"
        )
    name = wanted if wanted in found else matches[-1]
    return Kernelspec(name, found[name])


async def python_prefix(interpreter: str, env: Mapping[str, str]) -> Path | None:
    """The ``sys.prefix`` that ``interpreter`` reports (its virtualenv or conda environment)."""
    argv = [interpreter, "-c", "import sys; print(sys.prefix)"]  # site.py sets a venv's
    try:
        done = await run_to_end(argv, PREFIX_QUERY_TIMEOUT, env)
    except (OSError, TimeoutError) as e:
        log.warning("cannot ask %s for its prefix: %r", interpreter, e)
        return None
    if done.returncode != 0:
        log.warning(
            "%s failed to report its prefix: %s", interpreter, done.err.decode(errors="replace")
        )
        return None
    return Path(done.out.decode(errors="replace").strip())


def install_prefixes(runtime: str) -> list[Path]:
    """The directories above ``bin/`` of the runtime, as given and with symlinks resolved."""
    paths = [Path(runtime), Path(os.path.realpath(runtime))]
    prefixes = [path.parent.parent for path in paths if path.parent.name == "bin"]
    return list(dict.fromkeys(prefixes))


async def runtime_prefixes(runtime: str, is_python: bool, env: Mapping[str, str]) -> list[Path]:
    if is_python and (prefix := await python_prefix(runtime, env)) is not None:
        return [prefix]
    return install_prefixes(runtime)


def launch_argv(
    argv: Sequence[str], runtime: str, is_python: bool, env: Mapping[str, str]
) -> list[str]:
    """The kernelspec's argv with a bare ``python`` in front made absolute: the runtime if it is
    a Python, else that name on the execution's PATH (never the runner's own interpreter)."""
    if not argv or not BARE_PYTHON.fullmatch(argv[0]):
        return list(argv)
    interpreter = runtime if is_python else shutil.which(argv[0], path=env.get("PATH"))
    if interpreter is None:
        raise KernelspecNotFound(f"the kernelspec runs {argv[0]}, which is not on the PATH")
    return [interpreter, *argv[1:]]


async def find_kernelspec(
    wanted: str, runtime: str, is_python: bool, env: Mapping[str, str]
) -> Kernelspec:
    """Search the documented places for a kernelspec named ``wanted``*."""
    kernel_dirs = search_path(env, await runtime_prefixes(runtime, is_python, env))
    found = await asyncio.to_thread(list_kernelspecs, kernel_dirs)
    spec = choose(found, wanted, kernel_dirs)
    log.info("Jupyter kernelspec %s from %s", spec.name, spec.directory)
    return spec
