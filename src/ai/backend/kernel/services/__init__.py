"""Services the agent starts in the container: Jupyter, VS Code, sshd, model servers.

- ``spec``: ``ServiceSpec``, a service fully described (from any source), its argv and env.
- ``definitions``: the ``*.json`` service definitions of images, their schema, their spec.
- ``templates``: expansion of ``{runtime_path}``, ``{ports[0]}`` and prestart results.
- ``actions``: prestart actions (write_file, write_tempfile, run_command, mkdir, log).
- ``supervisor``: the processes: spawn, readiness probe, output capture, stop.
- ``host``: the ops ``start-service``, ``shutdown-service`` and ``get-apps``; ``start_service``
  of a spec and ``attach`` of a watcher.
- ``intrinsic``, ``model``, ``health``: sshd and ttyd, model services, their health checks.
"""
