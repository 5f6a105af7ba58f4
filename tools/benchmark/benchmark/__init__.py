"""Benchmark this repository's kernel runner against the published backend.ai-kernel 24.3.3.

Run as ``./pants run tools/benchmark:bench``.

Both runners are driven the way the agent drives them (``ai.backend.kernel.agent_client``):
a PUSH socket for ops, a PULL socket for records, two frames per message, stdout/stderr decoded
with one incremental UTF-8 decoder per stream (``errors="replace"``). The upstream runner is
installed from PyPI into a virtualenv cached under ``~/.cache/backend.ai-kernel-bench/`` and is
started as in a container: ``python -m ai.backend.kernel python PYTHON`` with cwd
``/home/work`` on ports 2000/2001. The runners are measured one after the other in the same run,
except the `status` round trip: both runners then run side by side, each warmed up (its Jupyter
kernel started, so that neither is still starting one), and are timed in turns, N
rounds of ``--iterations`` samples each (who goes first alternates), and the table gives the
median of each runner's round medians, so that a drift of the machine's load hits both alike.

Each runner is first started once untimed (with PYTHONDONTWRITEBYTECODE removed from its
environment), so that every later start runs from compiled bytecode as an installed krunner
environment does; without that, a pex venv without .pyc files costs ~13 MB of RSS and start-up
time that the upstream virtualenv (compiled by pip) does not pay. Then, per runner: N starts
(median time to the first `status` reply), and in the last start idle memory, a warm-up, the
query and batch round trips (medians) and the 64 MiB streams (median run). The baselines are
taken in turns with this runner's own samples, so that both see the same machine load: the bare
jupyter_client (a plain ipykernel, ``execute_interactive("pass")``, same python as this runner)
in blocks with its queries, bare ``sh -c true`` spawns in blocks with its batch runs, and a
plain pipe's 64 MiB after each of its streams.

Memory: "idle RSS, runner process" is the runner process alone 1 s after its first `status`
reply, before anything else is asked (what every session pays); "after warm-up" is the same
after a few queries and batch runs (query mode loaded), and "runner + children" adds every
descendant, which is mostly the Jupyter kernel.

The last table holds the aims: each of this runner's figures with its limit (a multiple of
upstream's figure or of a baseline from the same run, or a fixed value) and PASS or MISS, and
beside it the floor: the same figure of a bare synchronous runner on pyzmq (``floor.py``),
measured alike in the same run (and in turns with both runners for `status`). No runner can do
better than that bare loop, so where the floor misses a limit too, the table says so: the aim
is then out of reach on this machine.

Services (``services.py``): start-service to `started` for a program that listens at once (and
the part after its port opened), and the worst `status` round trip while five slow services
start. Upstream reads service definitions only from ``/etc/backend.ai/service-defs``: they are
written there only when that directory is absent, and removed afterwards; this runner gets its
own directory (``--service-def-dir``).
"""
