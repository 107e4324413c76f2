"""What every figure shares: matplotlib's Agg backend (no display) and one way to write a PNG."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def save_png(fig: plt.Figure, path: str | Path, *, dpi: float = 110, tight: bool = False) -> Path:
    """Write ``fig`` to ``path`` as PNG (making its folder), close it, and return the path.

    ``tight`` crops the canvas to the drawn artists (``bbox_inches="tight"``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight" if tight else None)
    plt.close(fig)
    return path
