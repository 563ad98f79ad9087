"""A trial as data: (network shape, seed, budget) -> one JSON record.

A trial is an independent job: :func:`run_trial` takes a plain dict (so a process pool or a Ray
worker can ship it) and returns the record; the driver writes it atomically to
``OUT/trials/ID.json``. A study resumes by reading those records back: a record is reused only when
it is valid and was made from exactly the same trial (shape, seed, budget, recipe).

Every trial trains with :func:`zoo.model.train.train` -- the recipe ``zoo train`` uses -- with only
``epochs`` and ``seed`` set from the trial. ``seed`` seeds the initialisation, the shuffle, dropout
and stochastic depth; the data set (MNIST-1D at the trial's input_dim) is the same for every seed,
so the spread over seeds is the noise of training, not of the data.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import InputError
from ..model import data as ds
from ..model.arch import Arch
from ..model.config import network_config
from ..model.scaling import Variant, check_positive, input_dim_for

RECORD_SCHEMA = "zoo.study.trial/1"
# Every trial keeps B0's dropout: the recipe is the same for all, only the shape changes.
STUDY_DROPOUT = 0.2
NUM_CLASSES = ds.NUM_CLASSES
TRIALS_DIR = "trials"
WORK_DIR = "work"


@dataclass(frozen=True)
class Budget:
    """What each trial may spend: epochs over ``samples`` MNIST-1D samples (80 % train)."""

    epochs: int
    samples: int
    data_seed: int = ds.DEFAULT_SEED

    def __post_init__(self):
        if not isinstance(self.epochs, int) or isinstance(self.epochs, bool) or self.epochs < 1:
            raise InputError(f"epochs must be a positive integer, got {self.epochs!r}")
        ds.DatasetParams(256, self.samples, self.data_seed)  # validates samples and the seed


@dataclass(frozen=True)
class Shape:
    """What a study point trains: a dense EfficientNet's depth and width multipliers over B0 and a
    resolution; for the ablation study also architecture options (:class:`Arch`: no SE, ReLU, a
    baseline body) and progressive training (``grow_from``: the input width of the first epoch)."""

    depth: float
    width: float
    resolution: int
    arch: Arch = Arch()
    grow_from: int | None = None

    def __post_init__(self):
        check_positive("depth", self.depth)
        check_positive("width", self.width)
        if not isinstance(self.resolution, int) or self.resolution < 1:
            raise InputError(f"resolution must be a positive integer, got {self.resolution!r}")
        if not isinstance(self.arch, Arch):
            raise InputError(f"arch must be an Arch, got {self.arch!r}")
        if self.grow_from is not None and (not isinstance(self.grow_from, int) or isinstance(self.grow_from, bool)
                                           or not 8 <= self.grow_from < self.input_dim):
            raise InputError(f"grow_from must be an integer input width in [8, {self.input_dim}), got {self.grow_from!r}")

    @property
    def input_dim(self) -> int:
        return input_dim_for(self.resolution)

    @property
    def tag(self) -> str:
        """'' for a plain scaled shape; the options otherwise (ids, labels)."""
        return "-".join(t for t in (self.arch.tag, f"grow{self.grow_from}" if self.grow_from else "") if t)

    def to_dict(self) -> dict:
        """depth, width, resolution; the ablation's options only where set (so the scaling study's
        records keep their exact form)."""
        return ({"depth": self.depth, "width": self.width, "resolution": self.resolution}
                | ({"arch": self.arch.options()} if not self.arch.is_default else {})
                | ({"grow_from": self.grow_from} if self.grow_from is not None else {}))

    @staticmethod
    def from_dict(d: dict) -> Shape:
        return Shape(d["depth"], d["width"], d["resolution"], Arch.from_options(d.get("arch")), d.get("grow_from"))

    def config(self):
        return network_config(self.input_dim, depth_multiplier=self.depth, width_multiplier=self.width,
                              num_classes=NUM_CLASSES, dropout=STUDY_DROPOUT, arch=self.arch)

    def flops(self) -> int:
        return self.config().flops()

    def variant(self, name: str) -> Variant:
        return Variant(name, self.width, self.depth, self.resolution, STUDY_DROPOUT, self.input_dim, arch=self.arch)


BASE_SHAPE = Shape(1.0, 1.0, 224)  # dense_b0


@dataclass(frozen=True)
class Trial:
    shape: Shape
    seed: int
    budget: Budget

    def __post_init__(self):
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise InputError(f"seed must be a non-negative integer, got {self.seed!r}")

    @property
    def id(self) -> str:
        """Readable and unique: the file name of the record, the same in every study."""
        s, b = self.shape, self.budget
        return (f"d{s.depth:g}-w{s.width:g}-r{s.resolution}" + (f"-{s.tag}" if s.tag else "")
                + f"-s{self.seed}-e{b.epochs}-n{b.samples}"
                + ("" if b.data_seed == ds.DEFAULT_SEED else f"-ds{b.data_seed}"))

    def to_dict(self) -> dict:
        return {"id": self.id, "shape": self.shape.to_dict(), "seed": self.seed, "budget": asdict(self.budget)}

    @staticmethod
    def from_dict(d: dict) -> Trial:
        return Trial(Shape.from_dict(d["shape"]), d["seed"], Budget(**d["budget"]))


def recipe_for(trial: Trial) -> dict:
    """The training recipe of a trial, as recorded (``zoo train``'s, with the trial's epochs and seed)."""
    from ..model.train import Recipe

    return asdict(Recipe(epochs=trial.budget.epochs, seed=trial.seed))


def record_path(out: str | os.PathLike, trial: Trial) -> Path:
    return Path(out) / TRIALS_DIR / f"{trial.id}.json"


_REQUIRED = {"schema": str, "trial": dict, "config": dict, "params": int, "flops": int, "epochs": int,
             "top1": float, "history": list, "wall_s": float, "seed": int, "recipe": dict, "dataset": dict,
             "toolchain": dict}


def check_record(rec, trial: Trial | None = None) -> str | None:
    """Why ``rec`` is not a usable record (of ``trial``, when given), or None when it is."""
    if not isinstance(rec, dict):
        return "not a JSON object"
    for key, typ in _REQUIRED.items():
        if not isinstance(rec.get(key), typ) or isinstance(rec.get(key), bool):
            return f"field {key!r} missing or not {typ.__name__}"
    if rec["schema"] != RECORD_SCHEMA:
        return f"schema {rec['schema']!r}, expected {RECORD_SCHEMA!r}"
    if not 0.0 <= rec["top1"] <= 1.0 or len(rec["history"]) != rec["epochs"]:
        return "top1 outside [0, 1] or history length != epochs"
    if trial is not None:
        if rec["trial"] != trial.to_dict():
            return "made for another trial"
        if rec["recipe"] != recipe_for(trial):
            return "made with another training recipe"
    return None


def read_record(out: str | os.PathLike, trial: Trial) -> tuple[dict | None, str | None]:
    """``(record, None)`` for a finished trial; ``(None, why)`` when its record is unusable;
    ``(None, None)`` when there is none."""
    path = record_path(out, trial)
    if not path.is_file():
        return None, None
    try:
        rec = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        return None, f"{path}: unreadable ({str(e)[:80]})"
    why = check_record(rec, trial)
    return (rec, None) if why is None else (None, f"{path}: {why}")


_DATA: dict[ds.DatasetParams, dict] = {}  # per worker process: trials at one input_dim share the arrays


def _dataset(params: ds.DatasetParams) -> dict:
    if params not in _DATA:
        _DATA.clear()  # one set at a time: the largest study sets are tens of MB
        _DATA[params] = ds.generate(params)
    return _DATA[params]


def run_trial(trial_dict: dict, work_root: str | None = None) -> dict:
    """Train one trial and return its record (the caller writes it).

    Runs on one thread (``torch.set_num_threads(1)``), so a result does not depend on how many
    workers share the machine. ``work_root``: where the per-epoch checkpoint lives, so a killed
    study continues an unfinished trial from its last epoch; None: a temporary folder.
    """
    import torch

    from ..model.train import Recipe, train
    from ..versions import toolchain_versions

    trial = Trial.from_dict(trial_dict)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    t0, c0 = time.perf_counter(), time.process_time()
    tmp = None
    try:
        if work_root is None:
            tmp = work = Path(tempfile.mkdtemp(prefix="zoo-trial-"))
        else:
            work = Path(work_root) / trial.id
            work.mkdir(parents=True, exist_ok=True)
        params = ds.DatasetParams(trial.shape.input_dim, trial.budget.samples, trial.budget.data_seed)
        res = train(trial.shape.variant("trial"), work, Recipe(epochs=trial.budget.epochs, seed=trial.seed),
                    samples=params.samples, data_seed=params.seed, resume=True, data=_dataset(params),
                    grow_from=trial.shape.grow_from)
        cfg = trial.shape.config()
        record = {
            "schema": RECORD_SCHEMA,
            "trial": trial.to_dict(),
            "config": {**trial.shape.to_dict(), "input_dim": cfg.input_dim, "dropout": cfg.dropout,
                       "stem_dim": cfg.stem_dim, "head_dim": cfg.head_dim, "blocks": len(cfg.blocks),
                       "stages": [asdict(s) for s in cfg.stages]},
            "params": cfg.params(),
            "flops": cfg.flops(),
            "seed": trial.seed,
            "budget": asdict(trial.budget),
            "recipe": recipe_for(trial),
            "dataset": res["dataset"],
            "epochs": res["epochs"],
            "top1": float(res["final_top1"]),
            "history": [{k: h[k] for k in ("epoch", "loss", "test_top1", "input_dim") if k in h} for h in res["history"]],
            "train_wall_s": float(res["wall_s"]),  # the epochs only (summed over resumed runs)
            "wall_s": time.perf_counter() - t0,  # this job: data, model, epochs
            "cpu_s": time.process_time() - c0,  # the same, in CPU time: what a busy machine does not inflate
            "threads": 1,
            "toolchain": toolchain_versions(),
        }
        shutil.rmtree(work, ignore_errors=True)  # the weights are not kept: the record is the result
        return record
    finally:
        torch.set_num_threads(threads)
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
