"""A developer client that talks to a runner the way the agent does.

    python -m ai.backend.kernel.client run 'print("hi")'
    python -m ai.backend.kernel.client batch --build '*' --exec '*'
    python -m ai.backend.kernel.client interactive
    python -m ai.backend.kernel.client start-service jupyter --port 8080

stdout/stderr records are written raw to the terminal's stdout/stderr, other records as one line
each; input prompts are answered from the terminal.  The exit status is the execution's.
"""

from __future__ import annotations

import getpass
import json
import signal
import sys
from collections.abc import Iterable
from types import FrameType
from typing import TextIO

# An optional extra (backend.ai-kernel[client]): containers run the runner without click.
import click  # pants: no-infer-dep

from .agent_client import BATCH_FINISHED, AgentClient
from .protocol import Op, Record, decode_exit


def show(record_type: str, payload: bytes) -> None:
    """Output raw to the terminal's stdout/stderr, any other record as one line."""
    if record_type in (Record.STDOUT, Record.STDERR):
        stream = sys.stdout if record_type == Record.STDOUT else sys.stderr
        stream.buffer.write(payload)
        stream.flush()
    elif record_type != Record.WAITING_INPUT:
        click.echo(f"[{record_type}] {payload.decode(errors='replace')}")


def read_answer(is_password: bool) -> str:
    return getpass.getpass("") if is_password else input()


def follow(client: AgentClient, *until: str) -> int:
    """Show records until each type in ``until`` arrived once; the last one's exit code.
    The first Ctrl-C sends an interrupt to the runner, the second quits."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        client.send(Op.INTERRUPT)
        click.echo("\n[interrupt sent; press Ctrl-C again to quit]", err=True)

    previous = signal.signal(signal.SIGINT, interrupt)
    try:
        found = client.follow(*until, on_record=show, answer=read_answer)
    finally:
        signal.signal(signal.SIGINT, previous)
    return decode_exit(found[until[-1]])


def shell_status(exit_code: int) -> int:
    """Negative codes mean "killed by signal N"; report them the way shells do."""
    return 128 - exit_code if exit_code < 0 else exit_code & 0xFF


@click.group()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--in-port", default=2000, show_default=True, help="the runner's ops port")
@click.option("--out-port", default=2001, show_default=True, help="the runner's records port")
@click.pass_context
def main(ctx: click.Context, host: str, in_port: int, out_port: int) -> None:
    """Drive a Backend.AI kernel runner."""
    ctx.obj = AgentClient(in_port, out_port, host, timeout=None)


@main.command()
@click.argument("code", required=False)
@click.option("--file", "source", type=click.File("r"), help="read the snippet from a file")
@click.pass_obj
def run(client: AgentClient, code: str | None, source: TextIO | None) -> None:
    """Run one query-mode snippet."""
    if source is not None:
        code = source.read()
    if code is None:
        raise click.UsageError("give CODE or --file")
    client.send(Op.CODE, code)
    sys.exit(shell_status(follow(client, Record.FINISHED)))


@main.command()
@click.option("--clean", default="", help='"" skips, "*" uses the heuristic')
@click.option("--build", default="", help='"" skips, "*" uses make or the heuristic')
@click.option("--exec", "execute", default="*", show_default=True, help="command or *")
@click.pass_obj
def batch(client: AgentClient, clean: str, build: str, execute: str) -> None:
    """Run clean, build and exec as the agent sends them."""
    client.start_batch(clean, build, execute)
    sys.exit(shell_status(follow(client, *BATCH_FINISHED)))


@main.command()
@click.pass_obj
def interactive(client: AgentClient) -> None:
    """Read snippets from the terminal; a line ending with ':' or '\\' continues to a blank line."""
    exit_code = 0
    while True:
        try:
            lines = [input(">>> ")]
            while lines[-1].rstrip().endswith((":", "\\")) or (len(lines) > 1 and lines[-1]):
                lines.append(input("... "))
        except EOFError:
            click.echo()
            sys.exit(shell_status(exit_code))
        client.send(Op.CODE, "\n".join(lines))
        exit_code = follow(client, Record.FINISHED)


@main.command()
@click.pass_obj
def status(client: AgentClient) -> None:
    """Ask for the runner's status."""
    click.echo(client.status())


def _wait_reply(client: AgentClient, kind: Record) -> object:
    """The JSON payload of the next ``kind`` record, showing the others as they come."""

    def show_others(record_type: str, payload: bytes) -> None:
        if record_type != kind:
            show(record_type, payload)

    found = client.follow(kind, on_record=show_others, answer=read_answer)
    return json.loads(found[kind])


@main.command()
@click.pass_obj
def apps(client: AgentClient) -> None:
    """List the services the runner has definitions for."""
    client.send(Op.GET_APPS)
    click.echo(json.dumps(_wait_reply(client, Record.APPS_RESULT), indent=2))


def _options(pairs: Iterable[str], *, lists: bool) -> dict[str, object]:
    """``K=V`` pairs; a bare ``K`` is a flag (null), a repeated ``K`` gives a list."""
    options: dict[str, object] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        item: object = value if sep else None
        if lists and key in options and item is not None:
            previous = options[key]
            item = [*(previous if isinstance(previous, list) else [previous]), value]
        options[key] = item
    return options


@main.command("start-service")
@click.argument("name")
@click.option("--port", type=int, required=True, help="the port the service must open")
@click.option("--arg", "args", multiple=True, help="K=V (or K alone) for allowed_arguments")
@click.option("--env", "envs", multiple=True, help="K=V for allowed_envs")
@click.option("--protocol", default="http", show_default=True)
@click.pass_obj
def start_service(
    client: AgentClient,
    name: str,
    port: int,
    args: tuple[str, ...],
    envs: tuple[str, ...],
    protocol: str,
) -> None:
    """Start a service; exit 1 if the runner answers `failed`."""
    env_values = _options(envs, lists=False)
    if None in env_values.values():
        raise click.UsageError("--env takes K=V")
    options = {"arguments": _options(args, lists=True), "envs": env_values}
    request = {"name": name, "port": port, "ports": [port], "protocol": protocol}
    client.send(Op.START_SERVICE, json.dumps({**request, "options": options}))
    reply = _wait_reply(client, Record.SERVICE_RESULT)
    click.echo(json.dumps(reply))
    sys.exit(1 if isinstance(reply, dict) and reply.get("status") == "failed" else 0)


@main.command("stop-service")
@click.argument("name")
@click.pass_obj
def stop_service(client: AgentClient, name: str) -> None:
    """Stop a service and its whole process tree (the runner sends no reply)."""
    client.send(Op.SHUTDOWN_SERVICE, json.dumps(name))


if __name__ == "__main__":
    main()
