"""Writes the data files of the bad-input corpus (tests/bad_specs/data/), each spoiled in one way.

Run from the repository root: ``python tests/bad_specs/make_data.py``.  The files are
committed, so the corpus runs without this script; it records how each was made.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parent / "data"


#: The small classifier trained for the checkpoint cases (the resume_*.yaml specs are it).
TINY = """name: tiny
inputs:
  x: {shape: [batch, 2], init: zeros}
  y: {shape: [batch], dtype: int64, init: zeros}
parameters:
  w: {shape: [2, 2], init: {normal: {mean: 0.0, std: 0.3}}}
nodes:
  logits: {op: MatMul, inputs: [x, w]}
  probs: {op: Softmax, inputs: [logits]}
  loss: {op: NLL, inputs: [probs, y], reduction: mean}
loss: loss
train:
  data: tiny.csv
  inputs:
    x: {columns: [a, b], standardize: true}
    y: {label: label}
  optimizer: adam
  epochs: 1
  batch_size: 4
"""


def checkpoints() -> None:
    """Train TINY for one epoch, then spoil one section of the checkpoint per file."""
    good, spec = DATA / "tiny_checkpoint.npz", DATA / "tiny.yaml"
    spec.write_text(TINY)
    subprocess.run([sys.executable, "-m", "engine", "train", str(spec), "--save", str(good),
                    "--json"], check=True, capture_output=True)
    spec.unlink()
    with np.load(good) as loaded:
        arrays = dict(loaded)
    meta = json.loads(str(arrays["meta"]))
    rng = json.loads(str(arrays["rng"]))
    spoiled = {
        "ckpt_scale_wrong_shape": {"scale/x/mean": np.zeros(3), "scale/x/std": np.ones(3)},
        "ckpt_scale_complex": {"scale/x/std": arrays["scale/x/std"].astype(complex)},
        "ckpt_scale_missing_std": {"scale/x/std": None},
        "ckpt_optimizer_complex": {"optimizer/t": np.array(1 + 2j)},
        "ckpt_optimizer_string": {"optimizer/t": np.array("one")},
        "ckpt_optimizer_float": {"optimizer/t": np.array(1.5)},
        "ckpt_rng_negative": {"rng": np.array(json.dumps(
            {**rng, "state": {**rng["state"], "state": -1}}))},
        "ckpt_meta_not_json": {"meta": np.array("{epoch: 1")},
        "ckpt_meta_epoch_text": {"meta": np.array(json.dumps({**meta, "epoch": "one"}))},
        "ckpt_meta_number": {"meta": np.array(3.0)},
        "ckpt_meta_data_read": {"meta": np.array(json.dumps(
            {**meta, "data": {**meta.get("data", {}), "read": "sideways"}}))},
    }
    for name, changes in spoiled.items():
        changed = {**arrays, **changes}
        np.savez(DATA / f"{name}.npz", **{k: v for k, v in changed.items() if v is not None})
    good.unlink()


def main() -> None:
    DATA.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    rows = [f"{a:.3f},{b:.3f},{int(a + b > 0)}" for a, b in rng.normal(size=(20, 2))]
    (DATA / "tiny.csv").write_text("a,b,label\n" + "\n".join(rows) + "\n")
    checkpoints()


if __name__ == "__main__":
    main()
