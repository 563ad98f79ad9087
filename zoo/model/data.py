"""The reference task: MNIST-1D, generated offline by the ``mnist1d`` package at any input width.

``mnist1d.data.make_dataset`` draws every digit from a seed (its download path is never used).
Its random draws do not depend on ``final_seq_length``, so the same digits are sampled at each
variant's input_dim (256 ... 688): the variants' *resolution* scaling becomes real.

The split is the package's (the first 80 % train, the rest test, after its seeded shuffle). Arrays
``x``/``x_test`` are float32 ``[n, input_dim]``, ``y``/``y_test`` int64. The ``.npz`` file is
written with fixed zip timestamps, so its sha256 names the data: same parameters, same hash.
"""

from __future__ import annotations

import io
import os
import random
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..fsutil import atomic_write_bytes, sha256_bytes

NAME = "mnist1d"
# The original set has 4,000 train samples: too few for B7. 40,000 (32,000 train, 8,000 test)
# keeps `zoo train --all` inside an hour on two CPU cores (see the README's measurements).
DEFAULT_SAMPLES = 40_000
DEFAULT_SEED = 42  # the mnist1d package's own default
ARRAYS = ("x", "y", "x_test", "y_test")
MIN_SAMPLES = 100
NUM_CLASSES = 10


@dataclass(frozen=True)
class DatasetParams:
    input_dim: int
    samples: int = DEFAULT_SAMPLES
    seed: int = DEFAULT_SEED

    def __post_init__(self):
        for k in ("input_dim", "samples", "seed"):
            v = getattr(self, k)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise InputError(f"{k} must be a non-negative integer, got {v!r}")
        if self.input_dim < 8:
            raise InputError(f"input_dim must be at least 8, got {self.input_dim}")
        if self.samples < MIN_SAMPLES:
            raise InputError(f"samples must be at least {MIN_SAMPLES} (10 classes, a test split), got {self.samples}")

    def to_dict(self) -> dict:
        return {"name": NAME, **asdict(self)}


def generate(params: DatasetParams) -> dict[str, np.ndarray]:
    """The arrays of ``params``; the global ``random``/``numpy.random`` states are left as found
    (the package seeds and draws from them)."""
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples = params.samples
    args.final_seq_length = params.input_dim
    args.seed = params.seed
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        d = make_dataset(args)
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    return {"x": d["x"].astype(np.float32), "y": d["y"].astype(np.int64),
            "x_test": d["x_test"].astype(np.float32), "y_test": d["y_test"].astype(np.int64)}


def npz_bytes(data: dict[str, np.ndarray]) -> bytes:
    """A deterministic ``.npz``: fixed member order and timestamps (``np.savez`` stamps the time)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as z:
        for k in ARRAYS:
            member = io.BytesIO()
            np.lib.format.write_array(member, np.ascontiguousarray(data[k]), allow_pickle=False)
            z.writestr(zipfile.ZipInfo(f"{k}.npy", date_time=(1980, 1, 1, 0, 0, 0)), member.getvalue())
    return buf.getvalue()


def dataset_sha256(data: dict[str, np.ndarray]) -> str:
    return sha256_bytes(npz_bytes(data))


def write_npz(data: dict[str, np.ndarray], path: str | os.PathLike) -> str:
    """Write atomically; returns the file's sha256."""
    blob = npz_bytes(data)
    atomic_write_bytes(path, blob)
    return sha256_bytes(blob)


