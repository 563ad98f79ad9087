"""A pull, one way through, each step a module called once, in order:

1. the source's identity and transport (:mod:`zoo.hub.source`), and its trust anchor
   (:mod:`zoo.hub.trust`);
2. verified metadata (:mod:`zoo.hub.metadata`: python-tuf's client for a TUF mirror);
3. the plan (:mod:`zoo.hub.plan`: which version of which model, which files);
4. fetching blobs into the cache and 5. the view (:mod:`zoo.hub.modelpull`).

The whole command shares one deadline (``$ZOO_DEADLINE``), every precision and model included.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from ..errors import InputError
from ..jsonio import dumps as strict_json
from ..spec import FILE_PRECISIONS as PRECISIONS
from . import config, lockfile, metadata, plan, trust
from .cache import Cache, file_errors
from .config import Deadline, Progress, offline, quiet
from .modelpull import WEIGHT_ROLES, ModelPull, PullResult
from .plan import find_entry, offered  # noqa: F401 - re-exported
from .source import resolve_source


def _names(names) -> list[str] | None:
    if names is None:
        return None
    names = [names] if isinstance(names, str) else list(dict.fromkeys(names))
    if not names:
        raise InputError("no model names given (pass None for every model the source offers)")
    return names


def open_source(source, lock, trust_arg, cache, progress, budget, names=None, versioned: bool = False):
    """Steps 1-2: the source (the lockfile's when none is given), its anchor, its catalogue (the
    mirror's versions for a trusted, pinned or locked request, else its plain manifest)."""
    src = resolve_source(source if source not in (None, "") or not lock else lockfile.read_lock(lock)["source"])
    if hasattr(src, "select"):  # an OCI namespace reads one repository per name asked for
        src.select(names or (list(lockfile.read_lock(lock)["models"]) if lock else None))
    anchor = trust.anchor_for(src, trust_arg, progress)
    versioned = versioned or bool(lock) or any("@" in str(n) for n in names or [])
    return src, metadata.open_catalogue(src, anchor, versioned=versioned, cache=cache, progress=progress,
                                        budget=budget)


def pull(names: Iterable[str] | None = None, source: str | os.PathLike | None = None, precision: str = "fp32", *,
         precisions: Iterable[str] | None = None, with_test_data: bool = False, with_weights: bool = False,
         cache_dir=None, progress: Progress = quiet, lock=None, trust=None, runtime: str | None = None,
         require_verified: str | None = None, budget: Deadline | None = None) -> list[PullResult]:
    """Bring ``names`` (all models when None) into the cache, verified; return where they are.

    ``NAME``, ``NAME@V`` or ``NAME@sha256:...``; ``lock``: a lockfile's exact bytes; ``trust``: a
    trust anchor (the publisher's root.json or root key) for this pull, else ``$ZOO_TRUST``, else
    the trust store. ``runtime`` (``onnxruntime@1.16``): the fastest file verified on that
    runtime (a target at an older opset where the default file does not load there), chosen from the
    version's signed verification records (with an anchor) or the manifest's; ``require_verified``
    (``RUNTIME[@VERSION]``): refuse a file without a passing record for it. Every name and precision
    is checked before anything is written. A failed model leaves the cache as it was before that
    model; models pulled before it stay. The whole pull, every precision included, ends within
    ``$ZOO_DEADLINE`` seconds.
    """
    precs = list(dict.fromkeys(precisions or [precision]))
    for p in precs:
        if p not in PRECISIONS:
            raise InputError(f"unknown precision {p!r}; choose one of {', '.join(PRECISIONS)}")
    names = _names(names)
    budget = budget or Deadline()
    with Cache(cache_dir) as cache:
        picking = runtime is not None or require_verified is not None
        src, cat = open_source(source, lock, trust, cache, progress, budget, names, versioned=picking)
        plans = plan.make(cat, names, lock=lock, cache=cache, progress=progress)
        recs = {id(p): plan.records(cat, p, cache) if picking else None for p in plans}
        jobs = [(p, plan.choose(p, recs[id(p)], prec, runtime, require_verified, src))
                for prec in precs for p in plans]  # every check first
        results = []
        with file_errors(f"cannot pull into the cache {cache.root}"):
            for p, rec in jobs:
                r = ModelPull(src, cache, p.manifest, p.entry, rec, progress, budget, p.by_blob).run(
                    with_test_data, with_weights)
                r.version, r.digest, r.trust = p.version, p.digest, p.trust
                results.append(r)
            if cat.kind == "plain" and src.remote and not offline():  # what ZOO_OFFLINE=1 will work from
                cache.save_source_record(src.key, (strict_json(cat.manifest) + "\n").encode())
        return results


def list_models(source: str | os.PathLike | None = None, *, cache_dir=None, trust=None,
                progress: Progress = quiet) -> list[dict]:
    """What ``source`` offers: one summary per model (its latest version: name, precisions, params,
    sizes, hashes; and every version with its digest and whether it was verified)."""
    budget = Deadline()
    with Cache(cache_dir) as cache:
        src, cat = open_source(source, None, trust, cache, progress, budget)
        if cat.kind == "plain":
            entries = [(m, None) for m in cat.manifest["models"]]
        else:
            entries = [(p.entry, p) for p in plan.make(cat, None, cache=cache, progress=progress)] if cat.versions else []
    from .attest import statements_for, verified_runtimes

    versions = cat.summary()  # a plain read lists no versions: `zoo models` asks list_versions for them
    rows = []
    for m, p in entries:
        recs = (plan.records(cat, p) if p is not None else None) or statements_for(m)
        verified_on: dict[str, set] = {}
        for per_file in verified_runtimes(recs).values():
            for rt, vs in per_file.items():
                verified_on.setdefault(rt, set()).update(vs)
        models = [f for f in m["files"] if f["role"] == "model"]
        rows.append({
            "name": m["model"], "flavor": m["flavor"], "input_dim": m["scaling"]["input_dim"],
            "num_classes": m["num_classes"], "params": m["params"], "flops": m["flops"],
            "opset_version": m["opset_version"],
            "precisions": [p for p in PRECISIONS if any(f["precision"] == p for f in models)],
            "model_bytes": m["metadata"]["model_bytes"], "model_sha": m["metadata"]["model_sha"],
            "tags": m["metadata"]["tags"],
            "files": {f"{f['precision']}:{f['role']}": f["bytes"] for f in m["files"]},
            "versions": versions.get(m["model"], []),
            "trust": "verified" if cat.trusted else "unverified",
            # runtime -> versions a file of the latest version passed parity on (signed records with an anchor)
            "verified_on": {rt: sorted(vs) for rt, vs in sorted(verified_on.items())},
        })
    return rows


def list_versions(source=None, *, cache_dir=None, trust=None, progress: Progress = quiet) -> dict | None:
    """name -> versions (number, digest, signed) of a versioned source, or None for a plain one."""
    with Cache(cache_dir) as cache:
        _, cat = open_source(source, None, trust, cache, progress, Deadline(), versioned=True)
    return None if cat.kind == "plain" else cat.summary()


def lock(names, source=None, out="zoo.lock", *, cache_dir=None, trust=None, progress: Progress = quiet) -> dict:
    """Resolve ``names`` (``NAME``, ``NAME@V``, ``NAME@sha256:...``; every model when None) at
    ``source`` (verified against its trust anchor, if any) and write the lockfile ``out``."""
    budget = Deadline()
    with Cache(cache_dir) as cache:
        src, cat = open_source(source, None, trust, cache, progress, budget, _names(names), versioned=True)
        plans = plan.make(cat, _names(names), cache=cache, progress=progress)
    return lockfile.write_lock(out, src.identity if src.remote else src.shown, [p.entry for p in plans])


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
        from .config import UnknownModelError

        raise UnknownModelError(f"{name} was published without a {role} file (built from seeded weights)")
    return res.view / rec["path"]


__all__ = ["PullResult", "WEIGHT_ROLES", "config", "find_entry", "list_models", "list_versions", "load", "lock",
           "offered", "pull"]
