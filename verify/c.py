"""C and C++: the artifacts checked with ONNX Runtime's C API and C++ API, through the examples.

The checking itself is done by the example programs ``examples/c/classify`` (C11, the C API) and
``examples/cpp/classify`` (C++17, the C++ API), built with ``make -C examples/c`` and
``make -C examples/cpp``. This module runs a program once per model file and test set with
``--expect ... --json`` and turns the JSON line it prints into parity records of the shape of the
manifest's ``parity`` records (``zoo/schema/manifest.schema.json``, ``$defs/parity``): backend and
runtime ``c`` or ``cpp``, version the ONNX Runtime version the program runs on, reference
``test-data``.

Tolerances have one source of truth, :data:`zoo.verify.parity.DEFAULT_TOLERANCES`: they are passed to
the program as ``--atol`` / ``--rtol`` (the program has no defaults of its own).

From the command line (a table on stdout; exit 0 all passed, 1 a check failed, 3 unavailable)::

    python -m zoo.verify.c artifacts                 # every model, every precision, c
    python -m zoo.verify.c artifacts --runtimes c,cpp --models dense_b0 --json
"""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

from ..errors import InputError, ZooError
from ..spec import C_RUNTIMES
from .parity import Tolerance
from .records import parity_record
from .testdata import (
    Tolerances,
    build_step,
    check_in_memory,
    cli,
    contained,
    model_files,
    tolerance,
)

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = {"c": ROOT / "examples" / "c", "cpp": ROOT / "examples" / "cpp"}
RUNTIMES = {r: r for r in C_RUNTIMES}  # the name to ask for -> the record's runtime
API = {"c": "C API", "cpp": "C++ API"}
# The program of each runtime: $ZOO_C_CLASSIFY / $ZOO_CPP_CLASSIFY, else the example's build.
PROGRAM_ENV = {"c": "ZOO_C_CLASSIFY", "cpp": "ZOO_CPP_CLASSIFY"}
BUILD_HINT = {"c": "make -C examples/c", "cpp": "make -C examples/cpp"}
# One model file on one test set; B7 loads in about a second.
TIMEOUT_S = 600.0
THREADS = 1


_METRICS = ("max_abs_error", "max_rel_error", "p99_abs_error", "rel_l2_error")


def _check_runtime(runtime: str) -> str:
    if runtime not in RUNTIMES:
        raise InputError(f"unknown C runtime {runtime!r}; valid: {', '.join(RUNTIMES)}")
    return runtime


def program(runtime: str) -> Path:
    """The program that checks in ``runtime`` (it may not exist: see :func:`c_available`)."""
    _check_runtime(runtime)
    env = os.environ.get(PROGRAM_ENV[runtime])
    return Path(env) if env else EXAMPLES[runtime] / "classify"


@functools.lru_cache(maxsize=None)
def _probe(exe: str, mtime: float) -> tuple[str | None, str | None]:
    """(ONNX Runtime version, None) or (None, reason), from ``classify --version``."""
    try:
        proc = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        return None, f"cannot run {exe}: {e}"
    m = re.fullmatch(r"onnxruntime (\S+) \((?:C|C\+\+) API \d+\)", proc.stdout.strip())
    if proc.returncode == 0 and m:
        return m.group(1), None
    lines = [ln for ln in (proc.stderr.strip() or proc.stdout.strip()).splitlines() if ln.strip()]
    why = lines[-1].removeprefix("error: ") if lines else f"exit status {proc.returncode}"
    return None, f"{exe} --version failed: {why}"


def _state(runtime: str) -> tuple[str | None, str | None]:
    exe = program(runtime)
    if not exe.is_file() or not os.access(exe, os.X_OK):
        how = f"${PROGRAM_ENV[runtime]}" if os.environ.get(PROGRAM_ENV[runtime]) else f"build it: {BUILD_HINT[runtime]}"
        return None, f"the {runtime.upper()} example is not built ({exe} is missing; {how})"
    return _probe(str(exe), exe.stat().st_mtime)


