"""What an input's shape holds (tabular, signal, image), read from the data source's files
without loading them, and paths resolved against the project."""

from __future__ import annotations

from pathlib import Path

from slimline.core.params.inputs import LAYOUT_SHAPES, Data


def layout_problem(layout: str, shape: tuple[int, ...], where: str) -> str | None:
    """Why an npz's x of `shape` cannot be read with `data.layout`, or None when it can."""
    forms = LAYOUT_SHAPES[layout]
    if len(shape) in forms:
        return None
    *first, last = forms.values()
    return (
        f"data.layout: {layout} reads x as {', '.join(first) + ' or ' if first else ''}{last} "
        f"(got x of shape {tuple(shape)} in {where})"
    )


def resolve_layout(layout: str, ndim: int) -> str:
    """tabular, signal or image: how a source x of `ndim` (with N) is read under `layout`."""
    if layout != "auto":
        return layout
    return "tabular" if ndim == 2 else "image"


def input_layout(data: Data, base: Path) -> str | None:
    """How the source's x is read (tabular, signal, image; token ids for `text`), or None when
    unreadable here."""
    if data.source == "text":
        return "text"
    ndim = input_ndim(data, base)
    return None if ndim is None else resolve_layout(data.layout, ndim)


def input_ndim(data: Data, base: Path) -> int | None:
    """ndim of the source's `x` (images: 3 or 4), or None when it cannot be read here."""
    if data.source == "table":
        return 2  # rows of numeric feature columns: (N, F)
    if data.source != "npz":
        return 3
    shape = npz_x_shape(resolve(data.path or "", base))
    return None if shape is None else len(shape)


def npz_x_shape(path: Path) -> tuple[int, ...] | None:
    """Shape of `x` in an npz, from its header alone; None when it cannot be read."""
    try:
        import zipfile

        import numpy as np

        with zipfile.ZipFile(path) as z, z.open("x.npy") as f:
            major, _ = np.lib.format.read_magic(f)
            read_header = (
                np.lib.format.read_array_header_1_0
                if major == 1
                else np.lib.format.read_array_header_2_0
            )
            shape, _, _ = read_header(f)
        return tuple(shape)
    except Exception:  # missing/corrupt data is the prepare stage's error, with its own message
        return None


def resolve(path: str, base: Path) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() else base / p