def load_npz(path: str | os.PathLike, input_dim: int | None = None) -> dict[str, np.ndarray]:
    """An evaluation/training set from ``.npz`` (no pickles), checked: the four arrays, 2-D inputs
    of ``input_dim`` features, integer labels in 0..9, matching lengths. Bad files: ValueError."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such dataset file")
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: np.array(z[k]) for k in ARRAYS if k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise InputError(f"{path}: not a readable .npz dataset: {str(e)[:200]}") from None
    missing = [k for k in ARRAYS if k not in data]
    if missing:
        raise InputError(f"{path}: missing array(s) {', '.join(missing)} (need x, y, x_test, y_test)")
    for xs, ys in (("x", "y"), ("x_test", "y_test")):
        x, y = data[xs], data[ys]
        if x.ndim != 2 or y.ndim != 1 or len(x) != len(y) or not len(x):
            raise InputError(f"{path}: {xs} must be [n, features] and {ys} [n], got {list(x.shape)} and {list(y.shape)}")
        if input_dim is not None and x.shape[1] != input_dim:
            raise InputError(f"{path}: {xs} has {x.shape[1]} features, the model takes {input_dim}")
        if not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= NUM_CLASSES:
            raise InputError(f"{path}: {ys} must hold integer classes 0..{NUM_CLASSES - 1}")
        if not np.isfinite(x).all():
            raise InputError(f"{path}: {xs} holds NaN or Inf")
    return {"x": data["x"].astype(np.float32), "y": data["y"].astype(np.int64),
            "x_test": data["x_test"].astype(np.float32), "y_test": data["y_test"].astype(np.int64)}


@dataclass(frozen=True)
class EvalSet:
    """The test split a build measures accuracy on, and where it came from."""

    name: str  # "mnist1d", or the .npz file's name
    sha256: str
    x_test: np.ndarray
    y_test: np.ndarray
    params: dict | None = None  # the generator's parameters, when regenerated from a training record
    # The training split of the same set: what calibrates and judges a quantisation search
    # (zoo.exporters.quant_search), never the test split above that the accuracy gate reports on.
    x_train: np.ndarray | None = field(default=None, repr=False, compare=False)
    y_train: np.ndarray | None = field(default=None, repr=False, compare=False)

    def describe(self) -> dict:
        return {"name": self.name, "sha256": self.sha256, "samples": len(self.y_test),
                **({"params": self.params} if self.params else {})}


def record_path(weights: str | os.PathLike) -> Path:
    """``NAME.safetensors`` -> ``NAME.train.json`` (what ``zoo train`` writes beside it)."""
    p = Path(weights)
    return p.with_name(p.name.removesuffix(".safetensors") + ".train.json")


def read_record(path: str | os.PathLike) -> dict:
    """A ``NAME.train.json``, checked enough to regenerate its dataset; ValueError when unusable."""
    import json

    try:
        rec = json.loads(Path(path).read_text())
        d = rec["dataset"]
        DatasetParams(d["input_dim"], d["samples"], d["seed"])
        if not isinstance(d["sha256"], str):
            raise TypeError("dataset sha256 is not a string")
        return rec
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise InputError(f"{path}: not a usable training record: {e}") from None


_CACHE: dict[tuple, EvalSet] = {}


def eval_set(input_dim: int, eval_data: str | os.PathLike | None = None,
             weights: str | os.PathLike | None = None) -> EvalSet | None:
    """``--eval-data FILE.npz``, else the dataset named by the ``.train.json`` beside ``weights``
    (regenerated, its sha256 checked), else None. Cached: the build and its steps share one copy."""
    if eval_data is not None:
        key = ("file", str(Path(eval_data).resolve()), input_dim)
        if key not in _CACHE:
            data = load_npz(eval_data, input_dim)
            _CACHE[key] = EvalSet(Path(eval_data).name, dataset_sha256(data), data["x_test"], data["y_test"],
                                  x_train=data["x"], y_train=data["y"])
        return _CACHE[key]
    if weights is None or not record_path(weights).is_file():
        return None
    d = read_record(record_path(weights))["dataset"]
    params = DatasetParams(d["input_dim"], d["samples"], d["seed"])
    if params.input_dim != input_dim:
        raise InputError(f"{record_path(weights)}: trained at input_dim {params.input_dim}, the model takes {input_dim}")
    key = ("gen", params)
    if key not in _CACHE:
        data = generate(params)
        sha = dataset_sha256(data)
        if sha != d["sha256"]:
            raise InputError(f"{record_path(weights)}: the regenerated {NAME} set has sha256 {sha[:12]}, the record "
                             f"says {d['sha256'][:12]} (another mnist1d or numpy?); give --eval-data FILE.npz")
        _CACHE[key] = EvalSet(NAME, sha, data["x_test"], data["y_test"], params.to_dict(), data["x"], data["y"])
    return _CACHE[key]
