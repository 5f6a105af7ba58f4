"""Measuring one runner: start-up, round trips, the 64 MiB stream and memory."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from statistics import median

from ai.backend.kernel.agent_client import RunnerExited, RunnerTimeout
from tests.support.processes import RunnerCommand, rss_bytes, tree_rss_bytes

from .baselines import JupyterBaseline
from .client import (
    StreamResult,
    batch_round_trip,
    query_round_trip,
    repeat,
    status_round_trip,
    stream_throughput,
)
from .config import START_TIMEOUT, BenchError, Config, progress
from .runners import RunningRunner, running

INTERLEAVE_BLOCK = 20  # query samples per turn, runner and bare jupyter_client alternating


@dataclass
class RunnerResults:
    first_status: list[float] = field(default_factory=list)
    status_rtt: float | None = None
    query_rtt: float | None = None
    batch_rtt: float | None = None
    stream: StreamResult | None = None
    rss_idle: int | None = None
    rss_idle_tree: int | None = None
    rss_after_stream: int | None = None
    paired_jupyter_rtt: float | None = None  # bare jupyter_client, interleaved with queries
    errors: list[str] = field(default_factory=list)

    @property
    def first_status_median(self) -> float | None:
        return median(self.first_status) if self.first_status else None


def first_status(runner: RunningRunner) -> float:
    """Seconds from process start to the first `status` reply (asked every 20 ms)."""
    try:
        reply = runner.client.first_status(START_TIMEOUT)
    except RunnerExited as exc:
        rc = runner.process.proc.poll()
        raise BenchError(f"the runner exited with {rc} before answering") from exc
    except RunnerTimeout as exc:
        raise BenchError(str(exc)) from exc
    runner.client.drain(0.05)
    return reply.answered_at - runner.process.started


def warm_up(runner: RunningRunner) -> None:
    """The first query may wait for the Jupyter kernel; then a few of each kind."""
    query_round_trip(runner.client)
    for _ in range(5):
        status_round_trip(runner.client)
        query_round_trip(runner.client)
        batch_round_trip(runner.client)
    runner.client.drain(0.3)


def attempt(results: RunnerResults, what: str, action: Callable[[], None]) -> None:
    try:
        action()
    except BenchError as exc:
        results.errors.append(f"{what}: {exc}")


def interleaved(
    ours: Callable[[int], list[float]], theirs: Callable[[int], list[float]], count: int
) -> tuple[list[float], list[float]]:
    """Samples of two measurements taken in alternating blocks."""
    mine: list[float] = []
    other: list[float] = []
    while len(mine) < count:
        block = min(INTERLEAVE_BLOCK, count - len(mine))
        mine.extend(ours(block))
        other.extend(theirs(block))
    return mine, other


def measure_round_trips(
    runner: RunningRunner, cfg: Config, results: RunnerResults, paired: JupyterBaseline | None
) -> None:
    client, iterations = runner.client, cfg.iterations

    def status() -> None:
        results.status_rtt = median(repeat(lambda: status_round_trip(client), iterations))

    def queries(count: int) -> list[float]:
        return repeat(lambda: query_round_trip(client), count)

    def query() -> None:
        if paired is None:
            results.query_rtt = median(queries(iterations))
            return
        mine, theirs = interleaved(queries, paired.samples, iterations)
        results.query_rtt, results.paired_jupyter_rtt = median(mine), median(theirs)

    def batch() -> None:
        results.batch_rtt = median(repeat(lambda: batch_round_trip(client), iterations))

    attempt(results, "status", status)
    attempt(results, "query", query)
    attempt(results, "batch", batch)


def measure_idle_rss(runner: RunningRunner, results: RunnerResults) -> None:
    time.sleep(1.0)
    results.rss_idle = rss_bytes(runner.process.proc.pid)
    results.rss_idle_tree = tree_rss_bytes(runner.process.proc.pid)


def measure_stream(runner: RunningRunner, runs: int, results: RunnerResults) -> None:
    def stream() -> None:
        samples = [stream_throughput(runner.client) for _ in range(runs)]
        results.stream = sorted(samples, key=lambda s: s.seconds)[len(samples) // 2]
        time.sleep(1.0)
        results.rss_after_stream = rss_bytes(runner.process.proc.pid)

    attempt(results, "stream", stream)


def measure_start(runner: RunningRunner, results: RunnerResults) -> bool:
    try:
        results.first_status.append(first_status(runner))
    except BenchError as exc:
        results.errors.append(f"start: {exc}; log: {runner.log_tail()}")
        return False
    return True


def measure_everything(
    runner: RunningRunner, cfg: Config, results: RunnerResults, paired: JupyterBaseline | None
) -> None:
    try:
        warm_up(runner)
    except BenchError as exc:
        results.errors.append(f"warm-up: {exc}; log: {runner.log_tail()}")
        return
    measure_idle_rss(runner, results)
    measure_round_trips(runner, cfg, results, paired)
    measure_stream(runner, cfg.stream_runs, results)


def prime(command: RunnerCommand, cfg: Config) -> None:
    """One untimed start with a query and a batch, so that both runners (and their Jupyter
    kernels) run from compiled bytecode, as an installed krunner environment does."""
    with running(command, cfg.log_dir) as runner:
        try:
            first_status(runner)
            warm_up(runner)
        except BenchError as exc:
            raise BenchError(f"priming: {exc}; log: {runner.log_tail()}") from exc


def bench_runner(
    command: RunnerCommand, cfg: Config, paired: JupyterBaseline | None = None
) -> RunnerResults:
    results = RunnerResults()
    try:
        progress(f"{command.label}: priming (untimed start)")
        prime(command, cfg)
        for index in range(cfg.starts):
            progress(f"{command.label}: start {index + 1}/{cfg.starts}")
            with running(command, cfg.log_dir) as runner:
                if measure_start(runner, results) and index == cfg.starts - 1:
                    progress(f"{command.label}: round trips, stream, memory")
                    measure_everything(runner, cfg, results, paired)
    except BenchError as exc:
        results.errors.append(str(exc))
    return results
