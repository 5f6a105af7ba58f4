"""The workspace's tests, as a regular package rather than a namespace.

graypy (a dependency of backend.ai-agent) ships a top-level `tests` package that would otherwise
shadow this one in the agent resolve.
"""
