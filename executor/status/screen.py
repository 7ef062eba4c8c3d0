"""The status view drawn with rich: one renderable that fits 80 columns.

Rows are a label column (10 wide) and text that folds onto the next line rather than being
cut; grids (PnL, open orders) are borderless tables whose reason column gives way first.
"""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from executor.status.model import Grid, Piece, Row, View

__all__ = ["renderable"]

LABEL = 10


def _text(pieces: list[Piece]) -> Text:
    out = Text()
    for p in pieces:
        out.append(p.text, style=p.style or None)
    return out


def _rows(rows: list[Row]) -> Table:
    t = Table.grid(padding=(0, 0))
    t.add_column(width=LABEL, no_wrap=True, style="bold cyan")
    t.add_column(overflow="fold")
    for r in rows:
        t.add_row(r.label, _text(r.pieces))
    return t


def _grid(g: Grid) -> RenderableType:
    t = Table(box=None, padding=(0, 1), pad_edge=False, show_edge=False, header_style="dim",
              title=None)
    last = len(g.header) - 1
    for i, name in enumerate(g.header):
        t.add_column(name, justify="right" if i in g.right else "left", no_wrap=i != last,
                     overflow="ellipsis" if i == last else "fold", ratio=1 if i == last else None)
    for r in g.rows:
        t.add_row(*(_text([p]) for p in r))
    parts: list[RenderableType] = [Text(g.label, style="bold cyan"), Padding(t, (0, 0, 0, 2))]
    if g.note:
        parts.append(Padding(Text(g.note, style="dim"), (0, 0, 0, 2)))
    return Group(*parts)


def renderable(view: View) -> RenderableType:
    """The whole status as one rich renderable (consecutive rows share one label column)."""
    parts: list[RenderableType] = [_text(view.title)]
    run: list[Row] = []
    for b in view.blocks:
        if isinstance(b, Row):
            run.append(b)
            continue
        if run:
            parts.append(_rows(run))
            run = []
        parts.append(_grid(b))
    if run:
        parts.append(_rows(run))
    return Group(*parts)
