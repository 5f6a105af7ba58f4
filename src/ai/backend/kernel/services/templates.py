"""Expansion of service-definition strings: ``{runtime_path}``, ``{ports[0]}``, ``{jupyter_cfg}``.

Two dialects, both always understood:

- the runner's own (agent 24.3 images): Python brace syntax over the variables of one start,
  ``{name}``, ``{name[0]}``, ``{name[key]}`` and ``{name.attr}``, with an optional
  ``:format_spec``; ``{{`` and ``}}`` are literal braces;
- the newer runners' (25.x images): ``${{ expr }}`` beside ``{expr}``, with spaces allowed
  inside the braces of either (``{ runtime_path }`` is ``{runtime_path}``).

Shell syntax passes through unchanged, so that commands may use the service's environment:
``$VAR`` always, and ``${VAR}`` whenever ``VAR`` is not a template variable.  ``${{ name }}``
expands when ``name`` is a template variable; otherwise it stays the literal ``${name}`` that
it always was (``${{HOME}}`` gives ``${HOME}``, as under 24.3).
"""

from __future__ import annotations

import string
from collections.abc import Mapping

from .errors import ServiceStartError

_FIELDS = string.Formatter()


class TemplateError(ServiceStartError):
    """A template that cannot be expanded; the message says where and why."""


def expand(template: str, variables: Mapping[str, object], *, where: str) -> str:
    """Expand one template; ``where`` names it in errors (e.g. "command[2] of jupyter")."""
    out: list[str] = []
    i = 0
    while i < len(template):
        char = template[i]
        if template.startswith("${{", i) and (end := template.find("}}", i + 3)) >= 0:
            out.append(_expand_dollar_field(template[i + 3 : end], variables, where))
            i = end + 2
        elif char in "{}" and template.startswith(char * 2, i):
            out.append(char)
            i += 2
        elif char == "}":
            raise TemplateError(f"{where}: a single '}}' at position {i} (write '}}}}' for one)")
        elif char == "{":
            end = template.find("}", i)
            if end < 0:
                raise TemplateError(f"{where}: '{{' at position {i} is never closed")
            field = template[i + 1 : end]
            shell_style = template[i - 1 : i] == "$"
            out.append(_expand_field(field, variables, shell_style, where))
            i = end + 1
        else:
            out.append(char)
            i += 1
    return "".join(out)


def _root(name: str) -> str:
    return name.split("[", 1)[0].split(".", 1)[0].strip()


def _expand_dollar_field(field: str, variables: Mapping[str, object], where: str) -> str:
    """``${{ field }}``: the variable's value if ``field`` names one, else ``${field}``."""
    if _root(field.partition(":")[0]) not in variables:
        return "${" + field + "}"
    return _expand_field(field, variables, False, where)


def _expand_field(
    field: str, variables: Mapping[str, object], shell_style: bool, where: str
) -> str:
    name, _, spec = field.partition(":")
    name = name.strip()
    root = _root(name)
    if root not in variables:
        if shell_style:  # ${VAR}: the shell's business, not ours
            return "{" + field + "}"
        known = ", ".join(sorted(variables)) or "none"
        raise TemplateError(f"{where}: unknown variable {{{field}}} (known: {known})")
    try:
        value, _ = _FIELDS.get_field(name, (), variables)
        return format(value, spec)
    except (LookupError, AttributeError, TypeError, ValueError) as e:
        raise TemplateError(f"{where}: cannot expand {{{field}}}: {e!r}") from e
