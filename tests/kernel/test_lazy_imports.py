"""What a runner imports: query mode's Jupyter machinery and model services only when used,
and never asyncio's TLS support.

Every container runs one runner, so whatever it imports at boot is memory every session pays
for. The runner's imports are read from its own log (``PYTHONPROFILEIMPORTTIME``).
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from ai.backend.kernel.agent_client import AgentClient
from tests.support.processes import RunnerProcess, local_runner_command, start_runner

START_TIMEOUT = 60.0
IMPORT_LINE = re.compile(r"^import time:\s+\d+ \|\s+\d+ \|\s+(\S+)$", re.MULTILINE)
QUERY_ONLY = {"jupyter_client", "ai.backend.kernel.jupyter", "ai.backend.kernel.kernelspecs"}
MODEL_ONLY = {"ai.backend.kernel.services.model", "ai.backend.kernel.services.health"}
TLS = {"_ssl"}  # asyncio's optional TLS support: ~4 MB of libraries the runner never uses


def runner_env(tmp_path: Path) -> dict[str, str]:
    """This test's import path, import timing on, and a python3 kernelspec for query mode."""
    spec_dir = tmp_path / "jupyter" / "kernels" / "python3"
    spec_dir.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec_dir / "kernel.json").write_text(json.dumps({"argv": argv, "language": "python"}))
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(os.path.abspath(p) for p in sys.path if p),
        "PYTHONPROFILEIMPORTTIME": "1",
        "JUPYTER_PATH": str(tmp_path / "jupyter"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "jupyter-runtime"),
    }


def imports_while(tmp_path: Path, drive: Callable[[AgentClient], None]) -> set[str]:
    """The modules a python runner imported from its start until ``drive`` returned."""
    command = local_runner_command(
        sys.executable, tmp_path, runner_env(tmp_path), "python", sys.executable
    )
    client = AgentClient(command.in_port, command.out_port, timeout=30)
    runner: RunnerProcess = start_runner(command, tmp_path)
    try:
        client.first_status(START_TIMEOUT)
        drive(client)
        log = runner.log.read_text(errors="replace")
    finally:
        client.close()
        runner.stop()
    return set(IMPORT_LINE.findall(log))


def run_batch(client: AgentClient) -> None:
    assert client.batch(build="true", exec="echo batch").stdout == "batch\n"
    client.status()


def test_batch_mode_loads_neither_jupyter_nor_model_services(tmp_path: Path) -> None:
    imported = imports_while(tmp_path, run_batch)
    assert "ai.backend.kernel.batch" in imported  # the log does list the runner's imports
    never = QUERY_ONLY | MODEL_ONLY | TLS
    assert imported.isdisjoint(never), imported & never


def test_the_first_query_starts_the_jupyter_kernel(tmp_path: Path) -> None:
    pytest.importorskip("ipykernel")

    def query(client: AgentClient) -> None:
        result = client.query("print(6 * 7)")
        assert (result.stdout, result.exit_code()) == ("42\n", 0)

    imported = imports_while(tmp_path, query)
    assert QUERY_ONLY <= imported
    assert imported.isdisjoint(MODEL_ONLY)
