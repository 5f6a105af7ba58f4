"""A developer client that talks to a runner the way the agent does.

    python -m ai.backend.kernel.client run 'print("hi")'
    python -m ai.backend.kernel.client batch --build '*' --exec '*'
    python -m ai.backend.kernel.client interactive

stdout/stderr records are written raw to the terminal's stdout/stderr, other records as one line
each; input prompts are answered from the terminal.  The exit status is the execution's.
"""

from __future__ import annotations

import getpass
import signal
import sys
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


if __name__ == "__main__":
    main()
