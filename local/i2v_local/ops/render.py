"""Output: a table for people (default) or one JSON object per line (``--json``)."""

from __future__ import annotations

import json
from collections.abc import Sequence


def emit_json(out, obj) -> None:
    out.write(json.dumps(obj, ensure_ascii=False, default=str) + "\n")
    out.flush()


def table(rows: Sequence[dict], columns: Sequence[tuple[str, str]]) -> str:
    """columns: (key, HEADER). Missing values show as "-"."""
    cells = [[_cell(row.get(key)) for key, _ in columns] for row in rows]
    headers = [header for _, header in columns]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=False)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)).rstrip() for r in cells]
    return "\n".join(lines) + "\n"


def emit(out, rows: Sequence[dict], columns: Sequence[tuple[str, str]], as_json: bool, empty: str = "") -> None:
    if as_json:
        for row in rows:
            emit_json(out, row)
        return
    if not rows and empty:
        out.write(empty + "\n")
    else:
        out.write(table(rows, columns))
    out.flush()


def _cell(value) -> str:
    if value is None or value == "":
        return "-"
    return str(value)


def seconds_text(seconds) -> str | None:
    if seconds is None:
        return None
    seconds = float(seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest:02d} s"


def cost_text(usd=None, credits=None) -> str | None:
    parts = []
    if usd is not None:
        parts.append(f"${float(usd):.2f}")
    if credits is not None:
        parts.append(f"{float(credits):g} credits")
    return " + ".join(parts) if parts else None
