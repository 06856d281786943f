"""Learning-rate schedules against their formulas, evaluated by hand at chosen steps."""

from __future__ import annotations

import math

import pytest

from engine.train.schedule import learning_rate
from schemas.train import ScheduleConfig


def rates(schedule: ScheduleConfig, epochs: int, batches: int, lr: float = 1.0) -> list[float]:
    return [learning_rate(schedule, lr, epochs, e, b, batches)
            for e in range(epochs) for b in range(batches)]


def test_constant_keeps_the_rate() -> None:
    assert rates(ScheduleConfig(), 3, 2, lr=0.05) == [0.05] * 6


def test_step_decays_by_gamma_every_step_size_epochs() -> None:
    got = rates(ScheduleConfig(name="step", step_size=2, gamma=0.5), 5, 1)
    assert got == [1.0, 1.0, 0.5, 0.5, 0.25]


def test_cosine_falls_from_lr_to_min_lr_by_half_a_cosine_wave() -> None:
    got = rates(ScheduleConfig(name="cosine", min_lr=0.1), 4, 2)
    # t = 0, 0.5, 1, ... 3.5 of 4 epochs: 0.1 + 0.9 * (1 + cos(pi t / 4)) / 2
    expected = [0.1 + 0.9 * (1 + math.cos(math.pi * k / 8)) / 2 for k in range(8)]
    assert got == pytest.approx(expected, rel=1e-15)
    assert got[0] == 1.0 and got[4] == pytest.approx(0.55)


def test_linear_warmup_rises_to_lr_then_the_schedule_runs() -> None:
    got = rates(ScheduleConfig(name="cosine", warmup_epochs=1), 3, 4)
    assert got[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    # after the warmup the cosine spans the remaining 2 epochs: t - 1 = 0, 0.25, ... 1.75
    assert got[4:] == pytest.approx([(1 + math.cos(math.pi * k / 8)) / 2 for k in range(8)])
    assert rates(ScheduleConfig(warmup_epochs=0.5), 2, 4) == pytest.approx(
        [0.5, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0])
