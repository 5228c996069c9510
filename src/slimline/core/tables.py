"""Terminal tables that never hide what identifies a row, whatever the width.

rich shrinks a table to the terminal (80 columns when output is not a terminal, as in CI logs)
by cutting cells with an ellipsis: a sweep's candidate names became "sweep-202…" and its
overrides "prune.rat…". A key column here is at least as wide as its longest cell (or, for a
list of words such as overrides, its longest word, wrapping between words), up to KEY_WIDTH,
so names, aliases and overrides print whole and the figures around them give way instead; a
cell longer than that folds onto the next line rather than losing its end.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

KEY_WIDTH = 40  # past this, a key would crowd out every figure at 80 columns: it folds


def key_column(table: Any, header: str, cells: Iterable[str], *, words: bool = False) -> None:
    """Add to the rich `table` a column whose cells are never cut (`words`: cells are lists of
    words, each kept whole, wrapped between words; otherwise a cell is one word)."""
    cells = list(cells)
    parts = [w for cell in cells for w in (cell.split() if words else [cell])]
    widest = max([len(header), *map(len, parts)])
    table.add_column(header, min_width=min(widest, KEY_WIDTH), overflow="fold")
