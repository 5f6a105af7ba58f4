"""The runner's command line: ``python -s -m ai.backend.kernel [--debug] RUNTIME_TYPE [PATH]``."""

from __future__ import annotations

import sys


def _import_asyncio_without_tls() -> None:
    """asyncio imports ssl only to offer TLS, which the runner never uses, and ssl's libraries
    cost every session ~4 MB of memory. Later imports of ssl (e.g. by boto3 for
    vendor.aws_polly) load it as usual; only asyncio's own TLS support stays off."""
    if "ssl" in sys.modules or "asyncio" in sys.modules:
        return
    sys.modules["ssl"] = None  # type: ignore[assignment]  # makes `import ssl` fail
    try:
        import asyncio  # noqa: F401
    finally:
        del sys.modules["ssl"]


_import_asyncio_without_tls()

import argparse  # noqa: E402
import asyncio  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import signal  # noqa: E402
from pathlib import Path  # noqa: E402

from .languages import LANGUAGES  # noqa: E402
from .server import IMAGE_SERVICE_DEFS, Runner, RunnerConfig  # noqa: E402
from .services.host import START_TIMEOUT  # noqa: E402
from .services.intrinsic import AGENT_BIN, SSHD_PORT, TTYD_PORT  # noqa: E402

log = logging.getLogger("ai.backend.kernel")

DEFAULT_PORTS = {"replin": 2000, "replout": 2001, "sshd": SSHD_PORT, "ttyd": TTYD_PORT}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m ai.backend.kernel", description=__doc__)
    parser.add_argument("--debug", action="store_true", help="log at DEBUG level")
    parser.add_argument("runtime_type", choices=sorted(LANGUAGES), metavar="RUNTIME_TYPE")
    parser.add_argument("runtime_path", nargs="?", help="interpreter or compiler to use")
    parser.add_argument("--bind", default="*", help="address to bind (default: all interfaces)")
    parser.add_argument("--repl-in-port", type=int, help="ops port (default: 2000)")
    parser.add_argument("--repl-out-port", type=int, help="records port (default: 2001)")
    parser.add_argument("--work-dir", type=Path, default=Path("/home/work"))
    parser.add_argument("--config-dir", type=Path, default=Path("/home/config"))
    parser.add_argument("--service-def-dir", type=Path, default=IMAGE_SERVICE_DEFS)
    parser.add_argument(
        "--input-socket",
        type=Path,
        default=Path("/tmp/bai-user-input.sock"),
        help="user-input relay socket (a private one is used if another runner holds it)",
    )
    parser.add_argument(
        "--interrupt-grace",
        type=float,
        default=2.0,
        help="seconds between an interrupt's SIGINT and SIGKILL (default: 2)",
    )
    parser.add_argument(
        "--service-start-timeout",
        type=float,
        default=START_TIMEOUT,
        help="seconds a service may take to open its port, unless its definition says"
        f" otherwise (default: {START_TIMEOUT:g})",
    )
    parser.add_argument(
        "--agent-bin-dir",
        type=Path,
        default=AGENT_BIN,
        help=f"where the agent mounts dropbear(multi) and tmux (default: {AGENT_BIN})",
    )
    # Options may come after RUNTIME_TYPE too, and before or after RUNTIME_PATH.
    return parser.parse_intermixed_args(argv)


def intrinsic_ports(config_dir: Path) -> dict[str, int]:
    """Ports the agent assigns in host-network mode, else the defaults."""
    try:
        data = json.loads((config_dir / "intrinsic-ports.json").read_text())
        return {key: int(data.get(key, port)) for key, port in DEFAULT_PORTS.items()}
    except FileNotFoundError:
        return dict(DEFAULT_PORTS)
    except (OSError, ValueError, TypeError, AttributeError) as e:
        log.warning("ignoring a bad intrinsic-ports.json: %s", e)
        return dict(DEFAULT_PORTS)


def make_config(args: argparse.Namespace) -> RunnerConfig:
    ports = intrinsic_ports(args.config_dir)
    return RunnerConfig(
        lang=LANGUAGES[args.runtime_type],
        runtime_path=args.runtime_path,
        bind=args.bind,
        repl_in_port=args.repl_in_port or ports["replin"],
        repl_out_port=args.repl_out_port or ports["replout"],
        work_dir=args.work_dir.absolute(),
        config_dir=args.config_dir.absolute(),
        service_def_dir=args.service_def_dir,
        input_socket=args.input_socket,
        interrupt_grace=args.interrupt_grace,
        service_start_timeout=args.service_start_timeout,
        sshd_port=ports["sshd"],
        ttyd_port=ports["ttyd"],
        agent_bin_dir=args.agent_bin_dir,
    )


async def serve(config: RunnerConfig) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    runner = Runner(config)
    try:
        await runner.start()
        await stop.wait()
        log.info("stopping")
    finally:
        await runner.close()


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO,
        format=f"{args.runtime_type}-kernel: %(levelname)s %(name)s: %(message)s",
    )
    asyncio.run(serve(make_config(args)))


if __name__ == "__main__":
    main()
