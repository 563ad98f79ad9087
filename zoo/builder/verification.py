"""``zoo verify`` as a service: re-run the parity matrix on built or pulled artifacts and record it."""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from .. import onnxio
from ..errors import ProviderUnavailableError, UnknownNameError, ZooError
from ..fsutil import NotRegularFileError, open_regular, sha256_bytes, sha256_file
from ..model import count_params
from ..spec import C_RUNTIMES, EXTERNAL_ROLE, JS_RUNTIMES, PRECISIONS, TARGET_ROLE
from ..verify import c, js
from ..verify.matrix import MatrixOptions, run_matrix
from . import manifest as mf
from .artifact import ModelRequest
from .commit import pending
from .lock import artifacts_lock


def checked_names(artifacts: Path, names: list[str] | None, progress=lambda m: None) -> tuple[dict, list[str]]:
    """``(the manifest, the models to verify)``: ``names`` (None: every model), each one in the
    manifest, else ``UnknownNameError`` (bad input, refused before any work or note)."""
    manifest_path = Path(artifacts) / mf.MANIFEST_NAME
    if pending(artifacts):  # a build was killed mid-commit: finish or undo it before reading
        with artifacts_lock(artifacts, progress):
            pass
    manifest = mf.load(manifest_path)
    available = [m["model"] for m in manifest["models"]]
    names = available if names is None else names
    unknown = [n for n in names if n not in available]
    if unknown:
        raise UnknownNameError(f"unknown model {unknown[0]!r}; {manifest_path} has: {', '.join(available) or 'none'}")
    return manifest, names


def verify_models(artifacts: Path, names: list[str] | None, *, providers=None, runtimes=None, batch_sizes=None,
                  precisions=None, record: bool = True, progress=lambda m: None) -> dict[str, list[dict]]:
    """Run the parity matrix on every listed model file (``names`` None: every model; ``precisions``
    None: every precision built); returns records per model (and records them in the manifest
    unless ``record`` is false).

    A provider or runtime named in ``providers``/``runtimes`` that is not available here raises
    ``ProviderUnavailableError`` before any work; by default only the available ones are used.
    """
    manifest_path = artifacts / mf.MANIFEST_NAME
    manifest, names = checked_names(artifacts, names, progress)
    py_runtimes = None if runtimes is None else [r for r in runtimes if r not in (*JS_RUNTIMES, *C_RUNTIMES)]
    js_runtimes = [r for r in JS_RUNTIMES if runtimes is None or r in runtimes]
    c_runtimes = [r for r in C_RUNTIMES if runtimes is None or r in runtimes]
    options = MatrixOptions(**({"batch_sizes": batch_sizes} if batch_sizes else {}), providers=providers,
                            runtimes=py_runtimes)
    missing = [f"{b.name}: {why}" for b in options.resolve_backends() if (why := b.unavailable_reason())]
    if runtimes is not None:
        missing += [f"{r}: {why}" for r in js_runtimes if (why := js.js_available(r))]
        missing += [f"{r}: {why}" for r in c_runtimes if (why := c.c_available(r))]
    if missing:  # only what was named explicitly can be missing here; the defaults are what is available
        raise ProviderUnavailableError(f"asked for and not available: {'; '.join(missing)}")
    # Only JavaScript / C runtimes named (--runtimes node,web): they check the files against the
    # test data, so ONNX Runtime and PyTorch are not re-run (the files are still checked intact).
    python_matrix = runtimes is None or bool(py_runtimes) or providers is not None
    if not python_matrix:
        progress(f"ONNX Runtime and PyTorch not re-run: only {','.join(runtimes)} asked for "
                 "(add --providers cpu for them too)")
    results: dict[str, list[dict]] = {}
    for i, name in enumerate(names, 1):
        tag = f"[{i}/{len(names)}] {name}"
        entry = mf.entry(manifest, name)
        if not python_matrix:
            for f in [f for f in entry["files"] if f["role"] == "model" and (precisions is None or f["precision"] in precisions)]:
                model_input(artifacts, entry, f, external_as="path")  # every file: intact and readable
                if f["precision"] not in PRECISIONS:
                    progress(f"{tag}: {f['precision']}: intact; made and checked by zoo bench --recommend (accuracy "
                             "gate on the reference task), not by the parity matrix")
            results[name] = []
            continue
        req, model = reference_model(artifacts, entry)
        params = count_params(model)
        if params != entry["params"]:
            raise ZooError(f"{name}: rebuilt PyTorch model has {params} parameters, the manifest says {entry['params']}")
        records = []
        for f in [f for f in entry["files"] if f["role"] in ("model", TARGET_ROLE)
                  and (precisions is None or f["precision"] in precisions)]:
            if f.get("format") == "ort":  # not ONNX: the matrix's runtimes cannot read it (zoo build checks it)
                progress(f"{tag}: {f['path']}: the ORT format, checked in ONNX Runtime by zoo build, not here")
                continue
            # With external data the runtimes get the model's path: what users do, and what is tested.
            ref = model_input(artifacts, entry, f, external_as="path")  # every file: intact and readable
            if f["precision"] not in PRECISIONS:
                progress(f"{tag}: {f['precision']}: intact; made and checked by zoo bench --recommend (accuracy gate "
                         f"on the reference task), not by the parity matrix")
                continue
            progress(f"{tag}: {f['precision']}{' ' + f['path'] if f['role'] == TARGET_ROLE else ''} ...")
            found = run_matrix(model, ref, input_dim=req.effective_input_dim, seed=req.seed,
                               input_name=req.spec.input_name, output_name=req.spec.output_name,
                               precision=f["precision"], options=options,
                               progress=lambda m, tag=tag: progress(f"{tag}: {m}"))
            # A target's records name it (zoo.builder.targets); the default file's name none.
            records += [dict(r, file=f["path"]) for r in found] if f["role"] == TARGET_ROLE else found
        results[name] = records
    if js_runtimes:
        for name, recs in _js_records(artifacts, names, js_runtimes, precisions,
                                      explicit=runtimes is not None).items():
            results[name] += recs
    if c_runtimes:
        for name, recs in _c_records(artifacts, names, c_runtimes, explicit=runtimes is not None).items():
            results[name] += recs
    if record:
        with artifacts_lock(artifacts, progress):  # re-read under the lock: a build may have committed since
            manifest = mf.load(manifest_path)
            for name, recs in results.items():
                manifest = mf.upsert(manifest, merge_parity(mf.entry(manifest, name), recs))
            mf.save(manifest_path, manifest)
    return results


