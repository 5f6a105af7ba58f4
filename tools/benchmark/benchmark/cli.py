"""The command line: ``./pants run tools/benchmark:bench [-- --skip-upstream ...]``."""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import benchmark
from tests.support.processes import RunnerCommand

from .baselines import jupyter_baseline, measure_baselines
from .config import Config, progress
from .floor import floor_command
from .measure import RunnerResults, bench_floor, bench_runner, bench_status_rounds
from .report import Measured, report
from .runners import describe_new_runner, new_runner_command
from .services import bench_services
from .upstream import ensure_upstream, prepare_upstream_dirs, upstream_command


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    description = (benchmark.__doc__ or "").splitlines()[0]
    parser = argparse.ArgumentParser(prog="bench", description=description)
    parser.add_argument("--skip-upstream", action="store_true", help="measure only this runner")
    parser.add_argument(
        "--iterations", type=int, default=200, help="samples per round trip (default: %(default)s)"
    )
    parser.add_argument(
        "--status-rounds",
        type=int,
        default=9,
        help="rounds of `status` round trips, the two runners in turns (default: %(default)s)",
    )
    parser.add_argument(
        "--stream-runs", type=int, default=3, help="64 MiB runs per runner (default: %(default)s)"
    )
    parser.add_argument(
        "--starts",
        type=int,
        default=3,
        help="timed process starts per runner (default: %(default)s)",
    )
    parser.add_argument(
        "--new-python",
        default=None,
        help="python that runs this repository's runner (default: this one, with this "
        "process's import path)",
    )
    parser.add_argument(
        "--base-python",
        default=None,
        help="python 3.12 used to create the upstream virtualenv (default: this one)",
    )
    return parser.parse_args(argv)


def make_config(args: argparse.Namespace, log_dir: Path) -> Config:
    return Config(
        iterations=max(1, args.iterations),
        status_rounds=max(1, args.status_rounds),
        stream_runs=max(1, args.stream_runs),
        starts=max(1, args.starts),
        skip_upstream=args.skip_upstream,
        new_python=args.new_python or sys.executable,
        new_python_explicit=args.new_python is not None,
        base_python=args.base_python or getattr(sys, "_base_executable", sys.executable),
        log_dir=log_dir,
    )


def find_upstream(cfg: Config) -> tuple[RunnerCommand | None, str]:
    """Upstream's command, or None and why it is not measured."""
    if cfg.skip_upstream:
        return None, "skipped (--skip-upstream)"
    python = ensure_upstream(cfg)
    if python is None or not prepare_upstream_dirs():
        return None, "not measured: see the notice above"
    return upstream_command(python), ""


def bench_upstream(command: RunnerCommand | None, why_not: str, cfg: Config) -> RunnerResults:
    if command is None:
        return RunnerResults(errors=[why_not])
    return bench_runner(command, cfg)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bai-kernel-bench-") as tmp:
        cfg = make_config(args, Path(tmp))
        new_command = new_runner_command(cfg)
        print(f"this runner: {cfg.new_python} -m ai.backend.kernel "
              f"({describe_new_runner(new_command)})", flush=True)  # fmt: skip
        up_command, why_not = find_upstream(cfg)
        upstream = bench_upstream(up_command, why_not, cfg)
        progress("starting a bare jupyter_client kernel for the query baseline")
        with jupyter_baseline(cfg, new_command.env) as paired:
            new = bench_runner(new_command, cfg, paired)
        floor_cmd = floor_command(cfg.new_python, new_command.env, cfg.log_dir / "floor")
        floor = bench_floor(floor_cmd, cfg)
        status = bench_status_rounds(new_command, up_command, floor_cmd, cfg)
        baselines = measure_baselines(cfg, new)
        services = bench_services(cfg)
        report(cfg, Measured(upstream, new, floor, status, baselines), services)
    return 0
