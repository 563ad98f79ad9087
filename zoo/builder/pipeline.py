"""``zoo build``: make artifacts, check them, and commit them with the manifest as one transaction.

Nothing reaches a final name until every requested model has been exported, self-checked and
verified. Files are staged as temporary files beside their final names; the commit
(:mod:`zoo.builder.commit`) renames them into place and the manifest last, as the single commit
point, under a journal, so that a build killed at any step leaves the folder all old or all new
once the next lock holder has recovered it; files the previous manifest listed for a rebuilt model
and the new one does not are removed after that. A failure or an interrupt before the commit
removes the staged files, so the previous artifacts and manifest stay exactly as they were. The
whole build holds the folder's lock (:mod:`zoo.builder.lock`): a second build into the same folder
waits.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .. import interrupt
from ..errors import ManifestError, NoManifestError, ZooError
from ..exporters.quant_search import rebuild as rebuild_searched
from ..exporters.variants import variant_files
from ..fsutil import TMP_PREFIX, atomic_path, sha256_bytes
from ..spec import PRECISIONS, variant_path
from ..units import human_bytes
from ..verify.parity import tolerance_for
from . import manifest as mf
from .artifact import Artifact, ModelRequest, make_artifact
from .commit import Staging
from .lock import artifacts_lock

Progress = Callable[[str], None]
# verifier(artifact, progress) -> parity records; raises ParityError on a failed check.
Verifier = Callable[[Artifact, Progress], list]
# extra(artifact, entry, staged files, progress): more work on a passed model (precision
# variants, latency records); it may add files to ``staged`` and records to ``entry``.
Extra = Callable[[Artifact, dict, dict, Progress], None]


@dataclass
class ModelResult:
    name: str
    status: str  # "ok" | "failed"
    error: str | None = None
    entry: dict | None = None
    timings_s: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict:
        e = self.entry or {}
        model_file = next((f for f in e.get("files", []) if f["role"] == "model" and f["precision"] == "fp32"), None)
        return {
            "name": self.name,
            "status": self.status,
            "error": self.error,
            "params": e.get("params"),
            # With external data, the model is both files.
            "file_bytes": sum(f["bytes"] for f in e["files"] if model_file and model_file["path"] in (f["path"], f.get("of")))
            if model_file else None,
            "sha256": model_file["sha256"] if model_file else None,
            "timings_s": {k: round(v, 3) for k, v in self.timings_s.items()},
        }


def self_check(art: Artifact) -> None:
    """ONNX Runtime (CPU) must reproduce the test data before anything enters the manifest."""
    from ..verify.backends import OrtBackend
    from ..verify.matrix import Case, check_backend, raise_for_failures

    spec = art.request.spec
    case = Case(int(art.test_in.shape[0]), "test_data_set_0", art.test_in, {spec.output_name: art.test_out})
    rec = check_backend(OrtBackend(), art.model_ref, [case], spec.input_name, "fp32",
                        tolerance_for("fp32"), reference="test-data")
    raise_for_failures([rec], f"{art.request.name} self-check (onnxruntime CPU)")


def stale_files(before: dict, after: dict, rebuilt: set[str]) -> list[str]:
    """Paths ``before`` listed for the ``rebuilt`` models that no entry of ``after`` lists.

    Only files a manifest listed are ever candidates: unknown files in the folder are left alone.
    """
    listed_now = {f["path"] for m in after["models"] for f in m["files"]}
    old = {f["path"] for m in before["models"] if m["model"] in rebuilt for f in m["files"]}
    return sorted(old - listed_now)


def check_writable(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        with atomic_path(out / ".zoo-write-test"):
            pass
        (out / ".zoo-write-test").unlink()
    except OSError as e:
        raise ZooError(f"cannot write to {out}: {e.strerror or e}") from None


def remove_leftovers(out: Path) -> None:
    """Temporary files of an earlier, killed build are never renamed into place: clear them
    (after :func:`zoo.builder.commit.recover`, which the lock runs; links are not followed)."""
    for folder, dirs, names in os.walk(out):
        for name in names:
            if name.startswith(TMP_PREFIX):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(folder, name))


def refuse_linked_folders(out: Path, requests) -> None:
    """A model folder that is a link would send the model files elsewhere: refuse before any work."""
    for req in requests:
        if (out / req.name).is_symlink() or ((out / req.name).exists() and not (out / req.name).is_dir()):
            raise ZooError(f"{out / req.name} is a link or not a folder; refusing to write through it "
                           "(remove it, or build into another folder)")


def build(
    requests: list[ModelRequest],
    out: str | Path = "artifacts",
    *,
    verifier: Verifier | None = None,
    extras: list[Extra] = (),
    progress: Progress = lambda msg: None,
    keep_going: bool = False,
) -> list[ModelResult]:
    """Build ``requests`` into ``out``; see the module docstring for the transaction.

    Without ``keep_going`` a failed model aborts the whole build (nothing is written). With it,
    the models that passed are committed and the failed ones stay out of the manifest.
    """
    out = Path(out)
    manifest_path = out / mf.MANIFEST_NAME
    mf.load_or_empty(manifest_path)  # a malformed manifest stops us before any work
    check_writable(out)
    refuse_linked_folders(out, requests)
    with artifacts_lock(out, progress):  # recovers an interrupted commit first
        # Read again under the lock: another build may have committed while we waited.
        return _build_locked(requests, out, manifest_path, verifier, extras, progress, keep_going)


def _build_locked(requests, out: Path, manifest_path: Path, verifier, extras, progress, keep_going):
    manifest = mf.load_or_empty(manifest_path)
    remove_leftovers(out)  # safe: no other build can be staging here while we hold the lock
    staging = Staging(out)
    results: list[ModelResult] = []
    try:
        for i, req in enumerate(requests, 1):
            tag = f"[{i}/{len(requests)}] {req.name}"
            result = _build_one(req, staging, verifier, extras, lambda m, tag=tag: progress(f"{tag}: {m}"))
            results.append(result)
            if result.status != "ok":
                progress(f"{tag}: FAILED: {result.error}")
                if not keep_going:
                    break
        ok = [r for r in results if r.status == "ok"]
        if len(ok) < len(results) and not keep_going:
            staging.abort()
            return results
        if ok:
            t = time.perf_counter()
            before = manifest
            for r in ok:
                manifest = mf.upsert(manifest, r.entry)
            mf.validate(manifest, str(manifest_path))  # before the first rename, not after
            interrupt.check()  # an interrupt some library swallowed never ends in a commit
            # Every file in place, then the manifest that names them (the commit point), then the
            # files no longer listed removed: a journal makes it all-or-nothing under kill -9.
            staging.commit(mf.to_bytes(manifest), stale_files(before, manifest, {r.name for r in ok}), progress)
            progress(f"wrote {len(ok)} model(s) and {manifest_path} in {time.perf_counter() - t:.1f}s")
        return results
    finally:
        staging.abort()  # a no-op after commit; removes every staged file on error or interrupt


def _build_one(req: ModelRequest, staging: Staging, verifier, extras, progress: Progress) -> ModelResult:
    timings: dict[str, float] = {}
    # The stage in flight and when it began: a failed model's time includes the stage that failed
    # (an accuracy gate fails late, in the "write" stage's extras).
    stage, t = "export", time.perf_counter()
    try:
        progress("create + export ...")
        art = make_artifact(req)
        timings.update(art.timings_s)
        progress(f"exported {human_bytes(art.model_size)} in {timings['export']:.1f}s")

        stage, t = "self_check", time.perf_counter()
        self_check(art)
        timings["self_check"] = time.perf_counter() - t

        entry = art.manifest_entry()
        if verifier is not None:
            stage, t = "parity", time.perf_counter()
            entry["parity"] = verifier(art, progress)
            timings["parity"] = time.perf_counter() - t

        stage, t = "write", time.perf_counter()
        staged: dict[str, bytes] = dict(art.files)
        for extra in extras:
            extra(art, entry, staged, progress)
        for rel, data in staged.items():
            staging.add(rel, data)
        timings["write"] = time.perf_counter() - t
        progress(f"ok ({sum(timings.values()):.1f}s)")
        return ModelResult(req.name, "ok", entry=entry, timings_s=timings)
    except ZooError as e:
        interrupt.check()  # a Ctrl-C a library turned into an error is an interrupt, not a failed model
        timings.setdefault(stage, time.perf_counter() - t)
        return ModelResult(req.name, "failed", error=str(e), timings_s=timings)


SUMS_LINE = re.compile(r"^([0-9a-f]{64}) [ *](\S.*)$")


def load_reference(path: str | Path) -> dict:
    """A ``--check`` reference: a manifest (JSON), or a record in ``sha256sum``'s format (``<sha256>
    <path>`` per line, paths relative to the artifacts folder; ``#`` comments), such as the committed
    ``artifacts/SHA256SUMS``. Returns the manifest, or ``{"sha256sums": {path: sha256}}``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise NoManifestError(f"no manifest at {path} (nor a sha256 record)") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ManifestError(f"{path}: cannot read: {getattr(e, 'strerror', None) or e}") from None
    if text.lstrip().startswith("{"):
        return mf.load(path)
    sums: dict[str, str] = {}
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        m = SUMS_LINE.match(line.rstrip())
        if not m:
            raise ManifestError(f"{path}:{n}: neither a manifest nor a '<sha256>  <path>' line")
        sums[m.group(2)] = m.group(1)
    if not sums:
        raise ManifestError(f"{path}: no sha256 lines")
    return {"sha256sums": sums}


