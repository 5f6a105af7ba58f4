"""Measuring the runners: start-up, round trips, the 64 MiB stream and memory, and the
`status` round trip of both runners in turns."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from statistics import median

from ai.backend.kernel.agent_client import RunnerExited, RunnerTimeout
from tests.support.processes import RunnerCommand, rss_bytes, tree_rss_bytes

from .baselines import JupyterBaseline, pipe_once, spawn_samples
from .client import (
    StreamResult,
    batch_round_trip,
    query_round_trip,
    repeat,
    status_round_trip,
    stream_throughput,
)
from .config import START_TIMEOUT, BenchError, Config, median_or_none, progress
from .runners import RunningRunner, running

INTERLEAVE_BLOCK = 20  # query samples per turn, runner and bare jupyter_client alternating


@dataclass
class RunnerResults:
    first_status: list[float] = field(default_factory=list)
    query_rtt: float | None = None
    batch_rtt: float | None = None
    stream: StreamResult | None = None
    rss_idle: int | None = None  # 1 s after the first status, nothing asked yet
    rss_warm: int | None = None  # after the warm-up (query mode loaded)
    rss_warm_tree: int | None = None
    rss_after_stream: int | None = None
    # Baselines sampled in turns with this runner's samples: bare jupyter_client with the
    # queries, `sh -c true` with the batch runs, the plain pipe with the streams.
    paired_jupyter_rtt: float | None = None
    paired_spawn: float | None = None
    paired_pipe: float | None = None  # bytes per second
    errors: list[str] = field(default_factory=list)

    @property
    def first_status_median(self) -> float | None:
        return median_or_none(self.first_status)


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


def warm_up(runner: RunningRunner, query: bool = True) -> None:
    """The first query may wait for the Jupyter kernel; then a few of each kind (no queries
    for the floor, which has no query mode)."""
    if query:
        query_round_trip(runner.client)
    for _ in range(5):
        status_round_trip(runner.client)
        if query:
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

    def queries(count: int) -> list[float]:
        return repeat(lambda: query_round_trip(client), count)

    def query() -> None:
        if paired is None:
            results.query_rtt = median(queries(iterations))
            return
        mine, theirs = interleaved(queries, paired.samples, iterations)
        results.query_rtt, results.paired_jupyter_rtt = median(mine), median(theirs)

    attempt(results, "query", query)
    measure_batch(runner, iterations, results, paired=paired is not None)


def measure_batch(
    runner: RunningRunner, iterations: int, results: RunnerResults, paired: bool = False
) -> None:
    """Batch round trips, in turns with bare spawns if ``paired``."""

    def batches(count: int) -> list[float]:
        return repeat(lambda: batch_round_trip(runner.client), count)

    def batch() -> None:
        if not paired:
            results.batch_rtt = median(batches(iterations))
            return
        mine, spawns = interleaved(batches, spawn_samples, iterations)
        results.batch_rtt, results.paired_spawn = median(mine), median(spawns)

    attempt(results, "batch", batch)


def measure_idle_rss(runner: RunningRunner, results: RunnerResults) -> None:
    """Before anything is asked: what every session pays, whatever it runs."""
    time.sleep(1.0)
    results.rss_idle = rss_bytes(runner.process.proc.pid)


def measure_warm_rss(runner: RunningRunner, results: RunnerResults) -> None:
    time.sleep(1.0)
    results.rss_warm = rss_bytes(runner.process.proc.pid)
    results.rss_warm_tree = tree_rss_bytes(runner.process.proc.pid)


def measure_stream(
    runner: RunningRunner, runs: int, results: RunnerResults, paired: bool = False
) -> None:
    """The 64 MiB streams (median run), each followed by a plain pipe's if ``paired``."""

    def stream() -> None:
        samples, pipes = [], []
        for _ in range(runs):
            samples.append(stream_throughput(runner.client))
            if paired:
                pipes.append(pipe_once())
        results.stream = sorted(samples, key=lambda s: s.seconds)[len(samples) // 2]
        results.paired_pipe = median_or_none(pipes)
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
    measure_idle_rss(runner, results)
    try:
        warm_up(runner)
    except BenchError as exc:
        results.errors.append(f"warm-up: {exc}; log: {runner.log_tail()}")
        return
    measure_warm_rss(runner, results)
    measure_round_trips(runner, cfg, results, paired)
    measure_stream(runner, cfg.stream_runs, results, paired=paired is not None)


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
    """With ``paired`` (this repository's runner), the baselines are sampled in turns with its
    own samples: bare jupyter_client with queries, spawns with batch runs, pipes with streams."""
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


def bench_floor(command: RunnerCommand, cfg: Config) -> RunnerResults:
    """The bare runner (floor.py), measured as the runners are, but for queries: it has no
    query mode. Its python has run the runner already, so pyzmq's bytecode is compiled."""
    results = RunnerResults()
    progress(f"floor: {cfg.starts} starts, batch round trips, stream, memory")
    try:
        for index in range(cfg.starts):
            with running(command, cfg.log_dir) as runner:
                if measure_start(runner, results) and index == cfg.starts - 1:
                    measure_idle_rss(runner, results)
                    attempt(results, "warm-up", lambda: warm_up(runner, query=False))
                    measure_batch(runner, cfg.iterations, results)
                    measure_stream(runner, cfg.stream_runs, results)
    except BenchError as exc:
        results.errors.append(str(exc))
    return results


@dataclass
class StatusRounds:
    """`status` round trips of both runners, running side by side and timed in turns: per
    round, the median of each runner's block of samples."""

    new: list[float] = field(default_factory=list)
    upstream: list[float] = field(default_factory=list)
    floor: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def new_median(self) -> float | None:
        return median_or_none(self.new)

    @property
    def upstream_median(self) -> float | None:
        return median_or_none(self.upstream)

    @property
    def floor_median(self) -> float | None:
        return median_or_none(self.floor)


def status_block(runner: RunningRunner, count: int) -> float:
    return median(repeat(lambda: status_round_trip(runner.client), count))


def take_status_rounds(
    runners: dict[str, RunningRunner], cfg: Config, rounds: dict[str, list[float]]
) -> None:
    """Each round times every runner once; who goes first alternates between rounds."""
    labels = list(runners)
    for index in range(cfg.status_rounds):
        for label in labels if index % 2 == 0 else labels[::-1]:
            rounds[label].append(status_block(runners[label], cfg.iterations))


def bench_status_rounds(
    new_command: RunnerCommand,
    upstream_command: RunnerCommand | None,
    floor_command: RunnerCommand,
    cfg: Config,
) -> StatusRounds:
    results = StatusRounds()
    commands = {"new": new_command, "floor": floor_command}
    if upstream_command is not None:
        commands["upstream"] = upstream_command
    progress(f"status round trips in turns: {cfg.status_rounds} rounds of {cfg.iterations}")
    try:
        with ExitStack() as stack:
            runners = {k: stack.enter_context(running(c, cfg.log_dir)) for k, c in commands.items()}
            for label, runner in runners.items():  # all idle, Jupyter kernels up
                first_status(runner)
                warm_up(runner, query=label != "floor")
            rounds = {"new": results.new, "upstream": results.upstream, "floor": results.floor}
            take_status_rounds(runners, cfg, rounds)
    except BenchError as exc:
        results.errors.append(f"status rounds: {exc}")
    return results
