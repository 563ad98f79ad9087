"""``zoo train``: each variant on MNIST-1D at its own input_dim.

Recipe: AdamW, a linear warm-up then cosine decay (per step), label smoothing, the table's dropout
and the paper's stochastic depth (both live in the network). Every random draw of an epoch (the
shuffle, dropout, stochastic depth) comes from seeds that are a pure function of ``(seed, epoch)``,
so the run is deterministic for a given seed, thread count and machine, and a run resumed from an
epoch's checkpoint ends with the same bits as one that never stopped.

Progressive training (``grow_from``, the ablation study's): the first epochs see MNIST-1D at a
smaller input width, growing to the variant's own by the last epoch; when the width grows, the
stem's weight is resampled along its input axis (:func:`grow_input`).

The checkpoint (``NAME.ckpt.safetensors``, written after every epoch) is safetensors too: the
model's and AdamW's tensors, with the epoch, history and recipe as JSON metadata. At the end
``NAME.safetensors`` (the state dict) and ``NAME.train.json`` are written atomically and the
checkpoint is removed.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError, WeightsError
from ..fsutil import atomic_write_json
from ..versions import toolchain_versions
from . import data as ds
from .config import resolve_variant, variant_config
from .init import create
from .layers import DenseEfficientNet
from .scaling import Variant, round_filters
from .weights import SUFFIX, parse_state, read_bytes, save_weights

# Defaults measured to keep `zoo train --all` inside an hour on two CPU cores (README).
DEFAULT_EPOCHS = 6
CKPT_SUFFIX = ".ckpt.safetensors"
RECORD_SUFFIX = ".train.json"
EVAL_BATCH = 1000
EPOCH_SEED_STRIDE = 1_000_003


@dataclass(frozen=True)
class Recipe:
    epochs: int = DEFAULT_EPOCHS
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 0.05
    label_smoothing: float = 0.1
    warmup_fraction: float = 0.05
    seed: int = 0

    def __post_init__(self):
        if not isinstance(self.epochs, int) or self.epochs < 1:
            raise InputError(f"epochs must be a positive integer, got {self.epochs!r}")
        if not isinstance(self.batch_size, int) or self.batch_size < 2:
            raise InputError(f"batch size must be an integer >= 2, got {self.batch_size!r}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise InputError(f"seed must be a non-negative integer, got {self.seed!r}")

    def lr_at(self, step: int, total: int) -> float:
        """Linear warm-up over the first ``warmup_fraction`` of the steps, then cosine to zero."""
        warm = max(1, int(total * self.warmup_fraction))
        if step < warm:
            return self.lr * (step + 1) / warm
        return 0.5 * self.lr * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))


Progress = Callable[[dict], None]


def paths(out: str | os.PathLike, name: str) -> dict[str, Path]:
    out = Path(out)
    return {"weights": out / f"{name}{SUFFIX}", "record": out / f"{name}{RECORD_SUFFIX}",
            "checkpoint": out / f"{name}{CKPT_SUFFIX}"}


@torch.no_grad()
def evaluate(model: torch.nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    """Top-1 (a fraction) of ``model`` in eval mode."""
    was = model.training
    model.eval()
    correct = 0
    for i in range(0, len(x), EVAL_BATCH):
        logits = model(torch.from_numpy(x[i:i + EVAL_BATCH]))
        correct += int((logits.argmax(1).numpy() == y[i:i + EVAL_BATCH]).sum())
    model.train(was)
    return correct / len(x)


def input_schedule(start: int, final: int, epochs: int) -> list[int]:
    """Progressive training's input width per epoch: ``start`` to ``final`` in equal steps (rounded
    to multiples of 8), the last epoch at ``final``."""
    if not isinstance(start, int) or isinstance(start, bool) or not 8 <= start <= final:
        raise InputError(f"the starting input width must be an integer in [8, {final}], got {start!r}")
    if epochs == 1:
        return [final]
    return [min(final, round_filters(start + (final - start) * e / (epochs - 1), 1.0)) if e < epochs - 1 else final
            for e in range(epochs)]


@torch.no_grad()
def grow_input(model: torch.nn.Module, opt: torch.optim.Optimizer | None, width: int) -> None:
    """Widen the network's input to ``width`` features: the stem's weight is resampled along its
    input axis (linear interpolation) and scaled by ``old / width``, so a signal sampled at more
    points gives the stem about the same sum; its AdamW moments restart (their shape changed)."""
    lin = model.stem[0]
    old = lin.in_features
    if width == old:
        return
    w = lin.weight
    new = F.interpolate(w.detach()[:, None, :], size=width, mode="linear", align_corners=True)[:, 0, :]
    lin.weight = torch.nn.Parameter((new * (old / width)).contiguous())  # a new leaf: autograd knows its shape
    lin.in_features = width
    if opt is not None:
        opt.state.pop(w, None)
        for g in opt.param_groups:
            g["params"] = [lin.weight if q is w else q for q in g["params"]]
    model.config = dataclasses.replace(model.config, input_dim=width)


def _save_checkpoint(path: Path, model, opt, meta: dict) -> None:
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    for i, st in opt.state_dict()["state"].items():
        for k, v in st.items():
            tensors[f"optim.{i}.{k}"] = v if torch.is_tensor(v) else torch.tensor(v)
    save_weights(tensors, path, metadata={"zoo.checkpoint": json.dumps(meta, sort_keys=True)})


def read_checkpoint_meta(path: Path) -> dict:
    """A checkpoint's epoch, history, recipe and dataset (its JSON metadata; a typed error when unreadable)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), "pt") as f:
            meta = json.loads((f.metadata() or {})["zoo.checkpoint"])
    except Exception as e:  # noqa: BLE001 - safetensors' own errors are untyped: one line, as for weights
        raise WeightsError(f"{path}: not a readable checkpoint ({type(e).__name__}: {str(e)[:120]})") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("epoch"), int):
        raise WeightsError(f"{path}: not a readable checkpoint (no epoch in its metadata)")
    return meta


