"""``zoo train``: each variant on MNIST-1D at its own input_dim.

Recipe: AdamW, a linear warm-up then cosine decay (per step), label smoothing, the table's dropout
and the paper's stochastic depth (both live in the network). Every random draw of an epoch (the
shuffle, dropout, stochastic depth) comes from seeds that are a pure function of ``(seed, epoch)``,
so the run is deterministic for a given seed, thread count and machine, and a run resumed from an
epoch's checkpoint ends with the same bits as one that never stopped.

The checkpoint (``NAME.ckpt.safetensors``, written after every epoch) is safetensors too: the
model's and AdamW's tensors, with the epoch, history and recipe as JSON metadata. At the end
``NAME.safetensors`` (the state dict) and ``NAME.train.json`` are written atomically and the
checkpoint is removed.
"""

from __future__ import annotations

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

from ..errors import InputError
from ..fsutil import atomic_write_json
from ..versions import toolchain_versions
from . import data as ds
from .config import resolve_variant
from .init import create
from .scaling import Variant
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


def _save_checkpoint(path: Path, model, opt, meta: dict) -> None:
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    for i, st in opt.state_dict()["state"].items():
        for k, v in st.items():
            tensors[f"optim.{i}.{k}"] = v if torch.is_tensor(v) else torch.tensor(v)
    save_weights(tensors, path, metadata={"zoo.checkpoint": json.dumps(meta, sort_keys=True)})


def _load_checkpoint(path: Path, model, opt) -> dict:
    state = parse_state(read_bytes(path), str(path))
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        meta = json.loads((f.metadata() or {})["zoo.checkpoint"])
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
          data: dict[str, np.ndarray] | None = None, progress: Progress = lambda e: None) -> dict | None:
    """Train ``name`` and write its weights and record into ``out``; returns the record.

    ``resume``: continue from ``NAME.ckpt.safetensors`` when it exists (its recipe and dataset must
    match). ``stop_after``: stop after that many epochs, leaving the checkpoint (returns None) --
    what an interrupted run leaves behind. ``name`` may be a :class:`Variant` (any scaled network,
    e.g. the scaling study's), whose ``name`` then names the files.
    """
    variant = resolve_variant(name)
    name = variant.name
    params = ds.DatasetParams(variant.input_dim, samples, data_seed)
    p = paths(out, name)
    progress({"event": "data", "model": name, "dataset": params.to_dict()})
    data = data if data is not None else ds.generate(params)
    dataset = params.to_dict() | {"sha256": ds.dataset_sha256(data), "train": len(data["y"]),
                                  "test": len(data["y_test"])}
    x, y = torch.from_numpy(data["x"]), torch.from_numpy(data["y"])

    model = create(variant, num_classes=ds.NUM_CLASSES, seed=recipe.seed).train()
    opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    steps_per_epoch = math.ceil(len(y) / recipe.batch_size)
    total = steps_per_epoch * recipe.epochs
    meta = {"epoch": 0, "history": [], "wall_s": 0.0, "recipe": asdict(recipe), "dataset": dataset}
    if resume and p["checkpoint"].exists():
        saved = _load_checkpoint(p["checkpoint"], model, opt)
        for k in ("recipe", "dataset"):
            if saved[k] != meta[k]:
                raise InputError(f"{p['checkpoint']}: made with another {k} ({saved[k]}); give the same options or "
                                 f"remove the checkpoint")
        meta = saved
        progress({"event": "resume", "model": name, "epoch": meta["epoch"]})
    elif p["checkpoint"].exists():
        raise InputError(f"{p['checkpoint']} exists: an interrupted run; continue it with --resume, or remove it")

    threads = torch.get_num_threads()
    for epoch in range(meta["epoch"], recipe.epochs):
        if stop_after is not None and epoch >= stop_after:
            return None
        t0 = time.perf_counter()
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
        top1 = evaluate(model, data["x_test"], data["y_test"])
        wall = time.perf_counter() - t0
        meta["history"].append({"epoch": epoch + 1, "loss": loss_sum / n, "test_top1": top1, "lr_end": lr,
                                "wall_s": wall, "threads": threads})
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
    }
    atomic_write_json(p["record"], record)
    p["checkpoint"].unlink(missing_ok=True)
    return record

