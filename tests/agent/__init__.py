"""The runner driven by the real agent; a package so that pytest imports it as `tests.agent`."""
