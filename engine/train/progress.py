"""The progress bar of ``engine train`` (rich), shown only when stdout is a terminal."""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


class BarProgress:
    """One bar over the current epoch's batches, labelled with the epoch and its running loss.

    Each finished epoch leaves one line with its losses (and accuracies), so the
    terminal keeps the curve's numbers after the bar is gone.
    """

    def __init__(self, total_epochs: int, console: Console | None = None):
        self.total_epochs = total_epochs
        self.bar = Progress(TextColumn("{task.description}"), BarColumn(),
                            MofNCompleteColumn(), TimeElapsedColumn(),
                            console=console, transient=True)
        self.task = self.bar.add_task("", total=None)

    def __enter__(self) -> BarProgress:
        self.bar.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.bar.stop()

    def batch(self, epoch: int, done: int, total: int, running_loss: float) -> None:
        self.bar.update(self.task, completed=done, total=total,
                        description=f"epoch {epoch}/{self.total_epochs}  loss {running_loss:.4f}")

    def epoch(self, epoch: int, metrics: dict[str, float | None]) -> None:
        self.bar.console.print(f"epoch {epoch}/{self.total_epochs}  {format_metrics(metrics)}")


def format_metrics(metrics: dict[str, float | None]) -> str:
    """``train loss 0.1234 acc 0.975  val loss 0.2345 acc 0.944``; absent values are left out."""
    short = {"accuracy": "acc"}
    return "  ".join(f"{part} " + " ".join(
        f"{short.get(name, name)} {value:.3f}" if name != "loss" else f"loss {value:.4f}"
        for name, value in values.items()) for part, values in split_metrics(metrics))


def split_metrics(metrics: dict[str, float | None]) -> list[tuple[str, dict[str, float]]]:
    """``(part, {"loss": ..., metric: ...})`` for each of ``train``, ``val`` and ``test`` that
    has a loss (a run with ``val_split: 0`` has none for ``val``); metrics that are None (the
    accuracy of a graph that does not classify) are left out."""
    parts = []
    for part in ("train", "val", "test"):
        if metrics.get(f"{part}_loss") is None:
            continue
        values = {key.removeprefix(part + "_"): value for key, value in metrics.items()
                  if key.startswith(part + "_") and value is not None}
        parts.append((part, {"loss": values.pop("loss"), **values}))
    return parts
