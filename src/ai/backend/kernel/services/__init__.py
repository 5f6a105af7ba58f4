"""Services the agent starts in the container: Jupyter, VS Code, sshd, model servers.

- ``definitions``: the ``*.json`` service definitions of images, their schema, argv and env.
- ``templates``: expansion of ``{runtime_path}``, ``{ports[0]}`` and prestart results.
- ``actions``: prestart actions (write_file, write_tempfile, run_command, mkdir, log).
- ``supervisor``: the processes: spawn, readiness probe, output capture, stop.
- ``host``: the ops ``start-service``, ``shutdown-service`` and ``get-apps``.
"""
