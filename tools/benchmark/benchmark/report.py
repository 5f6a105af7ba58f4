"""The benchmark's report: tables comparing the runners (round trips, services) and baselines."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from .baselines import Baselines
from .client import StreamResult
from .config import Config
from .measure import RunnerResults, StatusRounds
from .service_load import ServiceResults
from .tables import MB, fmt, render_table
from .upstream import UPSTREAM_VERSION


@dataclass
class Row:
    metric: str
    upstream: float | None
    new: float | None
    unit: str  # "ms", "s", "MB/s", "MB"


def ratio(new: float | None, upstream: float | None) -> str:
    if new is None or upstream is None or upstream == 0:
        return "n/a"
    return f"{new / upstream:.2f}"


def throughput(result: StreamResult | None) -> float | None:
    return None if result is None else result.raw_bytes / result.seconds


@dataclass
class Measured:
    """Everything one run measured, but the services."""

    upstream: RunnerResults
    new: RunnerResults
    floor: RunnerResults  # the bare runner of floor.py
    status: StatusRounds
    base: Baselines


def build_rows(m: Measured) -> list[Row]:
    up, new = m.upstream, m.new
    return [
        Row("status round trip (median of rounds)", m.status.upstream_median,
            m.status.new_median, "ms"),
        Row("query `pass` round trip (median)", up.query_rtt, new.query_rtt, "ms"),
        Row("batch exec `true` round trip (median)", up.batch_rtt, new.batch_rtt, "ms"),
        Row("stdout 64 MiB via agent decoding", throughput(up.stream), throughput(new.stream),
            "MB/s"),
        Row("process start -> first status (median)", up.first_status_median,
            new.first_status_median, "s"),
        Row("idle RSS, runner process", up.rss_idle, new.rss_idle, "MB"),
        Row("RSS after warm-up, runner process", up.rss_warm, new.rss_warm, "MB"),
        Row("RSS after warm-up, runner + children", up.rss_warm_tree, new.rss_warm_tree, "MB"),
        Row("RSS, runner, after 64 MiB stream", up.rss_after_stream,
            new.rss_after_stream, "MB"),
    ]  # fmt: skip


@dataclass
class Aim:
    """One aim: this runner's figure against its limit (``at_most``: smaller is better)."""

    metric: str
    value: float | None
    limit: float | None
    unit: str
    rule: str  # how the limit is made, e.g. "0.8 x upstream (0.15 ms)"
    floor: float | None  # the bare runner's figure (floor.py), None where it has none
    at_most: bool = True

    def _within(self, value: float | None) -> bool | None:
        if value is None or self.limit is None:
            return None
        return value <= self.limit if self.at_most else value >= self.limit

    @property
    def verdict(self) -> str:
        met = self._within(self.value)
        if met is None:
            return "n/a"
        if met:
            return "PASS"
        # A limit that even the bare runner misses cannot be met on this machine.
        return "MISS (floor misses too)" if self._within(self.floor) is False else "MISS"


def scaled(factor: float, value: float | None) -> float | None:
    return None if value is None else factor * value


def build_aims(m: Measured) -> list[Aim]:
    new, floor, base, up_status = m.new, m.floor, m.base, m.status.upstream_median
    stream = throughput(new.stream)
    return [
        Aim("status round trip", m.status.new_median, scaled(0.8, up_status), "ms",
            f"<= 0.8 x upstream ({fmt(up_status, 'ms')}, same rounds)", m.status.floor_median),
        Aim("query `pass` round trip", new.query_rtt, scaled(1.1, base.jupyter_rtt), "ms",
            f"<= 1.1 x bare jupyter_client ({fmt(base.jupyter_rtt, 'ms')})", None),
        Aim("batch exec `true`", new.batch_rtt, scaled(1.5, base.spawn), "ms",
            f"<= 1.5 x bare `sh -c true` spawn ({fmt(base.spawn, 'ms')})", floor.batch_rtt),
        Aim("stdout 64 MiB via agent decoding", stream, scaled(0.85, base.pipe), "MB/s",
            f">= 0.85 x plain pipe ({fmt(base.pipe, 'MB/s')})", throughput(floor.stream),
            at_most=False),
        Aim("process start -> first status", new.first_status_median, 0.08, "s", "<= 0.08 s",
            floor.first_status_median),
        Aim("idle RSS, runner process", new.rss_idle, 30 * MB, "MB", "<= 30 MB",
            floor.rss_idle),
    ]  # fmt: skip


def aims_table(aims: Sequence[Aim]) -> str:
    headers = ["aim", "this runner", "limit", "floor", "verdict", "rule"]
    cells = [
        [a.metric, fmt(a.value, a.unit), fmt(a.limit, a.unit), fmt(a.floor, a.unit), a.verdict,
         a.rule]
        for a in aims
    ]  # fmt: skip
    return render_table(headers, cells, text_columns=3)


def service_rows(up: ServiceResults, new: ServiceResults) -> list[Row]:
    return [
        Row("start-service -> started (median)", up.start_median, new.start_median, "ms"),
        Row("  of which after the port opened", up.after_open_median, new.after_open_median,
            "ms"),
        Row("worst status round trip, 5 starting", up.worst_status_rtt, new.worst_status_rtt,
            "ms"),
    ]  # fmt: skip


def comparison_table(rows: Sequence[Row]) -> str:
    headers = ["metric", f"upstream {UPSTREAM_VERSION}", "this runner", "new/upstream"]
    cells = [
        [r.metric, fmt(r.upstream, r.unit), fmt(r.new, r.unit), ratio(r.new, r.upstream)]
        for r in rows
    ]
    return render_table(headers, cells)


def baseline_table(base: Baselines) -> str:
    rows = [
        ["bare jupyter_client execute `pass` (median, in turns)", fmt(base.jupyter_rtt, "ms")],
        ["bare `sh -c true` spawn (median, in turns with batch runs)", fmt(base.spawn, "ms")],
        ["plain pipe, 64 MiB (median, each after a stream)", fmt(base.pipe, "MB/s")],
    ]
    return render_table(["baseline", "value"], rows)


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def print_errors(label: str, errors: Sequence[str]) -> None:
    for error in errors:
        print(f"  ! {label}: {error}")


def report(cfg: Config, m: Measured, services: tuple[ServiceResults, ServiceResults]) -> None:
    print()
    print(
        f"iterations: {cfg.iterations} per round trip; status: {cfg.status_rounds} rounds in "
        f"turns; stream runs: {cfg.stream_runs}; starts: {cfg.starts} after an untimed "
        f"priming start; CPUs: {os.cpu_count()}; load average: {load_average()}"
    )
    print(comparison_table(build_rows(m)))
    print()
    print(comparison_table(service_rows(*services)))
    print()
    print(baseline_table(m.base))
    print("(ratio < 1 is better for times and memory, > 1 for throughput)")
    print()
    print(aims_table(build_aims(m)))
    print(
        "(floor: a bare synchronous runner on pyzmq, measured alike in this run (floor.py);"
        " no runner can beat it, so a limit beyond it cannot be met on this machine)"
    )
    print_errors("upstream", m.upstream.errors)
    print_errors("this runner", m.new.errors)
    print_errors("floor", m.floor.errors)
    print_errors("status rounds", m.status.errors)
    print_errors("baseline", m.base.errors)
    print_errors("services, upstream", services[0].errors)
    print_errors("services, this runner", services[1].errors)
