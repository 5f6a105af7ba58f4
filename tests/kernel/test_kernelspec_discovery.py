"""Kernelspec discovery: the runtime's own prefix, the search order, the missing-kernel error."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import sysconfig
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ai.backend.kernel.kernelspecs import (
    SYSTEM_KERNEL_DIRS,
    KernelspecNotFound,
    choose,
    install_prefixes,
    launch_argv,
    list_kernelspecs,
    search_path,
)

StartKernel = Callable[..., Any]


def _write_spec(kernel_dir: Path, name: str, argv: list[str]) -> Path:
    spec_dir = kernel_dir / name
    spec_dir.mkdir(parents=True)
    spec = {"argv": argv, "display_name": name, "language": "python"}
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    return spec_dir


def test_search_order() -> None:
    env = {
        "JUPYTER_PATH": f"/img/a{os.pathsep}/opt/conda/share/jupyter",
        "JUPYTER_DATA_DIR": "/home/u/data",
        "XDG_DATA_HOME": "/ignored",
        "HOME": "/ignored-too",
    }
    assert search_path(env, [Path("/opt/venv"), Path("/opt/conda")]) == [
        Path("/img/a/kernels"),
        Path("/opt/conda/share/jupyter/kernels"),  # listed once, at its first place
        Path("/home/u/data/kernels"),
        Path("/opt/venv/share/jupyter/kernels"),
        *SYSTEM_KERNEL_DIRS,
    ]


@pytest.mark.parametrize(
    ("env", "data_dir"),
    [
        ({"XDG_DATA_HOME": "/x", "HOME": "/h"}, "/x/jupyter/kernels"),
        ({"HOME": "/h"}, "/h/.local/share/jupyter/kernels"),
    ],
)
def test_user_data_dir_fallbacks(env: dict[str, str], data_dir: str) -> None:
    assert search_path(env, []) == [Path(data_dir), *SYSTEM_KERNEL_DIRS]


def test_first_directory_wins_and_the_exact_name_beats_prefixes(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    _write_spec(first, "python3", ["a"])
    _write_spec(second, "python3", ["b"])
    _write_spec(second, "python3.11", ["c"])
    _write_spec(second, "Python3.12", ["d"])  # names are case-insensitive, as in Jupyter
    (second / "not-a-kernel").mkdir()
    found = list_kernelspecs([tmp_path / "missing", first, second])
    assert found == {
        "python3": first / "python3",
        "python3.11": second / "python3.11",
        "python3.12": second / "Python3.12",
    }
    assert choose(found, "python3", []).directory == first / "python3"
    assert choose(found, "python", []).name == "python3.12"  # the greatest match


def test_missing_kernel_error_lists_directories_and_names(tmp_path: Path) -> None:
    searched = [tmp_path / "a", tmp_path / "b"]
    with pytest.raises(KernelspecNotFound) as error:
        choose({"ir": tmp_path / "a" / "ir", "bash": tmp_path / "b" / "bash"}, "julia", searched)
    message = str(error.value)
    assert "no Jupyter kernelspec named julia*" in message
    assert "kernels found: bash, ir" in message
    assert all(f"\n  {d}" in message for d in searched)


def test_bare_python_runs_with_the_runtime(tmp_path: Path) -> None:
    tail = ["-m", "ipykernel_launcher", "-f", "{connection_file}"]
    for bare in ("python", "python3", "python3.12"):
        assert launch_argv([bare, *tail], "/opt/venv/bin/python", True, {}) == [
            "/opt/venv/bin/python",
            *tail,
        ]
    assert launch_argv(["/usr/bin/python3", *tail], "/x/python", True, {}) == [
        "/usr/bin/python3",
        *tail,
    ]
    assert launch_argv(["R", "--slave"], "/usr/bin/R", False, {}) == ["R", "--slave"]
    # Not a Python runtime: the python of the execution's PATH, never the runner's.
    (tmp_path / "python3").write_text("#!/bin/sh\n")
    (tmp_path / "python3").chmod(0o755)
    env = {"PATH": str(tmp_path)}
    assert launch_argv(["python3", "x"], "/usr/bin/R", False, env) == [
        str(tmp_path / "python3"),
        "x",
    ]
    with pytest.raises(KernelspecNotFound, match="python3, which is not on the PATH"):
        launch_argv(["python3", "x"], "/usr/bin/R", False, {"PATH": str(tmp_path / "none")})


def test_install_prefixes_follow_symlinks(tmp_path: Path) -> None:
    real = tmp_path / "julia-1.10" / "bin" / "julia"
    real.parent.mkdir(parents=True)
    real.touch()
    link = tmp_path / "usr" / "bin" / "julia"
    link.parent.mkdir(parents=True)
    link.symlink_to(real)
    assert install_prefixes(str(link)) == [tmp_path / "usr", tmp_path / "julia-1.10"]
    assert install_prefixes("/opt/julia") == []  # not in a bin/ directory


def _virtualenv_with_ipykernel(root: Path) -> Path:
    """A virtualenv whose packages are this test's own (a .pth file), built without network."""
    pytest.importorskip("ipykernel")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site_dir = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    ours = [p for p in sys.path if p and os.path.isdir(p)] + [sysconfig.get_path("purelib")]
    (Path(site_dir) / "test-packages.pth").write_text("\n".join(map(os.path.abspath, ours)))
    # Registered only under the virtualenv's prefix, with a bare "python" as Jupyter's own.
    argv = ["python", "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    _write_spec(venv / "share" / "jupyter" / "kernels", "python3", argv)
    return python


def test_query_mode_uses_the_kernel_of_the_runtime_prefix(
    start_kernel: StartKernel, tmp_path: Path
) -> None:
    python = _virtualenv_with_ipykernel(tmp_path)
    assert str(python.parent.parent) != sys.prefix  # the runner runs on another interpreter
    empty = tmp_path / "empty-jupyter-path"
    empty.mkdir()
    # No kernelspec in JUPYTER_PATH (the harness puts one there) nor in the user data dir.
    kernel = start_kernel("python", str(python), env={"JUPYTER_PATH": str(empty)})
    first = kernel.agent.query("import sys\nanswer = 41\nprint(sys.executable)")
    assert (first.stdout, first.exit_code()) == (f"{python}\n", 0)
    second = kernel.agent.query("print(answer + 1)")
    assert (second.stdout, second.exit_code()) == ("42\n", 0)


def test_missing_kernel_is_reported_with_the_search(
    start_kernel: StartKernel, tmp_path: Path
) -> None:
    if any(name.startswith("julia") for name in list_kernelspecs(SYSTEM_KERNEL_DIRS)):
        pytest.skip("a Julia kernelspec is installed system-wide here")
    jupyter_path = tmp_path / "jp"
    _write_spec(jupyter_path / "kernels", "python3", ["python3"])
    runtime = tmp_path / "julia" / "bin" / "julia"
    kernel = start_kernel("julia", str(runtime), env={"JUPYTER_PATH": str(jupyter_path)})
    result = kernel.agent.query("1 + 1")
    assert result.exit_code() == 127
    found = re.search(
        r"no Jupyter kernelspec named julia\* \(kernels found: ([^)]*)\)", result.stderr
    )
    assert found is not None and "python3" in found.group(1).split(", ")
    for directory in (jupyter_path / "kernels", tmp_path / "julia" / "share/jupyter/kernels"):
        assert f"\n  {directory}\n" in result.stderr
    assert kernel.agent.batch(exec="echo batch").stdout == "batch\n"  # batch mode still works