def _readable_onnx(data: bytes, path: Path, name: str):
    """The model's proto; a model file whose sha256 matches but which is not ONNX is one line, not a
    DecodeError."""
    import onnx

    if not data:
        raise ZooError(f"{name}: {path} is empty (0 bytes); not an ONNX model")
    try:
        return onnx.load_model_from_string(data)
    except Exception as e:  # noqa: BLE001 - protobuf raises DecodeError and others
        raise ZooError(f"{name}: {path} is not a readable ONNX model ({type(e).__name__})") from None


def _external_data_checked(artifacts: Path, entry: dict, f: dict, proto) -> list[str]:
    """The model file ``f``'s external-data files (relative paths; none: it is self-contained),
    after checking that they are listed for it, lie beside it, match their sha256, and are all the
    model refers to: the runtimes are then given its path and read nothing else."""
    listed = [d for d in entry["files"] if d["role"] == EXTERNAL_ROLE and d.get("of") == f["path"]]
    names = {PurePosixPath(d["path"]).name for d in listed}
    refers = onnxio.locations(proto)
    stray = [loc for loc in refers if loc not in names]
    if stray:
        raise ZooError(f"{entry['model']}: {f['path']} refers to external data {stray[0]!r}, "
                       "which the manifest does not list beside it; refusing to load it")
    for d in listed:
        p = artifacts / d["path"]
        if PurePosixPath(d["path"]).parent != PurePosixPath(f["path"]).parent:
            raise ZooError(f"{entry['model']}: {d['path']} is not beside {f['path']}")
        try:
            digest = sha256_file(p)  # streamed; a FIFO is refused without blocking
        except OSError:
            raise ZooError(f"{entry['model']}: {p} (external data of {f['path']}) is missing or not a regular file "
                           "(pull it, or build it)") from None
        if digest != d["sha256"]:
            raise ZooError(f"{entry['model']}: {p} does not match the manifest's sha256; refusing to verify it")
    return [d["path"] for d in listed] if refers else []