def c_available(runtime: str = "c") -> str | None:
    """Why ``runtime`` ("c" or "cpp") cannot be used here, or None when it can: the program must
    exist and ``classify --version`` must run (it loads ONNX Runtime)."""
    return _state(_check_runtime(runtime))[1]


def c_version(runtime: str = "c") -> str | None:
    """The ONNX Runtime version the program runs on (e.g. ``"1.31.1"``); None when unavailable."""
    return _state(_check_runtime(runtime))[0]




def _label(runtime: str) -> str:
    return f"examples/{runtime}/classify, ONNX Runtime's {API[runtime]}, {THREADS} thread{'s' if THREADS > 1 else ''}"


def _record(runtime: str, precision: str, sets: list[dict], tol: Tolerance) -> dict:
    return parity_record(backend=runtime, runtime=RUNTIMES[runtime], version=c_version(runtime), reference="test-data",
                         precision=precision, tol=tol, batch_sizes=[s["batch"] for s in sets if s["batch"] is not None],
                         distributions=[s["name"] for s in sets], label=_label(runtime))


def _numbered(folder: Path, prefix: str) -> list[Path]:
    found = []
    for p in folder.glob(f"{prefix}_*.pb"):
        m = re.fullmatch(rf"{prefix}_(\d+)\.pb", p.name)
        if m:
            found.append((int(m.group(1)), p))
    return [p for _, p in sorted(found)]


def _test_sets(root: Path, entry: dict) -> list[dict]:
    folders = entry.get("test_data", {}).get("sets") or list(dict.fromkeys(
        f["path"].rsplit("/", 1)[0] for f in entry["files"] if f["role"] == "test_input"))
    if not folders:
        raise ZooError(f"{entry['model']}: the manifest lists no test data")
    sets = []
    for rel in folders:
        folder = contained(root, rel)
        if not folder.is_dir():
            raise ZooError(f"{entry['model']}: test data folder {rel} is missing")
        inputs, outputs = _numbered(folder, "input"), _numbered(folder, "output")
        if len(inputs) != 1 or not outputs:
            raise ZooError(f"{entry['model']}: {rel} must hold one input_0.pb and output_*.pb "
                           f"(the C example feeds one input; found {len(inputs)} input(s), {len(outputs)} output(s))")
        sets.append({"name": rel.rstrip("/").rsplit("/", 1)[-1], "input": inputs[0], "outputs": outputs,
                     "batch": entry.get("test_data", {}).get("batch")})
    return sets


def command(runtime: str, model: str | os.PathLike, inputs: str | os.PathLike, outputs: Iterable[str | os.PathLike],
            tol: Tolerance) -> list[str]:
    """The command line that checks one model file on one test set."""
    cmd = [str(program(runtime)), str(model), str(inputs)]
    for out in outputs:
        cmd += ["--expect", str(out)]
    return cmd + ["--atol", repr(tol.atol), "--rtol", repr(tol.rtol), "--threads", str(THREADS), "--json"]


def _run_one(runtime: str, model: Path, test_set: dict, tol: Tolerance) -> dict:
    """The program's JSON result, or ``{"verdict": "fail", ...}`` / ``{"verdict": "unavailable", ...}``."""
    cmd = command(runtime, model, test_set["input"], test_set["outputs"], tol)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise ZooError(f"{cmd[0]} did not finish within {TIMEOUT_S:g}s on {model}") from None
    except OSError as e:
        raise ZooError(f"cannot run {cmd[0]}: {e}") from None
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    message = lines[-1].removeprefix("error: ") if lines else f"exit status {proc.returncode}"
    if proc.returncode in (0, 1) and proc.stdout.strip():
        try:
            return json.loads(proc.stdout.strip().splitlines()[-1])
        except json.JSONDecodeError:
            raise ZooError(f"{cmd[0]} printed no JSON result (exit {proc.returncode}): {message[:500]}") from None
    if proc.returncode == 1:  # ONNX Runtime could not load or run the model: the check failed
        return {"verdict": "fail", "failed_check": "values", "reason": message[:500]}
    if proc.returncode == 3:
        return {"verdict": "unavailable", "reason": message[:500]}
    raise ZooError(f"{cmd[0]} exited with status {proc.returncode}: {message[:500]}")


