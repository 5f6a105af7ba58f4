"""The agent tests' fixtures: an event loop, the runner under test and agent sessions."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.agent.harness import (
    AgentSession,
    RunnerChoice,
    SharedRunner,
    checked_runner_choice,
    start_session,
)


@pytest.fixture(scope="session")
def agent_loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.run_until_complete(loop.shutdown_asyncgens())
    loop.close()


@pytest.fixture(scope="session")
def runner_choice(tmp_path_factory: pytest.TempPathFactory) -> RunnerChoice:
    """The runner under test, after checking that it can be started at all."""
    return checked_runner_choice(tmp_path_factory)


TEST_FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item) -> Generator[None, Any, None]:
    outcome = yield
    report = outcome.get_result()
    if report.failed or hasattr(report, "wasxfail"):  # an expected failure leaves state too
        item.stash[TEST_FAILED] = True


@pytest.fixture(scope="module")
def shared_runner(
    agent_loop: asyncio.AbstractEventLoop,
    runner_choice: RunnerChoice,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[SharedRunner]:
    shared = SharedRunner(agent_loop, runner_choice, tmp_path_factory.mktemp("shared"))
    try:
        yield shared
    finally:
        shared.stop()


@pytest.fixture
def agent(
    request: pytest.FixtureRequest,
    agent_loop: asyncio.AbstractEventLoop,
    runner_choice: RunnerChoice,
    shared_runner: SharedRunner,
    tmp_path: Path,
) -> Iterator[AgentSession]:
    """A runner of the test's own, or the module's shared one for a test marked
    ``shared_runner`` (one that leaves the runner as it found it). After a failure (which may
    leave an execution running) or if the runner died, the next test gets a new shared one."""
    if request.node.get_closest_marker("shared_runner") is not None:
        session = shared_runner.get()
        yield session
        if request.node.stash.get(TEST_FAILED, False) or session.runner.proc.poll() is not None:
            shared_runner.stop()
        return
    if runner_choice.flavour == "upstream":
        shared_runner.stop()  # upstream binds fixed ports and paths: only one can run
    session = start_session(agent_loop, runner_choice, tmp_path)
    try:
        yield session
    finally:
        session.stop()


@pytest.fixture
def another_agent(
    agent_loop: asyncio.AbstractEventLoop, runner_choice: RunnerChoice, tmp_path: Path
) -> Iterator[Callable[[], AgentSession]]:
    """Start further runners (this repository's only) with their own agent sessions."""
    started: list[AgentSession] = []

    def spawn() -> AgentSession:
        if runner_choice.flavour == "upstream":
            pytest.skip("upstream binds fixed ports and paths: only one can run")
        base = tmp_path / f"extra-{len(started)}"
        base.mkdir()
        started.append(start_session(agent_loop, runner_choice, base))
        return started[-1]

    try:
        yield spawn
    finally:
        for session in started:
            session.stop()


def pytest_configure(config: pytest.Config) -> None:
    # The 24.3 agent uses `with timeout(...)` of async-timeout 4, which warns each time.
    config.addinivalue_line(
        "filterwarnings", "ignore:with timeout\\(\\) is deprecated:DeprecationWarning"
    )
    config.addinivalue_line(
        "markers", "shared_runner: the test leaves the runner as it found it (see `agent`)"
    )
