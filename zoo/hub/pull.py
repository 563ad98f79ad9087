"""Pulling: list what a source offers, check every name and precision, then bring each model
into the cache verified (one model's blobs and view: :mod:`zoo.hub.modelpull`)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from ..errors import InputError, ManifestError
from ..jsonio import dumps as strict_json
from ..spec import FILE_PRECISIONS as PRECISIONS
from . import config
from .cache import Cache, file_errors
from .config import (
    OFFLINE_ENV,
    Deadline,
    OfflineError,
    Progress,
    SourceError,
    UnknownModelError,
    first_line,
    offline,
    quiet,
)
from .modelpull import WEIGHT_ROLES, ModelPull, PullResult
from .source import Source, parse_manifest, resolve_source
from . import resolve


def offered(manifest: dict) -> str:
    return ", ".join(m["model"] for m in manifest["models"]) or "no models"


def find_entry(manifest: dict, name: str, src) -> dict:
    for m in manifest["models"]:
        if m["model"] == name:
            return m
    raise UnknownModelError(f"model {name!r} is not offered by {src}; it offers: {offered(manifest)}")


def _model_record(entry: dict, precision: str, src: Source) -> dict:
    if precision not in PRECISIONS:
        raise InputError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    cands = [f for f in entry["files"] if f["role"] == "model" and f["precision"] == precision]
    cands.sort(key=lambda f: (f["path"] != entry["model_path"], not f["path"].endswith(".onnx")))
    if not cands:
        have = sorted({f["precision"] for f in entry["files"] if f["role"] == "model"})
        raise UnknownModelError(f"{entry['model']} has no {precision} model at {src}; it has: {', '.join(have)}")
    return cands[0]


def _manifest(src: Source, cache: Cache, progress: Progress, budget: Deadline) -> dict:
    """The source's manifest: fetched (online), or the last verified copy in the cache (offline)."""
    if src.remote and offline():
        where = str(cache.source_key_path(src.key))
        try:
            raw = cache.read_source_record(src.key)
        except OSError as e:
            raise ManifestError(f"{where}: unreadable ({first_line(e)})") from None
        if raw is None:
            raise OfflineError(f"{OFFLINE_ENV}=1 and the cache {cache.root} holds no manifest from {src}; "
                               "pull once online first")
        return parse_manifest(raw, where)
    try:
        return src.read_manifest(progress, budget)
    except SourceError as e:
        if src.remote and cache.read_source_record_quietly(src.key) is not None:
            raise SourceError(f"{e}; set {OFFLINE_ENV}=1 to use what is cached") from None
        raise


def list_models(source: str | os.PathLike | None = None, *, cache_dir=None, progress: Progress = quiet) -> list[dict]:
    """What ``source`` offers: one summary per model (name, precisions, params, sizes, hashes)."""
    src = resolve_source(source)
    with Cache(cache_dir) as cache:
        manifest = _manifest(src, cache, progress, Deadline())
    rows = []
    for m in manifest["models"]:
        models = [f for f in m["files"] if f["role"] == "model"]
        rows.append({
            "name": m["model"], "flavor": m["flavor"], "input_dim": m["scaling"]["input_dim"],
            "num_classes": m["num_classes"], "params": m["params"], "flops": m["flops"],
            "opset_version": m["opset_version"],
            "precisions": [p for p in PRECISIONS if any(f["precision"] == p for f in models)],
            "model_bytes": m["metadata"]["model_bytes"], "model_sha": m["metadata"]["model_sha"],
            "tags": m["metadata"]["tags"],
            "files": {f"{f['precision']}:{f['role']}": f["bytes"] for f in m["files"]},
        })
    return rows


def pull(names: Iterable[str] | None = None, source: str | os.PathLike | None = None, precision: str = "fp32", *,
         with_test_data: bool = False, with_weights: bool = False, cache_dir=None,
         progress: Progress = quiet, lock=None, trust=None) -> list[PullResult]:
    """Bring ``names`` (all models when None) into the cache, verified; return where they are.

    Every name and precision is checked against the source's manifest before anything is written.
    A failed model leaves the cache as it was before that model; models pulled before it stay.
    The whole pull ends within ``$ZOO_DEADLINE`` seconds. ``with_weights``: also the safetensors
    weights and training record of a model built from them (roles in :data:`WEIGHT_ROLES`).
    ``NAME@V``, ``NAME@sha256:...``, ``lock`` and ``trust`` pin and verify first: :mod:`zoo.hub.resolve`.
    """
    src = resolve_source(source if source not in (None, "") or not lock else resolve.lock_source(lock))
    budget = Deadline()
    names = [names] if isinstance(names, str) else names
    with Cache(cache_dir) as cache:
        key = resolve.trusted_key(src, trust)
        if resolve.wanted(names, lock, key):  # a pinned or trusted pull: through the mirror's index
            res = resolve.resolve(src, cache, names, lock=lock, key=key, progress=progress, budget=budget,
                                  root_manifest=lambda: _manifest(src, cache, progress, budget))
            return _pull_plans(src, cache, res.tuples(), precision, with_test_data, with_weights, progress, budget, res.commit)
        manifest = _manifest(src, cache, progress, budget)
        if names is not None:
            names = list(dict.fromkeys(names))
            if not names:
                raise InputError("no model names given (pass None for every model the source offers)")
        else:
            names = [m["model"] for m in manifest["models"]]
            if not names:
                raise UnknownModelError(f"{src} offers no models")
        plans = [(manifest, find_entry(manifest, name, src), False) for name in names]
        return _pull_plans(src, cache, plans, precision, with_test_data, with_weights, progress, budget, None)


def _pull_plans(src, cache, plans, precision, with_test_data, with_weights, progress, budget, commit) -> list[PullResult]:
    plans = [(m, e, _model_record(e, precision, src), by_blob) for m, e, by_blob in plans]  # every check first
    results = []
    with file_errors(f"cannot pull into the cache {cache.root}"):
        for manifest, entry, model_rec, by_blob in plans:
            results.append(ModelPull(src, cache, manifest, entry, model_rec, progress, budget, by_blob).run(with_test_data, with_weights))
            if commit is None and src.remote and not offline():  # what ZOO_OFFLINE=1 will work from
                cache.save_source_record(src.key, (strict_json(manifest) + "\n").encode())
        if commit is not None:
            commit(cache, src)
    return results


def load(name: str, source: str | os.PathLike | None = None, precision: str = "fp32", *,
         with_test_data: bool = False, role: str = "model", cache_dir=None, progress: Progress = quiet,
         lock=None, trust=None) -> Path:
    """The path of ``name``'s verified model file in the cache, pulling it first when needed;
    with ``role="weights"`` (or ``"train_record"``) the published safetensors state dict (or its
    training record) instead, e.g. ``zoo.create(name, weights=zoo.hub.load(name, src, role="weights"))``.

    Cached files are re-verified against the source's manifest on every call.
    """
    if role not in ("model", *WEIGHT_ROLES):
        raise InputError(f"unknown role {role!r}; valid: model, {', '.join(WEIGHT_ROLES)}")
    res = pull([name], source, precision, with_test_data=with_test_data, with_weights=role != "model",
               cache_dir=cache_dir, progress=progress, lock=lock, trust=trust)[0]
    if role == "model":
        return res.path
    rec = next((f for f in res.files if f["role"] == role), None)
    if rec is None:
        raise UnknownModelError(f"{name} was published without a {role} file (built from seeded weights)")
    return res.view / rec["path"]


__all__ = ["PullResult", "WEIGHT_ROLES", "config", "find_entry", "list_models", "load", "offered", "pull"]
