"""Learning-rate schedules: the rate of every step as a pure function of where training is.

No state is kept: the rate depends only on the epoch, the batch within it and the
settings, so a resumed run sets the same rates as an uninterrupted one.
"""

from __future__ import annotations

import math

from schemas.train import ScheduleConfig


def learning_rate(schedule: ScheduleConfig, lr: float, epochs: int, epoch: int, batch: int,
                  batches: int) -> float:
    """The rate of batch ``batch`` (0-based) of epoch ``epoch`` (0-based), ``batches`` a epoch.

    Warmup: step k (0-based, counted from the first epoch) of a warmup of W epochs
    takes ``lr * (k + 1) / (W * batches)``.  After it the schedule runs on the
    fractional epoch ``t = epoch + batch / batches``: constant ``lr``; step
    ``lr * gamma ** (epoch // step_size)``; cosine ``min_lr + (lr - min_lr) *
    (1 + cos(pi * (t - W) / (epochs - W))) / 2``, as ``CosineAnnealingLR`` without restarts.
    """
    t = epoch + batch / batches
    warmup = schedule.warmup_epochs
    if t < warmup:
        return lr * (epoch * batches + batch + 1) / (warmup * batches)
    if schedule.name == "step":
        return lr * schedule.gamma ** (epoch // schedule.step_size)
    if schedule.name == "cosine":
        span = epochs - warmup
        progress = min(1.0, (t - warmup) / span) if span > 0 else 1.0
        return schedule.min_lr + (lr - schedule.min_lr) * (1 + math.cos(math.pi * progress)) / 2
    return lr
