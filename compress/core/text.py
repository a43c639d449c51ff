"""Plain-text tables for the terminal: the one column-width printer every command uses."""

from __future__ import annotations

from collections.abc import Sequence


def columns(header: Sequence[str], rows: Sequence[Sequence[str]], left: int | None = None) -> str:
    """`header` and `rows` as aligned columns two spaces apart, trailing spaces stripped. The
    first `left` columns are left-aligned and the others right-aligned (numbers); None: every
    column left-aligned."""
    table = [list(header), *[list(r) for r in rows]]
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    lines = []
    for r in table:
        cells = [
            c.ljust(w) if left is None or i < left else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)
