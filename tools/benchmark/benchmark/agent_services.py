# mypy: disable-error-code="no-untyped-call"
"""The services table through one agent generation's own code: the runner from its wheel,
driven by that agent's kernel and code-runner classes as tests/agent's harness adapts them.

Run in the resolve of the agent to measure (``tools/benchmark/agent-services`` runs 24.3.11's
and 25.5.2's one after the other)::

    ./pants run tools/benchmark/benchmark:agent-services-agent-25_5 -- --wheel WHEEL \\
        --results-dir DIR

Each run keeps its agent's figures in DIR and prints a table with one column per agent found
there, so the last of several runs into one DIR compares them side by side.

- "start-service -> started": ``kernel.start_service`` of a program that listens at once, until
  it returns ``started``; "after the port opened" is the part of it after the program's
  ``listen()`` returned.
- "worst status RTT, 5 starting": five services that listen after 0.5 s are started at once
  and ``kernel.check_status`` is called every 10 ms until all five answered; the slowest call.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# backend.ai-agent's dependency graypy installs a top-level `tests` package, which would hide
# this repository's tests/ (pytest puts the root first; a plain run does not).
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from benchmark.config import BenchError, progress  # noqa: E402
from benchmark.service_load import (  # noqa: E402
    QUICK,
    SLOW,
    ServiceResults,
    time_quick_starts,
    write_definitions,
)
from benchmark.tables import fmt, render_table  # noqa: E402
from tests.agent.harness import (  # noqa: E402
    AGENT_VERSION,
    AgentSession,
    open_session,
    runner_command_for,
    wheel_runner,
)
from tests.support.processes import free_ports  # noqa: E402


def measure_quick_start(session: AgentSession, stamp_dir: Path, out: ServiceResults) -> None:
    kernel = session.kernel

    def start(port: int) -> dict[str, Any]:
        session.set_service_ports({QUICK: port})  # where the agent looks the port up
        return session.run(kernel.start_service(QUICK, {}))

    def stop() -> None:
        session.run(kernel.shutdown_service(QUICK))

    time_quick_starts(start, stop, stamp_dir, out)


async def worst_status_while_starting(session: AgentSession) -> float:
    kernel = session.kernel
    starts = [asyncio.create_task(kernel.start_service(name, {})) for name in SLOW]
    worst = 0.0
    while not all(start.done() for start in starts):
        sent = time.perf_counter()
        await kernel.check_status()
        worst = max(worst, time.perf_counter() - sent)
        await asyncio.sleep(0.01)
    if failed := [s.result() for s in starts if s.result().get("status") != "started"]:
        raise BenchError(f"slow services: {failed}")
    for name in SLOW:
        await kernel.shutdown_service(name)
    return worst


def measure(wheel: Path, tmp: Path) -> ServiceResults:
    progress(f"agent {AGENT_VERSION}: services")
    stamp_dir, defs = tmp / "stamps", tmp / "service-defs"
    stamp_dir.mkdir()
    write_definitions(defs, stamp_dir)
    choice = wheel_runner(wheel, tmp / "venv")
    command = runner_command_for(choice, tmp, "--service-def-dir", str(defs))
    loop = asyncio.new_event_loop()
    session = open_session(loop, command, tmp)
    out = ServiceResults()
    try:
        measure_quick_start(session, stamp_dir, out)
        session.set_service_ports(dict(zip(SLOW, free_ports(len(SLOW)), strict=True)))
        out.worst_status_rtt = session.run(worst_status_while_starting(session), timeout=60)
    except BenchError as exc:
        out.errors.append(f"{exc}; log: {session.runner.log_tail()}")
    finally:
        session.stop()
        loop.close()
    return out


ROWS = [
    ("start-service -> started (median)", "start_median"),
    ("  of which after the port opened", "after_open_median"),
    ("worst status round trip, 5 starting", "worst_status_rtt"),
]


def save(results: ServiceResults, directory: Path) -> None:
    """This agent's figures, for the table of every agent measured into ``directory``."""
    figures = {attr: getattr(results, attr) for _, attr in ROWS} | {"errors": results.errors}
    partial = directory / f".{AGENT_VERSION}.json.partial"
    partial.write_text(json.dumps(figures))
    partial.replace(directory / f"{AGENT_VERSION}.json")


def table(directory: Path) -> str:
    """One column per agent measured into ``directory``, oldest first."""
    saved = {p.stem: json.loads(p.read_text()) for p in directory.glob("*.json")}
    agents = sorted(saved, key=lambda v: [int(n) if n.isdigit() else -1 for n in v.split(".")])
    headers = ["services", *(f"through agent {agent}" for agent in agents)]
    rows = [[label, *(fmt(saved[a][attr], "ms") for a in agents)] for label, attr in ROWS]
    errors = [f"  ! agent {a}: {error}" for a in agents for error in saved[a]["errors"]]
    return "\n".join([render_table(headers, rows), *errors])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="agent-services", description=__doc__)
    parser.add_argument("--wheel", type=Path, required=True, help="backend_ai_kernel-*.whl")
    parser.add_argument(
        "--results-dir",
        type=Path,
        required=True,
        help="where each agent's figures are kept; the table shows every agent found there",
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bai-kernel-agent-bench-") as tmp:
        results = measure(args.wheel.resolve(), Path(tmp))
    save(results, args.results_dir)
    print(table(args.results_dir))
    return 1 if results.errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
