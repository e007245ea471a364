"""minillm: the shared package of the minillm book.

One module per idea, plain PyTorch and plain Python, shapes in docstrings.
Every notebook starts with ``DEVICE = minillm.setup()``.
"""
from __future__ import annotations

import os
import random
from pathlib import Path

__version__ = "0.1.0"

#: The repository root (the folder holding ``data/`` and ``chapters/``).
ROOT = Path(__file__).resolve().parent.parent
#: The book's shipped, frozen datasets.
DATA_DIR = ROOT / "data"


def seed_everything(seed: int = 0) -> None:
    """Seed Python's, NumPy's and PyTorch's random generators."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def setup(seed: int = 0, device: str | None = None) -> str:
    """The first call of every notebook: seeds, plot style, and a device.

    Returns the device name to use: ``device`` if given, else the
    ``MINILLM_DEVICE`` environment variable, else ``"cuda"`` when a GPU is
    present, else ``"mps"`` on Apple silicon, else ``"cpu"``.
    """
    import torch

    seed_everything(seed)
    _plot_style()
    if device is None:
        device = os.environ.get("MINILLM_DEVICE")
    if device is None:
        if torch.cuda.is_available():
            device = "cuda"
        elif getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            device = "mps"
        else:
            device = "cpu"
    return device


def _plot_style() -> None:
    """One figure style for the whole book (readable in HTML and in Jupyter).

    Figures are 6.4 inches wide at 100 dpi (640 px: they fit the book's column
    without shrinking), and a notebook shows them as retina PNGs: twice the
    pixels, displayed at the same size, so they stay sharp on high-density
    screens and when zoomed. nbval does not compare PNG bytes (it skips
    image/png), so the stored figures' resolution never fails a test.
    """
    try:
        import matplotlib as mpl
    except ImportError:  # plotting is optional for the package itself
        return
    _retina_figures()
    mpl.rcParams.update(
        {
            "figure.figsize": (6.4, 3.6),
            "figure.dpi": 100,
            "axes.grid": True,
            "grid.alpha": 0.3,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.titleweight": "bold",
            "savefig.bbox": "tight",
        }
    )


def _retina_figures() -> None:
    """Inside IPython/Jupyter, show inline figures as 2x (retina) PNGs."""
    try:
        from IPython import get_ipython
        from matplotlib_inline.backend_inline import set_matplotlib_formats
        from matplotlib_inline.config import InlineBackend
    except ImportError:
        return
    shell = get_ipython()
    if shell is None:  # a plain Python process: never create a shell
        return
    # The inline backend reads this when it starts (on the first pyplot import)...
    InlineBackend.instance(parent=shell).figure_formats = {"retina"}
    # ... and this covers a backend that has started already.
    set_matplotlib_formats("retina")
