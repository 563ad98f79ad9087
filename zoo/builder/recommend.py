"""``zoo bench --peers`` / ``--recommend`` as a service: measure every way to run a model, check
each one's accuracy on the reference task, and pick per batch size the fastest that passes.

A candidate is eligible only with an accuracy record whose verdict is ``pass`` (the accuracy gate
of :mod:`zoo.verify.accuracy`: fp32 within 0.1 point of PyTorch, lower precisions losing at most
1.0 point). A failed, unavailable or unmeasured candidate is never recommended, however fast.
Two candidate files are made here: static int8 (it needs the training split to calibrate) and
int4 weight-only (a new precision class, so it is published only through this gate); with
``--recommend`` they are written beside the model and listed in the manifest like every file.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..errors import CalibrationError, ManifestError, ZooError
from ..fsutil import sha256_bytes, sha256_file
from ..spec import INT4, RECOMMEND_PRECISIONS, eligible
from ..spec import STATIC_INT8 as STATIC
from . import manifest as mf
from .commit import Staging
from .lock import artifacts_lock
from .verification import model_input, reference_model

# Fields a recommendation keeps from the winning record.
KEEP = ("runtime", "backend", "precision", "file", "settings", "p50_ms", "speedup_vs_ort_fp32")


def recommend(records: list[dict]) -> list[dict]:
    """Per batch size, the fastest (by p50) eligible record; batch sizes without one are left out."""
    out = []
    for batch in sorted({r["batch_size"] for r in records}):
        ok = [r for r in records if r["batch_size"] == batch and eligible(r)]
        if not ok:
            continue
        best = min(ok, key=lambda r: r["p50_ms"])
        acc = best["accuracy"]
        out.append({"batch_size": int(batch), **{k: best.get(k) for k in KEEP},
                    "top1": acc["top1"], "agreement": acc["agreement"], "torch_top1": acc["torch_top1"],
                    "candidates": len([r for r in records if r["batch_size"] == batch]), "eligible": len(ok)})
    return out


def load_data(entry: dict, data_file: str | None):
    """(EvalSet, training x) for a model: ``--data FILE.npz`` (x, y, x_test, y_test), else the set
    recorded at build time when it can be regenerated; raises CalibrationError when none is."""
    from ..model import data as ds

    dim = entry["scaling"]["input_dim"]
    if data_file is not None:
        arrays = ds.load_npz(data_file, dim)
        sha = ds.dataset_sha256(arrays)
        return ds.EvalSet(Path(data_file).name, sha, arrays["x_test"], arrays["y_test"], x_train=arrays["x"],
                          y_train=arrays["y"]), arrays["x"]
    params = (entry.get("eval_data") or {}).get("params")
    if params:
        p = ds.DatasetParams(params["input_dim"], params["samples"], params["seed"])
        arrays = ds.generate(p)
        sha = ds.dataset_sha256(arrays)
        if sha != entry["eval_data"]["sha256"]:
            raise ZooError(f"{entry['model']}: the regenerated {ds.NAME} set differs from the build's "
                           f"(sha256 {sha[:12]}); give --data FILE.npz")
        return ds.EvalSet(ds.NAME, sha, arrays["x_test"], arrays["y_test"], p.to_dict(), arrays["x"],
                          arrays["y"]), arrays["x"]
    raise CalibrationError(f"{entry['model']}: no reference-task data (its build had no regenerable eval set); "
                           f"give --data FILE.npz from `zoo data mnist1d --input-dim {dim}` (training split "
                           f"calibrates static int8, the test split checks accuracy)")


def peers_for_model(root: Path, entry: dict, *, data, batch_sizes, threads, time_budget_s,
                    max_rounds: int = 50, roofline=None, accuracy: bool = True, static_int8: bool = True,
                    int4: bool = True, torch: bool = True, min_agreement: float | None = None,
                    quant_budget: float | None = None, progress: Callable[[str], None] = lambda m: None) -> dict:
    """Measure the peers of one built model; returns records, the files made here (``derived``:
    ``(precision, relpath, bytes)``, static int8 and int4) and the recommendation (when accuracy
    was measured)."""
    from ..bench.peers import add_accuracy, contenders, measure_peers
    from ..spec import variant_path

    name = entry["model"]
    files = []
    for f in entry["files"]:
        if f["role"] != "model" or f["precision"] in RECOMMEND_PRECISIONS:  # made afresh below
            continue
        files.append((f["precision"], f["path"], model_input(root, entry, f, external_as="inline")))
    files.sort(key=lambda t: t[0] != "fp32")
    dataset, train_x = data if data is not None else (None, None)
    derived = []
    input_name = entry["metadata"]["io_ports"]["inputs"][0]["name"]
    searches = []
    for precision, wanted in ((STATIC, static_int8), (INT4, int4)):
        if not wanted:
            continue
        data, rec = searched_file(root, entry, precision, files[0][2], dataset, train_x, min_agreement=min_agreement,
                                  budget_s=quant_budget, input_name=input_name, progress=progress)
        derived.append((precision, variant_path(name, precision), data))
        if rec is not None:
            searches.append(rec)
    files.extend(derived)
    model = reference_model(root, entry)[1] if (torch or accuracy) else None
    cands = contenders(files, model if torch else None, input_name=input_name)
    records = measure_peers(cands, input_dim=entry["scaling"]["input_dim"], flops=entry["flops"],
                            batch_sizes=batch_sizes, threads=threads, time_budget_s=time_budget_s,
                            max_rounds=max_rounds, roofline=roofline, progress=lambda m: progress(f"{name}: {m}"))
    if accuracy:
        add_accuracy(cands, records, dataset.x_test, dataset.y_test, dataset, model, threads,
                     min_agreement=min_agreement)
        for c in cands:
            acc = next((r["accuracy"] for r in records if r["backend"] == c.backend), None)
            if acc and acc["top1"] is not None:
                progress(f"{name}: accuracy {c.backend} ({c.precision}): top-1 {acc['top1']:.2%} (PyTorch "
                         f"{acc['torch_top1']:.2%}), agreement {acc['agreement']:.2%}: {acc['verdict']}")
    for r in records:
        r["model"] = name
    return {"records": records, "derived": derived, "dataset": dataset.describe() if dataset else None,
            "quantization": searches, "recommended": recommend(records) if accuracy else None}


def searched_file(root: Path, entry: dict, precision: str, fp32, dataset, train_x, *, min_agreement: float | None,
                  budget_s: float | None, input_name: str, progress) -> tuple[bytes, dict | None]:
    """The ``precision`` file and its search record: the built file where its build searched it for
    this floor (and it is intact), else a search here on the training split
    (:func:`zoo.exporters.quant_search.search`); with training inputs but no labels, the fixed recipe."""
    from ..exporters import quant_search as qs
    from ..spec import variant_path
    from ..verify.accuracy import MAX_VARIANT_LOSS, MIN_AGREEMENT

    name, path = entry["model"], variant_path(entry["model"], precision)
    floor = MIN_AGREEMENT if min_agreement is None else float(min_agreement)
    rec = next((q for q in entry.get("quantization", []) if q.get("file") == path), None)
    f = next((f for f in entry["files"] if f["path"] == path), None)
    # the build's search with this floor (passed or not: the same inputs would give the same file again)
    if (rec is not None and f is not None and rec["floor"] == floor and (root / path).is_file()
            and not (root / path).is_symlink() and sha256_file(root / path) == f["sha256"]):
        progress(f"{name}: {precision}: the build's searched file ({rec.get('recipe_text')}, "
                 f"{len(rec['fp32_layers'])} fp32 layer(s), held-out agreement {rec['heldout']['agreement']:.2%})")
        return (root / path).read_bytes(), rec
    y_train = getattr(dataset, "y_train", None)
    why = qs.too_few_rows(train_x, y_train)
    if why is not None:
        from ..exporters.int4 import quantize_int4
        from ..exporters.int8_static import quantize_int8_static

        progress(f"{name}: {precision}: the fixed recipe, no search ({why}) ...")
        return (quantize_int8_static(fp32, train_x, input_name=input_name, what=name) if precision == STATIC
                else quantize_int4(fp32)), None
    res = qs.search(fp32, precision, train_x, y_train, min_agreement=floor, max_top1_loss=MAX_VARIANT_LOSS,
                    budget_s=qs.DEFAULT_BUDGET_S if budget_s is None else budget_s, input_name=input_name, what=name,
                    progress=progress)
    return res.data, res.record(path)


def bench_peers(root, names, *, data_file=None, batch_sizes=(1, 32, 256), threads=None, time_budget_s=10.0,
                max_rounds: int = 50, roofline=None, recommend_: bool = False, save: bool = True, torch: bool = True,
                min_agreement: float | None = None, quant_budget: float | None = None,
                progress: Callable[[str], None] = lambda m: None) -> dict:
    """Peers of each named model of a built zoo; with ``recommend_``, accuracy on the reference
    task decides eligibility and the manifest gains the static int8 and int4 files, ``peers`` records and
    ``recommended`` per batch size (the manifest is re-read just before writing)."""
    from ..bench.latency import default_threads
    from ..bench.peers import environment

    root = Path(root)
    path = root / mf.MANIFEST_NAME
    manifest = mf.load(path)
    entries = [mf.entry(manifest, n) for n in dict.fromkeys(names)]
    threads = threads or default_threads()
    with_data = recommend_ or data_file is not None
    # Every model's data first: a missing training split fails before the slow part.
    data = {e["model"]: load_data(e, data_file) if with_data else None for e in entries}
    results = {}
    for i, entry in enumerate(entries, 1):
        progress(f"[{i}/{len(entries)}] {entry['model']}: peers")
        results[entry["model"]] = peers_for_model(
            root, entry, data=data[entry["model"]], batch_sizes=batch_sizes, threads=threads, time_budget_s=time_budget_s,
            max_rounds=max_rounds, roofline=roofline, accuracy=with_data, static_int8=with_data, torch=torch,
            min_agreement=min_agreement, quant_budget=quant_budget, progress=progress)
    if recommend_ and save:
        from ..verify.accuracy import MIN_AGREEMENT

        gate_floor = MIN_AGREEMENT if min_agreement is None else float(min_agreement)  # the gate it passed
        with artifacts_lock(root, progress):  # a build committing meanwhile is not overwritten
            fresh = mf.load(path)
            staging = Staging(root)  # the derived files and the manifest as one commit, as a build's
            env = environment()
            for name, res in results.items():
                try:
                    entry = mf.entry(fresh, name)
                except ManifestError:
                    progress(f"{name} left the manifest while it was measured; nothing saved for it")
                    continue
                fp32 = next(f for f in entry["files"] if f["role"] == "model" and f["precision"] == "fp32")
                if sha256_file(root / fp32["path"]) != fp32["sha256"]:
                    progress(f"{name} was rebuilt while it was measured; nothing saved for it")
                    continue
                for precision, rel, data in res["derived"]:
                    staging.add(rel, data)
                    entry["files"] = [f for f in entry["files"] if f["path"] != rel] + [
                        {"path": rel, "bytes": len(data), "sha256": sha256_bytes(data), "role": "model",
                         "precision": precision}]
                made = {q["file"] for q in res["quantization"]}
                kept = [q for q in entry.get("quantization", []) if q.get("file") not in made]
                if kept or made:
                    entry["quantization"] = kept + res["quantization"]
                entry["peers"] = [_slim(r) for r in res["records"]]
                entry["recommended"] = {"threads": int(threads), "machine": env["machine"]["cpu"],
                                        "isa": env["machine"]["isa"], "load_avg_1m": env["load_avg_1m"],
                                        "dataset": res["dataset"], "min_agreement": gate_floor,
                                        "by_batch": res["recommended"]}
                # The deployment profile (zoo.builder.profile) follows the new recommendation.
                from .profile import set_profile

                profile: dict = {}
                set_profile(entry, profile)
                for rel, data in profile.items():
                    staging.add(rel, data)
            mf.validate(fresh, str(path))
            try:
                staging.commit(mf.to_bytes(fresh), progress=progress)
            finally:
                staging.abort()
    return {"manifest": str(path), "results": results}


def _slim(rec: dict) -> dict:
    """A peers record for the manifest: everything but the machine blob."""
    return {k: v for k, v in rec.items() if k != "machine"}
