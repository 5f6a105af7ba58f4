"""Benchmark this repository's kernel runner against the published backend.ai-kernel 24.3.3.

Run as ``./pants run tools/benchmark:bench``.

Both runners are driven the way the agent drives them (``ai.backend.kernel.agent_client``):
a PUSH socket for ops, a PULL socket for records, two frames per message, stdout/stderr decoded
with one incremental UTF-8 decoder per stream (``errors="replace"``). The upstream runner is
installed from PyPI into a virtualenv cached under ``~/.cache/backend.ai-kernel-bench/`` and is
started as in a container: ``python -m ai.backend.kernel python PYTHON`` with cwd
``/home/work`` on ports 2000/2001. The runners are measured one after the other in the same run.

Each runner is first started once untimed (with PYTHONDONTWRITEBYTECODE removed from its
environment), so that every later start runs from compiled bytecode as an installed krunner
environment does; without that, a pex venv without .pyc files costs ~13 MB of RSS and start-up
time that the upstream virtualenv (compiled by pip) does not pay. Then, per runner: N starts
(median time to the first `status` reply), and in the last start a warm-up, idle memory, the
round trips (medians) and the 64 MiB streams (median run). The bare jupyter_client baseline
(a plain ipykernel, ``execute_interactive("pass")``, same python as this runner) is timed in
blocks taken in turns with this runner's queries, so that both see the same machine load.

Memory: "idle RSS, runner process" is the runner process alone (its resident set after the
warm-up and 1 s idle); "runner + children" adds every descendant, which is mostly the Jupyter
kernel.

Services (``services.py``): start-service to `started` for a program that listens at once (and
the part after its port opened), and the worst `status` round trip while five slow services
start. Upstream reads service definitions only from ``/etc/backend.ai/service-defs``: they are
written there only when that directory is absent, and removed afterwards; this runner gets its
own directory (``--service-def-dir``).
"""