def model_input(artifacts: Path, entry: dict, f: dict, *, external_as: str = "auto") -> onnxio.ModelRef:
    """The model file ``f`` of ``entry`` as the in-process runtimes take it, after checking its
    sha256 (and its external data's): its bytes. With external data, ``external_as`` says how:
    ``"path"`` its path (the runtimes read the data beside it), ``"inline"`` self-contained bytes,
    ``"auto"`` inline while the model fits one protobuf message, else its path."""
    path = artifacts / f["path"]
    try:
        with open_regular(path) as fh:  # a FIFO named like the model is refused, never read
            size = os.fstat(fh.fileno()).st_size
            # The size first: a file larger than the manifest says is refused without reading it.
            data = fh.read(f["bytes"] + 1) if size == f["bytes"] else None
    except NotRegularFileError:
        raise ZooError(f"{entry['model']}: {path} is not a regular file; refusing to read it") from None
    except OSError as e:
        why = "is missing" if isinstance(e, FileNotFoundError) else f"cannot be read ({e.strerror or e})"
        raise ZooError(f"{entry['model']}: {path} {why} (pull it, or build it)") from None
    if data is None or sha256_bytes(data) != f["sha256"]:
        raise ZooError(f"{entry['model']}: {path} does not match the manifest's sha256; refusing to use it "
                       "(rebuild it with `zoo build`, or pull it)")
    external = _external_data_checked(artifacts, entry, f, _readable_onnx(data, path, entry["model"]))
    if not external or external_as == "path":
        return path if external else data
    blob = (artifacts / external[0]).read_bytes() if len(external) == 1 else None
    if blob is not None and (external_as == "inline" or len(data) + len(blob) < onnxio.INLINE_LIMIT):
        try:
            return onnxio.inline(data, blob)
        except ValueError as e:
            raise ZooError(f"{entry['model']}: {path}: {e}") from None
    return path


def _js_records(artifacts: Path, names, js_runtimes, precisions, explicit: bool) -> dict[str, list[dict]]:
    wanted = [r for r in js_runtimes if explicit or js.js_available(r) is None]
    if not wanted:
        return {}
    return js.run_js(artifacts, mf.load(artifacts), names=names, runtimes=tuple(wanted), precisions=precisions)


def _c_records(artifacts: Path, names, c_runtimes, explicit: bool) -> dict[str, list[dict]]:
    """The C / C++ examples' records: those asked for by name always (an unbuilt one gives
    unavailable records that name the make command), by default only those that are built."""
    wanted = [r for r in c_runtimes if explicit or c.c_available(r) is None]
    if not wanted:
        return {}
    return c.run_c(artifacts, mf.load(artifacts), names=names, runtimes=tuple(wanted))


def merge_parity(entry: dict, records: list[dict]) -> dict:
    """New records replace old ones of the same backend, precision and reference; others stay."""
    key = lambda r: (r["backend"], r["precision"], r.get("reference"), r.get("file"))  # file: a target's
    fresh = {key(r) for r in records}
    out = dict(entry)
    out["parity"] = [r for r in entry["parity"] if key(r) not in fresh] + records
    return out


def reference_model(artifacts: Path, entry: dict):
    """The PyTorch model an entry was built from: seeded, or its published weights file (whose
    sha256 must match the manifest's)."""
    if entry.get("weights", {}).get("source") != "file":
        req = ModelRequest.from_entry(entry)
        return req, req.create()
    from ..model.weights import read_bytes

    rec = next((f for f in entry["files"] if f["role"] == "weights"), None)
    if rec is None or not os.path.lexists(artifacts / rec["path"]):
        raise ZooError(f"{entry['model']}: built from a weights file that is not in {artifacts}")
    data = read_bytes(artifacts / rec["path"])
    if sha256_bytes(data) != entry["weights"]["sha256"]:
        raise ZooError(f"{entry['model']}: {rec['path']} is not the weights file the manifest names")
    req = ModelRequest.from_entry(entry, weights=str(artifacts / rec["path"]))
    return req, req.create(data)
