"""Random frames never break the runner: after each message it still answers ``status``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ai.backend.kernel.protocol import Op, Record

# Ops that start executions are left out: random text must not be run as shell commands.
EXECUTION_OPS = {op.encode() for op in (Op.CLEAN, Op.BUILD, Op.EXEC, Op.CODE)}
SIDE_OPS = [op.encode() for op in Op if op.encode() not in EXECUTION_OPS]

op_frame = st.one_of(st.sampled_from(SIDE_OPS), st.binary(max_size=24))
payload_frame = st.one_of(
    st.binary(max_size=256),
    st.text(max_size=64).map(str.encode),
    st.sampled_from([b"{}", b"[]", b"null", b'{"code": 1}', b'{"type": "oom"}', b'"x"']),
)
messages = st.one_of(
    st.tuples(op_frame, payload_frame).map(list),
    st.lists(st.binary(max_size=32), max_size=5),
).filter(lambda frames: not frames or frames[0] not in EXECUTION_OPS)


def test_runner_survives_random_frames(start_kernel: Callable[..., Any]) -> None:
    agent = start_kernel("git").agent

    @settings(
        max_examples=150,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(frames=messages)
    def still_answers_status(frames: list[bytes]) -> None:
        if frames:
            agent.send_frames(frames)
        agent.send(Op.STATUS)
        while True:  # a reply to the random op (completion, apps-result, ...) may come first
            kind, _ = agent.recv(10_000)
            if kind == Record.STATUS:
                break

    still_answers_status()
