"""``zoo verify`` as a service: re-run the parity matrix on built or pulled artifacts and record it."""

from __future__ import annotations

from pathlib import Path

from ..errors import ZooError
from ..fsutil import sha256_file
from ..model import count_params
from ..verify import js
from ..verify.js import RUNTIMES as JS_RUNTIMES
from ..verify.matrix import MatrixOptions, run_matrix
from . import manifest as mf
from .artifact import ModelRequest


def verify_models(artifacts: Path, names: list[str], *, providers=None, runtimes=None, batch_sizes=None,
                  record: bool = True, progress=lambda m: None) -> dict[str, list[dict]]:
    """Run the parity matrix on every listed model file; returns records per model (and records
    them in the manifest unless ``record`` is false)."""
    manifest_path = artifacts / mf.MANIFEST_NAME
    manifest = mf.load(manifest_path)
    py_runtimes = None if runtimes is None else [r for r in runtimes if r not in JS_RUNTIMES]
    js_runtimes = [r for r in JS_RUNTIMES if runtimes is None or r in runtimes]
    options = MatrixOptions(**({"batch_sizes": batch_sizes} if batch_sizes else {}), providers=providers,
                            runtimes=py_runtimes)
    options.resolve_backends()  # unknown runtime names fail here, before any work
    results: dict[str, list[dict]] = {}
    for i, name in enumerate(names, 1):
        tag = f"[{i}/{len(names)}] {name}"
        entry = mf.entry(manifest, name)
        req, model = _reference_model(artifacts, entry)
        params = count_params(model)
        if params != entry["params"]:
            raise ZooError(f"{name}: rebuilt PyTorch model has {params} parameters, the manifest says {entry['params']}")
        records = []
        for f in [f for f in entry["files"] if f["role"] == "model"]:
            path = artifacts / f["path"]
            if not path.is_file():
                raise ZooError(f"{name}: {path} is missing (pull it, or build it)")
            if sha256_file(path) != f["sha256"]:
                raise ZooError(f"{name}: {path} does not match the manifest's sha256; refusing to verify it")
            progress(f"{tag}: {f['precision']} ...")
            records += run_matrix(model, path.read_bytes(), input_dim=req.effective_input_dim, seed=req.seed,
                                  input_name=req.spec.input_name, output_name=req.spec.output_name,
                                  precision=f["precision"], options=options,
                                  progress=lambda m, tag=tag: progress(f"{tag}: {m}"))
        results[name] = records
    if js_runtimes:
        for name, recs in _js_records(artifacts, names, js_runtimes, explicit=runtimes is not None).items():
            results[name] += recs
    if record:
        for name, recs in results.items():
            manifest = mf.upsert(manifest, merge_parity(mf.entry(manifest, name), recs))
        mf.save(manifest_path, manifest)
    return results


def _js_records(artifacts: Path, names, js_runtimes, explicit: bool) -> dict[str, list[dict]]:
    wanted = [r for r in js_runtimes if explicit or js.js_available(r) is None]
    if not wanted:
        return {}
    return js.run_js(artifacts, mf.load(artifacts), names=names, runtimes=tuple(wanted))


def merge_parity(entry: dict, records: list[dict]) -> dict:
    """New records replace old ones of the same backend, precision and reference; others stay."""
    key = lambda r: (r["backend"], r["precision"], r.get("reference"))  # noqa: E731
    fresh = {key(r) for r in records}
    out = dict(entry)
    out["parity"] = [r for r in entry["parity"] if key(r) not in fresh] + records
    return out


def _reference_model(artifacts: Path, entry: dict):
    """The PyTorch model an entry was built from: seeded, or its published weights file (whose
    sha256 must match the manifest's)."""
    if entry.get("weights", {}).get("source") != "file":
        req = ModelRequest.from_entry(entry)
        return req, req.create()
    from ..fsutil import sha256_bytes
    from ..model.weights import read_bytes

    rec = next((f for f in entry["files"] if f["role"] == "weights"), None)
    if rec is None or not (artifacts / rec["path"]).is_file():
        raise ZooError(f"{entry['model']}: built from a weights file that is not in {artifacts}")
    data = read_bytes(artifacts / rec["path"])
    if sha256_bytes(data) != entry["weights"]["sha256"]:
        raise ZooError(f"{entry['model']}: {rec['path']} is not the weights file the manifest names")
    req = ModelRequest.from_entry(entry, weights=str(artifacts / rec["path"]))
    return req, req.create(data)
