"""The benchmark's report: tables comparing the runners (round trips, services) and baselines."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from .baselines import Baselines
from .client import StreamResult
from .config import Config
from .measure import RunnerResults
from .service_load import ServiceResults
from .tables import fmt, render_table
from .upstream import UPSTREAM_VERSION


@dataclass
class Row:
    metric: str
    upstream: float | None
    new: float | None
    unit: str  # "ms", "s", "MB/s", "MB"
    aim: str = ""


def ratio(new: float | None, upstream: float | None) -> str:
    if new is None or upstream is None or upstream == 0:
        return "n/a"
    return f"{new / upstream:.2f}"


def throughput(result: StreamResult | None) -> float | None:
    return None if result is None else result.raw_bytes / result.seconds


def query_aim(base: Baselines) -> str:
    if base.jupyter_rtt is None:
        return "<= 1.10 x jupyter_client"
    return f"<= {base.jupyter_rtt * 1.1 * 1000:.2f} ms (1.1 x jupyter_client)"


def build_rows(up: RunnerResults, new: RunnerResults, base: Baselines) -> list[Row]:
    rss_aim = f"< upstream ({fmt(up.rss_idle, 'MB')})" if up.rss_idle else "< upstream"
    return [
        Row("status round trip (median)", up.status_rtt, new.status_rtt, "ms"),
        Row("query `pass` round trip (median)", up.query_rtt, new.query_rtt, "ms", query_aim(base)),
        Row("batch exec `true` round trip (median)", up.batch_rtt, new.batch_rtt, "ms", "<= 5 ms"),
        Row("stdout 64 MiB via agent decoding", throughput(up.stream), throughput(new.stream),
            "MB/s", ">= 150 MB/s"),
        Row("process start -> first status (median)", up.first_status_median,
            new.first_status_median, "s", "<= 0.3 s"),
        Row("idle RSS, runner process", up.rss_idle, new.rss_idle, "MB", rss_aim),
        Row("idle RSS, runner + children", up.rss_idle_tree, new.rss_idle_tree, "MB"),
        Row("RSS, runner, after 64 MiB stream", up.rss_after_stream,
            new.rss_after_stream, "MB"),
    ]  # fmt: skip


def service_rows(up: ServiceResults, new: ServiceResults) -> list[Row]:
    return [
        Row("start-service -> started (median)", up.start_median, new.start_median, "ms"),
        Row("  of which after the port opened", up.after_open_median, new.after_open_median,
            "ms"),
        Row("worst status round trip, 5 starting", up.worst_status_rtt, new.worst_status_rtt,
            "ms"),
    ]  # fmt: skip


def comparison_table(rows: Sequence[Row]) -> str:
    headers = ["metric", f"upstream {UPSTREAM_VERSION}", "this runner", "new/upstream", "aim"]
    cells = [
        [r.metric, fmt(r.upstream, r.unit), fmt(r.new, r.unit), ratio(r.new, r.upstream), r.aim]
        for r in rows
    ]
    return render_table(headers, cells)


def baseline_table(base: Baselines) -> str:
    rows = [
        ["bare jupyter_client execute `pass` (median, in turns)", fmt(base.jupyter_rtt, "ms")],
        ["bare `sh -c true` spawn (median)", fmt(base.spawn, "ms")],
        ["plain pipe, 64 MiB (median)", fmt(base.pipe, "MB/s")],
    ]
    return render_table(["baseline", "value"], rows)


def print_errors(label: str, errors: Sequence[str]) -> None:
    for error in errors:
        print(f"  ! {label}: {error}")


def report(
    cfg: Config,
    up: RunnerResults,
    new: RunnerResults,
    base: Baselines,
    services: tuple[ServiceResults, ServiceResults],
) -> None:
    print()
    print(
        f"iterations: {cfg.iterations} per round trip; stream runs: {cfg.stream_runs}; "
        f"starts: {cfg.starts} after an untimed priming start; CPUs: {os.cpu_count()}"
    )
    print(comparison_table(build_rows(up, new, base)))
    print()
    print(comparison_table(service_rows(*services)))
    print()
    print(baseline_table(base))
    print("(ratio < 1 is better for times and memory, > 1 for throughput)")
    print_errors("upstream", up.errors)
    print_errors("this runner", new.errors)
    print_errors("baseline", base.errors)
    print_errors("services, upstream", services[0].errors)
    print_errors("services, this runner", services[1].errors)