def _precision_of(name: str, path: str) -> str | None:
    return next((p for p in PRECISIONS if variant_path(name, p) == path), None)


def check_against(requests: list[ModelRequest], reference: dict, progress: Progress = lambda m: None,
                  precisions=("fp32",)) -> list[dict]:
    """Rebuild ``requests`` in memory and compare every file's sha256 with ``reference``'s
    (a manifest: each model rebuilt with the options it records, every file it lists; a sha256
    record from :func:`load_reference`: rebuilt as requested, the model files of ``precisions``
    and the test data compared, a model file the record lacks reported as a mismatch)."""
    rows = []
    sums = reference.get("sha256sums")
    by_name = {m["model"]: m for m in reference.get("models", [])}
    for i, req in enumerate(requests, 1):
        progress(f"[{i}/{len(requests)}] {req.name}: rebuilding ...")
        entry = None
        if sums is not None:
            files = [{"path": p, "sha256": h, "precision": _precision_of(req.name, p) or "fp32"}
                     for p, h in sums.items() if p.startswith(f"{req.name}/")
                     and (_precision_of(req.name, p) is None or _precision_of(req.name, p) in precisions)]
            if files:
                files += [{"path": variant_path(req.name, p), "sha256": None, "precision": p} for p in precisions
                          if variant_path(req.name, p) not in sums]
            rebuild = req
        else:
            entry = by_name.get(req.name)
            files = entry["files"] if entry else []
            rebuild = ModelRequest.from_entry(entry, weights=req.weights, eval_data=req.eval_data) if entry else None
        if not files:
            rows.append({"model": req.name, "path": None, "expected": None, "actual": None, "match": False,
                         "note": "not in the reference"})
            continue
        art = make_artifact(rebuild)
        built = {p: sha256_bytes(b) for p, b in art.files.items()}
        # A searched file (its record in the entry's ``quantization``) is made again from its recipe and
        # fp32 layers, no search; other files zoo bench --recommend adds are not build outputs.
        records = {q["file"]: q for q in (entry or {}).get("quantization", []) if sums is None and q.get("file")}
        for path, q in records.items():
            evals = art.eval_set
            data = rebuild_searched(art.model_ref, q, evals.x_train if evals is not None else None,
                           input_name=art.request.spec.input_name, what=req.name)
            built[path] = sha256_bytes(data)
        variants = sorted({f["precision"] for f in files if f["path"] not in records} & set(PRECISIONS) - {"fp32"})
        built.update({p: sha256_bytes(b) for p, b in variant_files(art, variants).items()})
        if sums is None:  # targets (zoo build --opsets / --ort) the manifest lists
            from .targets import target_files

            built.update({p: sha256_bytes(b) for p, b in target_files(art, entry).items()})
        for f in files:
            actual = built.get(f["path"])
            if f.get("reproducible") is False and actual:  # the ORT format (zoo.exporters.targets)
                rows.append({"model": req.name, "path": f["path"], "expected": f["sha256"], "actual": actual,
                             "match": True, "note": "not compared: not byte-reproducible (onnxruntime's ORT converter)"})
                continue
            note = "not in the reference" if f["sha256"] is None else None if actual else "not rebuilt"
            rows.append({"model": req.name, "path": f["path"], "expected": f["sha256"], "actual": actual,
                         "match": actual == f["sha256"], "note": note})
    return rows
