"""Whole numbers fed to an integer input must fit its dtype before the cast: int64's largest,
2^63 - 1, is 2^63 as a float64, so a test ``<= largest`` let 2.0**63 in, and the cast wrapped
it to -2^63.  Bounds by hand: int64 holds -2^63 .. 2^63 - 1; the float64 just below 2^63 is
2^63 - 1024 (53-bit significand: spacing 2^(62-52) = 1024 there)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_train_errors import NPZ_SPEC, errors_of, write_npz

from engine.errors import DataError
from engine.train.checks import ValueCheck


def check(dtype: str) -> ValueCheck:
    return ValueCheck("integers", lambda index: f"rows {list(index)}", "input 'k'", dtype=dtype)


@pytest.mark.parametrize(("dtype", "bad", "good"), [
    ("int64", 2.0**63, 2.0**63 - 1024),
    ("int64", -(2.0**63) - 2048, -(2.0**63)),
    ("int32", 2.0**31, 2.0**31 - 1),
    ("int8", 128.0, 127.0),
])
def test_the_lazy_check_refuses_the_first_number_past_the_dtype(dtype: str, bad: float,
                                                                good: float) -> None:
    check(dtype)(np.array([good, 0.0]))
    with pytest.raises(DataError, match=r"rows \[1\]: .* has dtype " + dtype):
        check(dtype)(np.array([good, bad]))


SPEC = NPZ_SPEC.replace("  y: {shape: [batch, 2]}\n",
                        "  y: {shape: [batch, 2]}\n  k: {shape: [batch], dtype: int64}\n"
                        ).replace("    y: {label: labels}\n",
                                  "    y: {label: labels}\n    k: {array: ks}\n")


def test_the_eager_path_refuses_2_to_the_63_before_the_cast(tmp_path: Path, capsys) -> None:
    rows = np.zeros((4, 2)), np.zeros(4, np.int64)
    err = errors_of(capsys, write_npz(tmp_path, SPEC, features=rows[0], labels=rows[1],
                                      ks=np.array([0.0, 1.0, 2.0**63, 3.0])))
    assert "input 'k' has dtype int64, but its data holds 9.22337e+18, which int64 cannot" \
        in err, err