def _merge(rec: dict, checks: list[dict], means: list[float | None]) -> None:
    """Worst over outputs and test sets, as verify/node/verify.mjs aggregates."""
    for m in checks:
        m = {k: float(v) if isinstance(v, int) and not isinstance(v, bool) else v for k, v in m.items()}
        if rec["output"] is None or m["max_abs_error"] is None or m["max_abs_error"] >= (rec["max_abs_error"] or 0):
            rec["output"] = m["output"]
        first = not means
        for k in _METRICS:
            rec[k] = m[k] if first else (None if rec[k] is None or m[k] is None else max(rec[k], m[k]))
        cos = m["cosine_similarity"]
        rec["cosine_similarity"] = cos if first or rec["cosine_similarity"] is None else min(rec["cosine_similarity"], cos)
        if m["top1_agreement"] is not None:
            t = rec["top1_agreement"]
            rec["top1_agreement"] = m["top1_agreement"] if t is None else min(t, m["top1_agreement"])
        means.append(m["mean_abs_error"])
        rec["mean_abs_error"] = None if None in means else sum(means) / len(means)


def check_model(runtime: str, model: Path, precision: str, sets: list[dict], tol: Tolerance,
                rel: str | None = None) -> dict:
    """One model file in one runtime over every test set: a parity record (never raises for a
    mismatch; raises ``ZooError`` for bad input the program reports)."""
    rec = _record(runtime, precision, sets, tol)
    reason = c_available(runtime)
    if reason is not None:
        return rec | {"verdict": "unavailable", "reason": reason}
    means: list[float | None] = []
    for s in sets:
        result = _run_one(runtime, model, s, tol)
        if result["verdict"] == "unavailable":
            return rec | {"verdict": "unavailable", "reason": result["reason"]}
        if s["batch"] is None and result.get("input"):
            rec["batch_sizes"] = sorted(set(rec["batch_sizes"]) | {result["input"]["shape"][0]})
        rec["version"] = result.get("onnxruntime", rec["version"])
        _merge(rec, result.get("checks", []), means)
        if result["verdict"] == "fail":
            what = f"{s['name']} batch {result['input']['shape'][0]}" if result.get("input") else s["name"]
            return rec | {"verdict": "fail", "failed_check": result["failed_check"],
                          "reason": f"{what}: {result['reason']}"}
    return rec


def run_c(artifacts_dir: str | os.PathLike, manifest: dict, names: Iterable[str] | None = None,
          runtimes: Iterable[str] = ("c",), precisions: Iterable[str] | None = None,
          tolerances: Tolerances | None = None) -> dict[str, list[dict]]:
    """Check the artifacts in ``artifacts_dir`` (a folder with ``manifest.json``, already loaded and
    validated by the caller as ``manifest``) in C / C++.

    Every ``role == "model"`` file of each model (every built precision, or only ``precisions``) with
    every runtime of ``runtimes`` ("c": examples/c/classify, "cpp": examples/cpp/classify), on the
    model's test data (``test_data.sets``), against the PyTorch-computed ``output_*.pb``.

    ``names``: models to check (default: every model of the manifest). ``tolerances``: precision ->
    :class:`~zoo.verify.parity.Tolerance` or ``(atol, rtol)``; default
    :data:`zoo.verify.parity.DEFAULT_TOLERANCES`.

    Returns ``{model name: [parity record, ...]}``, one record per model file x runtime, each valid
    against the manifest schema's ``$defs/parity``, in manifest file order then runtime order. A
    mismatch is a record with ``verdict == "fail"`` and ``failed_check`` names | shapes | values (it
    does not raise). A program that is not built gives ``verdict == "unavailable"`` records with
    the reason (and the make command), never a silent pass.

    Raises ``ValueError`` for an unknown runtime, model name or missing tolerance, and
    ``ZooError`` for bad input the program reports (a missing file, a corrupted ``.pb``), a crash
    or a timeout.
    """
    root = Path(artifacts_dir)
    runtimes = [_check_runtime(r) for r in dict.fromkeys(runtimes)]
    if not runtimes:
        raise InputError(f"give at least one C runtime ({', '.join(RUNTIMES)})")
    by_name, wanted = model_files(manifest, names, precisions, tolerances)
    selected = list(wanted)
    for n, files in wanted.items():
        for f in files:
            if not contained(root, f["path"]).is_file():
                raise ZooError(f"{n}: {f['path']} is missing")
    results: dict[str, list[dict]] = {n: [] for n in selected}
    for n in selected:
        sets = _test_sets(root, by_name[n]) if wanted[n] else []
        for f in wanted[n]:
            tol = tolerance(tolerances, f["precision"])
            for r in runtimes:
                results[n].append(check_model(r, contained(root, f["path"]), f["precision"], sets, tol))
    return results


