"""Finds the distributions Pants built for a test and installs them into a fresh virtualenv.

Tests that list `python_distribution` targets in `runtime_package_dependencies` find the built
sdists and wheels in their working directory. Installing is offline: the wheels go in with
`--no-deps`, and a `.pth` file lends the new virtualenv the third-party packages of the locked
test environment, so what is imported from `ai.backend` comes from the wheels alone.
"""

from __future__ import annotations

import ensurepip
import os
import site
import subprocess
import sys
import sysconfig
from collections.abc import Callable, Iterable
from pathlib import Path

from packaging.utils import canonicalize_name, parse_sdist_filename, parse_wheel_filename


def built_artifacts(root: Path) -> list[Path]:
    # Only the top level: Pants' own PEXes in the sandbox hold wheels of their own.
    return sorted(p for p in root.iterdir() if p.name.endswith((".whl", ".tar.gz")))


def wheels_by_project(root: Path) -> dict[str, Path]:
    return _by_project(root, ".whl", lambda name: parse_wheel_filename(name)[0])


def sdists_by_project(root: Path) -> dict[str, Path]:
    return _by_project(root, ".tar.gz", lambda name: parse_sdist_filename(name)[0])


def _by_project(root: Path, suffix: str, project: Callable[[str], str]) -> dict[str, Path]:
    return {
        canonicalize_name(project(path.name)): path
        for path in built_artifacts(root)
        if path.name.endswith(suffix)
    }


def clean_env(**extra: str) -> dict[str, str]:
    """An environment that cannot see the test sandbox's sources or Pants' PEX settings."""
    keep = ("PATH", "HOME", "LANG", "TMPDIR")
    env = {k: v for k, v in os.environ.items() if k in keep}
    env.update(extra)
    return env


def create_venv_with_wheels(venv: Path, wheels: Iterable[Path]) -> Path:
    """Creates `venv` with `wheels` installed and returns its Python interpreter.

    The virtualenv gets no pip of its own: installing one (ensurepip) took longer than all the
    rest, once per test target. The wheels are installed by pip run from the very wheel
    ensurepip would have installed it from."""
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, env=clean_env()
    )
    python = venv / "bin" / "python"
    subprocess.run(
        [
            str(python),
            str(_bundled_pip_wheel() / "pip"),
            "install",
            "--quiet",
            "--no-index",
            "--no-deps",
            "--disable-pip-version-check",
            *map(str, wheels),
        ],
        check=True,
        env=clean_env(),
    )
    venv_site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
        env=clean_env(),
    ).stdout.strip()
    Path(venv_site, "test-environment.pth").write_text("\n".join(_lent_paths()) + "\n")
    return python


def _bundled_pip_wheel() -> Path:
    """The pip wheel of the standard library's ensurepip (pip runs from its wheel)."""
    bundled = Path(ensurepip.__file__).parent / "_bundled"
    wheels = sorted(bundled.glob("pip-*.whl"))
    if not wheels:
        raise RuntimeError(f"no pip wheel in {bundled} to install the built wheels with")
    return wheels[-1]


def _lent_paths() -> list[str]:
    """Where this test process finds its third-party packages: its site-packages and, under
    Pants, the PEX directories on sys.path. The standard library is left out."""
    stdlib = sysconfig.get_paths()["stdlib"]  # the base interpreter's, also in a venv
    lent = list(site.getsitepackages())
    for entry in sys.path:
        if not os.path.isabs(entry) or entry in lent or not os.path.isdir(entry):
            continue
        if entry != stdlib and not entry.startswith(stdlib + os.sep):
            lent.append(entry)
    return lent
