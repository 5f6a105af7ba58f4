# See tests/__init__.py: pytest then imports this directory as `tests.agent`.
