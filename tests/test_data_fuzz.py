"""Mutated .npy, .npz and .csv files: each is read into an array or refused with a DataError
(never another exception, never more memory than the budget).  Seeded, so a failure
reproduces; ``python tests/test_data_fuzz.py N`` tries N files of each kind."""

from __future__ import annotations

import io
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from engine.errors import DataError
from engine.io.arrays import load_array

BUDGET = 1 << 20  # what a fuzzed file may make: a claim past it must be refused, not read


def _npy_bytes(rng: np.random.Generator) -> bytes:
    buffer = io.BytesIO()
    dtype = rng.choice(["<f8", "<f4", "<i8", "<c16", "|b1", "<f2"])
    np.save(buffer, (rng.normal(size=tuple(rng.integers(0, 4, size=rng.integers(0, 3))))
                     * 10).astype(dtype))
    return buffer.getvalue()


_HEADERS = [b"(10**12,)", b"(-1,)", b"(3, -2)", b"((3,),)", b"('a',)", b"(1e3,)", b"()",
            b"(2**70, 2**70)", b"(" + b"9" * 5000 + b",)", b"[3]", b"{}", b"(" * 200]
_DESCRS = [b"'|O'", b"'<U3'", b"'V8'", b"'>f8'", b"'<f16'", b"'zz'", b"[('a', '<f8')]", b"None"]


def mutated_npy(rng: np.random.Generator) -> bytes:
    data = bytearray(_npy_bytes(rng))
    kind = rng.integers(0, 5)
    if kind == 0:  # truncated anywhere
        return bytes(data[:rng.integers(0, len(data) + 1)])
    if kind == 1:  # a byte of the header flipped
        data[rng.integers(0, min(len(data), 128))] ^= 1 << int(rng.integers(0, 8))
        return bytes(data)
    text = bytes(data[10:10 + int.from_bytes(data[8:10], "little")])
    if kind == 2:
        text = text.replace(text[text.index(b"'shape'"):].split(b"}")[0],
                            b"'shape': " + _HEADERS[rng.integers(0, len(_HEADERS))] + b", ")
    elif kind == 3:
        start = text.index(b"'descr': ") + 9
        end = text.index(b",", start)
        text = text[:start] + _DESCRS[rng.integers(0, len(_DESCRS))] + text[end:]
    else:  # the header's length field lies
        data[8:10] = int(rng.integers(0, 65536)).to_bytes(2, "little")
        return bytes(data)
    header = text.rstrip(b" \n")
    header += b" " * (-(len(header) + 11) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + bytes(data[
        10 + int.from_bytes(data[8:10], "little"):])


def mutated_npz(rng: np.random.Generator) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        names = ["x.npy", "y.npy", "notes.txt", "a/b.npy", "x"]
        for name in rng.choice(names, size=rng.integers(1, 4), replace=False):
            payload = mutated_npy(rng) if rng.integers(0, 2) else _npy_bytes(rng)
            if rng.integers(0, 6) == 0:  # a bomb: a small header, then megabytes of zeros
                payload = _npy_bytes(rng)[:128] + bytes(4 << 20)
            archive.writestr(name, payload)
    data = bytearray(buffer.getvalue())
    if rng.integers(0, 4) == 0:
        data = data[:rng.integers(0, len(data) + 1)]
    return bytes(data)


_CELLS = ["1", "-2.5", "1e999", "nan", "inf", "", " ", "x", '"3"', '"4', "1,5", "\ufeff1",
          "0x10", "1_000", "\x00", "é", "2.", ".5", "+7", "--1", "1e-400"]


def mutated_csv(rng: np.random.Generator) -> bytes:
    rows = []
    width = int(rng.integers(1, 5))
    if rng.integers(0, 2):
        rows.append(",".join(f"c{i}" for i in range(width)))
    for _ in range(rng.integers(0, 6)):
        cells = [str(rng.normal()) for _ in range(width + (rng.integers(0, 6) == 0))]
        if rng.integers(0, 3) == 0:
            cells[rng.integers(0, len(cells))] = _CELLS[rng.integers(0, len(_CELLS))]
        rows.append(",".join(cells))
    newline = ["\n", "\r\n", "\n\n"][rng.integers(0, 3)]
    text = newline.join(rows) + (newline if rng.integers(0, 2) else "")
    data = text.encode("utf-8")
    if rng.integers(0, 8) == 0:
        data += b"\xff\xfe"  # not UTF-8
    return data


KINDS = {".npy": mutated_npy, ".npz": mutated_npz, ".csv": mutated_csv}


def outcome(path: Path) -> str:
    """'read' or 'refused'; anything else raises out of the test."""
    try:
        array = load_array(path, max_bytes=BUDGET)
    except DataError:
        return "refused"
    assert array.nbytes <= BUDGET, f"{path.name}: {array.nbytes} bytes, past the budget"
    return "read"


def run(tmp: Path, count: int, seed: int = 0) -> dict[str, dict[str, int]]:
    tally: dict[str, dict[str, int]] = {}
    for suffix, make in KINDS.items():
        rng = np.random.default_rng([seed, ord(suffix[1])])
        counts = tally.setdefault(suffix, {"read": 0, "refused": 0})
        for index in range(count):
            path = tmp / f"f{index}{suffix}"
            path.write_bytes(make(rng))
            counts[outcome(path)] += 1
            path.unlink()
    return tally


def test_fuzzed_data_files_are_read_or_refused_with_a_data_error(tmp_path: Path) -> None:
    tally = run(tmp_path, 150)
    for suffix, counts in tally.items():  # the mutations reach both outcomes
        assert counts["read"] > 0 and counts["refused"] > 0, (suffix, counts)


@pytest.mark.parametrize("header", [h for h in _HEADERS if h != b"()"])  # () is a 0-d array
def test_each_hostile_shape_is_refused(tmp_path: Path, header: bytes) -> None:
    text = b"{'descr': '<f8', 'fortran_order': False, 'shape': " + header + b", }"
    text += b" " * (-(len(text) + 11) % 64) + b"\n"
    path = tmp_path / "x.npy"
    path.write_bytes(b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text + bytes(64))
    with pytest.raises(DataError, match=r"x\.npy: "):
        load_array(path, max_bytes=BUDGET)


if __name__ == "__main__":  # a larger run, for the record
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        print(run(Path(folder), int(sys.argv[1]) if len(sys.argv) > 1 else 1000))