def _load_checkpoint(path: Path, model, opt) -> dict:
    state = parse_state(read_bytes(path), str(path))
    meta = read_checkpoint_meta(path)
    model.load_state_dict({k[6:]: v for k, v in state.items() if k.startswith("model.")}, strict=True)
    osd = opt.state_dict()
    per: dict[int, dict] = {}
    for k, v in state.items():
        if k.startswith("optim."):
            _, i, name = k.split(".", 2)
            per.setdefault(int(i), {})[name] = v
    osd["state"] = per
    opt.load_state_dict(osd)
    return meta


def train(name: str | Variant, out: str | os.PathLike, recipe: Recipe = Recipe(), *, samples: int = ds.DEFAULT_SAMPLES,
          data_seed: int = ds.DEFAULT_SEED, resume: bool = False, stop_after: int | None = None,
          data: dict[str, np.ndarray] | None = None, grow_from: int | None = None,
          progress: Progress = lambda e: None) -> dict | None:
    """Train ``name`` and write its weights and record into ``out``; returns the record.

    ``resume``: continue from ``NAME.ckpt.safetensors`` when it exists (its recipe and dataset must
    match). ``stop_after``: stop after that many epochs, leaving the checkpoint (returns None) --
    what an interrupted run leaves behind. ``name`` may be a :class:`Variant` (any scaled network,
    e.g. the scaling study's), whose ``name`` then names the files. ``grow_from``: train
    progressively, from that input width to the variant's (:func:`input_schedule`).
    """
    variant = resolve_variant(name)
    name = variant.name
    params = ds.DatasetParams(variant.input_dim, samples, data_seed)
    schedule = (input_schedule(grow_from, variant.input_dim, recipe.epochs) if grow_from is not None
                else [variant.input_dim] * recipe.epochs)
    p = paths(out, name)
    progress({"event": "data", "model": name, "dataset": params.to_dict()})
    data = data if data is not None else ds.generate(params)
    dataset = params.to_dict() | {"sha256": ds.dataset_sha256(data), "train": len(data["y"]),
                                  "test": len(data["y_test"])}
    by_width = {variant.input_dim: data}  # progressive training: the same digits at each width
    y = torch.from_numpy(data["y"])

    resuming = resume and p["checkpoint"].exists()
    if resuming:  # every tensor comes from the checkpoint: the seeded initialisation would be overwritten
        model = DenseEfficientNet(variant_config(variant, ds.NUM_CLASSES, input_dim=schedule[0])).train()
    else:
        model = create(variant, num_classes=ds.NUM_CLASSES, seed=recipe.seed, input_dim=schedule[0]).train()
    opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    steps_per_epoch = math.ceil(len(y) / recipe.batch_size)
    total = steps_per_epoch * recipe.epochs
    meta = {"epoch": 0, "history": [], "wall_s": 0.0, "recipe": asdict(recipe), "dataset": dataset}
    if grow_from is not None:
        meta["progressive"] = {"input_dims": schedule}
    if resuming:
        saved = read_checkpoint_meta(p["checkpoint"])  # checked before its tensors meet the model
        for k in ("recipe", "dataset", "progressive"):
            if saved.get(k) != meta.get(k):
                raise InputError(f"{p['checkpoint']}: made with another {k} ({saved.get(k)}); give the same options "
                                 f"or remove the checkpoint")
        done = saved.get("epoch")
        if grow_from is not None and isinstance(done, int) and 1 <= done <= recipe.epochs:
            grow_input(model, opt, schedule[done - 1])  # the stem as it was saved
        meta = _load_checkpoint(p["checkpoint"], model, opt)
        progress({"event": "resume", "model": name, "epoch": meta["epoch"]})
    elif p["checkpoint"].exists():
        raise InputError(f"{p['checkpoint']} exists: an interrupted run; continue it with --resume, or remove it")

    threads = torch.get_num_threads()
    for epoch in range(meta["epoch"], recipe.epochs):
        if stop_after is not None and epoch >= stop_after:
            return None
        t0 = time.perf_counter()
        width = schedule[epoch]
        if width not in by_width:
            by_width[width] = ds.generate(ds.DatasetParams(width, samples, data_seed))
        grow_input(model, opt, width)
        at = by_width[width]
        x = torch.from_numpy(at["x"])
        torch.manual_seed(recipe.seed * EPOCH_SEED_STRIDE + epoch)  # dropout, stochastic depth
        order = torch.randperm(len(y), generator=torch.Generator().manual_seed(recipe.seed * EPOCH_SEED_STRIDE + epoch))
        model.train()
        loss_sum, n = 0.0, 0
        for s in range(steps_per_epoch):
            idx = order[s * recipe.batch_size:(s + 1) * recipe.batch_size]
            lr = recipe.lr_at(epoch * steps_per_epoch + s, total)
            for g in opt.param_groups:
                g["lr"] = lr
            loss = F.cross_entropy(model(x[idx]), y[idx], label_smoothing=recipe.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.item() * len(idx)
            n += len(idx)
            progress({"event": "step", "model": name, "epoch": epoch + 1, "epochs": recipe.epochs, "step": s + 1,
                      "steps": steps_per_epoch, "loss": loss_sum / n, "elapsed_s": time.perf_counter() - t0})
        top1 = evaluate(model, at["x_test"], at["y_test"])
        wall = time.perf_counter() - t0
        meta["history"].append({"epoch": epoch + 1, "loss": loss_sum / n, "test_top1": top1, "lr_end": lr,
                                "wall_s": wall, "threads": threads}
                               | ({"input_dim": width} if grow_from is not None else {}))
        meta["epoch"] = epoch + 1
        meta["wall_s"] += wall
        _save_checkpoint(p["checkpoint"], model, opt, meta)
        progress({"event": "epoch", "model": name, **meta["history"][-1], "epochs": recipe.epochs})

    model.eval()
    weights = save_weights(model, p["weights"])
    record = {
        "model": name,
        "task": "mnist1d",
        "num_classes": ds.NUM_CLASSES,
        "flavor": "paper",
        "input_dim": variant.input_dim,
        "init_seed": recipe.seed,
        "recipe": asdict(recipe) | {"optimizer": "AdamW", "schedule": "linear warm-up, cosine decay (per step)",
                                    "dropout": variant.dropout, "stochastic_depth": 0.2},
        "dataset": dataset,
        "epochs": recipe.epochs,
        "wall_s": meta["wall_s"],
        "threads": threads,
        "history": meta["history"],
        "final_top1": meta["history"][-1]["test_top1"],
        "weights": {"path": p["weights"].name, "sha256": weights["sha256"], "bytes": weights["bytes"]},
        "toolchain": toolchain_versions(),
        **({"progressive": meta["progressive"]} if grow_from is not None else {}),
    }
    atomic_write_json(p["record"], record)
    p["checkpoint"].unlink(missing_ok=True)
    return record

