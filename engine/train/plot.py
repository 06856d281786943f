"""The loss curve (train and validation loss per epoch), drawn with matplotlib.

matplotlib is an optional extra (``pip install -e ".[plot]"``); it is imported
only when a plot is asked for, and its absence is found before training starts.
"""

from __future__ import annotations

import io
from pathlib import Path
from types import ModuleType

from engine.errors import EngineError, UsageError
from engine.io.atomic import write_atomically

FORMATS = (".png", ".svg", ".pdf")


def pyplot(path: Path) -> ModuleType:
    """matplotlib's pyplot on a file-only backend, or an error that says how to install it."""
    if path.suffix.lower() not in FORMATS:
        raise UsageError(f"--plot {path}: the file name must end in {' or '.join(FORMATS)}")
    try:
        import matplotlib
    except ImportError:
        raise EngineError("--plot needs matplotlib, an optional extra: pip install -e "
                          "'.[plot]' (or pip install matplotlib)") from None
    matplotlib.use("Agg")  # no display needed, and no window opens
    import matplotlib.pyplot as plt

    return plt


def plot_history(path: Path, history: dict[str, list[float | None]], title: str) -> None:
    """Write the train and validation loss per epoch to ``path`` atomically."""
    plt = pyplot(path)
    figure, axes = plt.subplots(figsize=(6.4, 4.0), dpi=100)
    for key, label in (("train_loss", "train"), ("val_loss", "validation")):
        points = [(i + 1, v) for i, v in enumerate(history.get(key, [])) if v is not None]
        if points:
            epochs, values = zip(*points, strict=True)
            axes.plot(epochs, values, marker="." if len(points) < 30 else None, label=label)
    axes.set_xlabel("epoch")
    axes.set_ylabel("loss")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format=path.suffix.lower()[1:])
    plt.close(figure)
    write_atomically(path, lambda handle: handle.write(buffer.getvalue()))
