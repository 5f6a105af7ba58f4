"""Plain-text tables of the benchmark's figures."""

from __future__ import annotations

from collections.abc import Sequence

MB = 1e6


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    if unit == "ms":
        return f"{value * 1000:.2f} ms"
    if unit == "s":
        return f"{value:.3f} s"
    if unit == "MB/s":
        return f"{value / MB:.1f} MB/s"
    return f"{value / MB:.1f} MB"


def render_table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], text_columns: int = 1
) -> str:
    """Figures right-aligned; the first column and the last ``text_columns - 1`` left."""
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
    aligns = [">"] * len(headers)
    for index in [0, *range(len(headers) - text_columns + 1, len(headers))]:
        aligns[index] = "<"

    def line(cells: Sequence[str]) -> str:
        parts = [f"{c:{a}{w}}" for c, a, w in zip(cells, aligns, widths, strict=True)]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), rule, *(line(r) for r in rows)])
