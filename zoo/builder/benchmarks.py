"""``zoo bench`` as a service: measure the model files of a built zoo and record their latencies."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from ..bench.latency import (
    LatencyOptions,
    default_providers,
    measure_model,
    upsert_latency,
)
from ..errors import (
    ManifestError,
    NotInManifestError,
    ProviderUnavailableError,
    ZooError,
)
from ..fsutil import sha256_file
from ..spec import resolve_provider
from ..verify.backends import OrtBackend
from . import manifest as mf
from .lock import artifacts_lock
from .verification import model_input, reference_model


def bench_artifacts(root, names=None, *, precisions=None, providers=None, options: LatencyOptions = LatencyOptions(),
                    save: bool = True, progress: Callable[[str], None] = lambda m: None) -> dict:
    """Measure the model files of a built zoo (``root/manifest.json``) and record the latencies.

    ``names`` None: every model. ``precisions`` None: every precision each model has; a precision
    asked for by name that a model lacks is an error. ``providers`` None: the CPU plus available
    GPU providers; one asked for and missing is an error before anything is measured. Each file's
    sha256 is checked against the manifest first. With ``save``, the manifest is re-read just
    before writing and only the latency records of the measured models change.
    """
    root = Path(root)
    path = root / mf.MANIFEST_NAME
    manifest = mf.load(path)
    entries = [mf.entry(manifest, n) for n in dict.fromkeys(names)] if names else list(manifest["models"])
    if not entries:
        raise ManifestError(f"{path} lists no models; build some with `zoo build`")
    providers = [resolve_provider(p) for p in providers] if providers else default_providers()
    for p in providers:
        reason = OrtBackend(provider=p).unavailable_reason()
        if reason is not None:
            raise ProviderUnavailableError(reason)
    plan = []
    for entry in entries:
        files = [f for f in entry["files"] if f["role"] == "model" and (precisions is None or f["precision"] in precisions)]
        have = {f["precision"] for f in files}
        missing = [p for p in (precisions or ()) if p not in have]
        if missing:
            raise NotInManifestError(f"{entry['model']} has no {missing[0]} file in {path}; "
                                f"build it with `zoo build {entry['model']} --precision fp32,{missing[0]}`")
        for f in files:  # every file checked before the slow part starts
            try:
                same = sha256_file(root / f["path"]) == f["sha256"]
            except OSError as e:
                raise ZooError(f"cannot read {root / f['path']}: {e.strerror}") from None
            if not same:
                raise ZooError(f"{root / f['path']} differs from its manifest record (sha256); rebuild it with "
                               f"`zoo build`")
        plan.append((entry, files))

    results: dict[str, list[dict]] = {}
    measured: dict[tuple[str, str], str] = {}  # (model, precision) -> sha256 of the file measured
    for i, (entry, files) in enumerate(plan, 1):
        name = entry["model"]
        tag = f"[{i}/{len(plan)}] {name}"
        # PyTorch with the weights the model was built from (a seeded stand-in would time another network's
        # numbers; the cost is the same, but a trained build is compared with its own model).
        torch_model = reference_model(root, entry)[1] if options.torch else None
        cache: dict = {}
        recs: list[dict] = []
        for f in files:
            data = model_input(root, entry, f)  # sha256 checked again: the file may have changed meanwhile
            measured[(name, f["precision"])] = f["sha256"]
            recs += measure_model(data, precision=f["precision"], flops=entry["flops"],
                                  input_dim=entry["scaling"]["input_dim"], torch_model=torch_model,
                                  providers=providers, options=options,
                                  input_name=entry["metadata"]["io_ports"]["inputs"][0]["name"],
                                  torch_cache=cache, progress=lambda m, tag=tag: progress(f"{tag}: {m}"))
        results[name] = recs

    if save:
        with artifacts_lock(root, progress):  # a build committing meanwhile is not overwritten
            fresh = mf.load(path)
            for name, recs in results.items():
                try:
                    entry = mf.entry(fresh, name)
                except ManifestError:
                    progress(f"{name} left the manifest while it was measured; its latencies are not saved")
                    continue
                current = {f["precision"]: f["sha256"] for f in entry["files"] if f["role"] == "model"}
                kept = [r for r in recs if current.get(r["precision"]) == measured[(name, r["precision"])]]
                if len(kept) < len(recs):
                    progress(f"{name} was rebuilt while it was measured; its stale latencies are not saved")
                entry["latency"] = upsert_latency(entry.get("latency", []), kept)
            mf.save(path, fresh)
        manifest = fresh
    return {"manifest": str(path), "results": results, "entries": {e["model"]: e for e in manifest["models"]}}
