"""Writes the data files of the bad-input corpus (tests/bad_specs/data/), each spoiled in one way.

Run from the repository root: ``python tests/bad_specs/make_data.py``.  The files are
committed, so the corpus runs without this script; it records how each was made.
Every file is small: a header may claim 10^12 elements, but the file holds a few bytes.
"""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parent / "data"


def npy_with_header(header: str, data: bytes = b"\0" * 16) -> bytes:
    """A .npy file (format 1.0) with ``header`` as its header dictionary, padded as NumPy pads."""
    text = header.encode("latin1")
    pad = 64 - (10 + len(text) + 1) % 64
    text += b" " * pad + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text + data


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def npz(path: Path, members: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in members.items():
            archive.writestr(name, content)


def checkpoints() -> None:
    """Train tiny.yaml for one epoch, then spoil one section of the checkpoint per file."""
    good = DATA / "tiny_checkpoint.npz"
    subprocess.run([sys.executable, "-m", "engine", "train", str(DATA / "tiny.yaml"),
                    "--save", str(good), "--json"], check=True, capture_output=True)
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
    (DATA / "claims_10_12.npy").write_bytes(npy_with_header(
        "{'descr': '<f8', 'fortran_order': False, 'shape': (1000000000000,), }"))
    (DATA / "claims_2_70.npy").write_bytes(npy_with_header(
        f"{{'descr': '<f8', 'fortran_order': False, 'shape': ({2**70}, 3), }}"))
    (DATA / "malformed_header.npy").write_bytes(npy_with_header("{'descr': '<f8', 'shape': (2,"))
    (DATA / "truncated.npy").write_bytes(npy_bytes(np.zeros((5, 3)))[:-8])
    (DATA / "string_labels.npy").write_bytes(npy_bytes(np.array(["cat", "dog", "cat"])))
    npz(DATA / "member_not_npy.npz", {"x.npy": npy_bytes(np.zeros((5, 3))),
                                      "notes.txt": b"not an array"})
    npz(DATA / "member_claims_10_12.npz", {"x.npy": npy_with_header(
        "{'descr': '<f8', 'fortran_order': False, 'shape': (1000000000000, 3), }")})
    npz(DATA / "string_labels.npz", {"x.npy": npy_bytes(np.zeros((6, 2))),
                                     "y.npy": npy_bytes(np.array(["a", "b"] * 3))})
    checkpoints()


if __name__ == "__main__":
    main()