def check_files(files: Mapping[str, bytes], entry: dict, runtimes: Iterable[str] = ("c",), *,
                tolerances: Tolerances | None = None) -> list[dict]:
    """One model's files, given in memory, checked in C / C++ before anything is written.

    As :func:`zoo.verify.js.check_files`: ``files`` maps the relative paths of ``entry["files"]`` to
    their bytes; they are written, with a one-entry manifest, into a temporary folder (removed
    afterwards) and checked with :func:`run_c`.
    """
    return check_in_memory(run_c, files, entry, runtimes, tolerances=tolerances, prefix="zoo-c-")


def build_extra(runtimes: Iterable[str]):
    """The ``zoo build`` step that checks each model's files (every precision) in the C / C++
    ``runtimes`` (see :func:`c_available`) before anything is written."""
    return build_step(check_files, tuple(_check_runtime(r) for r in runtimes))




def _read_manifest(root: Path) -> dict:
    """The manifest's models, read here as verify.mjs reads it (the build layer validates manifests)."""
    path = root / "manifest.json" if root.is_dir() else root
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise ZooError(f"no manifest at {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ZooError(f"cannot read {path}: {e}") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("models"), list):
        raise ZooError(f"{path}: no \"models\" list")
    return manifest


def _fmt(x) -> str:
    return "-" if x is None else f"{x:.2e}"


def main(argv: list[str] | None = None) -> int:
    """``python -m zoo.verify.c ARTIFACTS [...]``: a table (or ``--json``), exit 0 / 1 / 2 / 3."""
    args = cli("python -m zoo.verify.c", __doc__.split("\n\n")[0], "c", "c,cpp (default: c)").parse_args(argv)
    split = lambda s: [x.strip() for x in s.split(",") if x.strip()] if s else None  # noqa: E731
    try:
        target = Path(args.artifacts)
        results = run_c(target if target.is_dir() else target.parent, _read_manifest(target), split(args.models),
                        split(args.runtimes) or [], split(args.precisions))
    except (ValueError, ZooError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    records = [(n, r) for n, recs in results.items() for r in recs]
    if args.json:
        print(json.dumps({"models": results}, indent=1))
    else:
        head = ("model", "runtime", "precision", "verdict", "max abs", "top-1", "atol", "rtol")
        rows = [head] + [(n, r["runtime"], r["precision"], r["verdict"], _fmt(r["max_abs_error"]),
                          "-" if r["top1_agreement"] is None else f"{r['top1_agreement']:.3f}", str(r["atol"]),
                          str(r["rtol"])) for n, r in records]
        widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
        for i, row in enumerate(rows):
            print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
            if i == 0:
                print("  ".join("-" * w for w in widths))
    failed = [(n, r) for n, r in records if r["verdict"] == "fail"]
    for n, r in failed:
        print(f"FAILED: {n} {r['runtime']} ({r['precision']}) {r['failed_check']}: {r['reason']}", file=sys.stderr)
    unavailable = {f"{r['runtime']}: {r['reason']}" for _, r in records if r["verdict"] == "unavailable"}
    if unavailable and not failed:
        print(f"UNAVAILABLE: {'; '.join(sorted(unavailable))}", file=sys.stderr)
    return 1 if failed else 3 if unavailable else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
