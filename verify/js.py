"""JavaScript runtimes: the artifacts checked in onnxruntime-node and onnxruntime-web (wasm).

The checking itself is done by ``verify/node/verify.mjs`` (a Node.js script with its own
``package.json`` and lock file; install it with
``cd verify/node && ONNXRUNTIME_NODE_INSTALL=skip npm ci``). This module runs that script as a
subprocess with ``--json`` and hands back its parity records, which have the shape of the
manifest's ``parity`` records (``zoo/schema/manifest.schema.json``, ``$defs/parity``): backend
``node`` or ``web``, runtime ``onnxruntime-node`` / ``onnxruntime-web``, reference ``test-data``.

Tolerances have one source of truth, :data:`verify.parity.DEFAULT_TOLERANCES`: they are passed to
the script as ``--tol PRECISION=ATOL,RTOL`` arguments (the script has no defaults of its own).

From the command line (a table on stdout, exit status of the script)::

    python -m zoo.verify.js artifacts                    # every model, every precision, node + web
    python -m zoo.verify.js artifacts --runtimes node --models dense_b0 --json
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

from ..errors import InputError, ZooError
from ..spec import JS_RUNTIMES, PRECISIONS
from .parity import DEFAULT_TOLERANCES, Tolerance
from .records import parity_record
from .testdata import (
    Tolerances,
    build_step,
    check_in_memory,
    cli,
    model_files,
    tolerance,
)

NODE_DIR = Path(__file__).resolve().parent / "node"
SCRIPT = NODE_DIR / "verify.mjs"
RUNTIMES = {r: f"onnxruntime-{r}" for r in JS_RUNTIMES}  # name -> npm package
MIN_NODE_MAJOR = 18
NODE_ENV = "ZOO_NODE"  # path of the node executable (default: ``node`` on PATH)
# A whole run (every model, both runtimes) must finish within this; B7 in wasm takes tens of seconds.
TIMEOUT_S = 1800.0
INSTALL_HINT = "cd verify/node && ONNXRUNTIME_NODE_INSTALL=skip npm ci"



def node_executable() -> str | None:
    """The Node.js executable: ``$ZOO_NODE``, else ``node`` on PATH, else None."""
    exe = os.environ.get(NODE_ENV) or shutil.which("node")
    return exe if exe and (os.path.sep not in exe or os.access(exe, os.X_OK)) else None


def _check_runtime(runtime: str) -> str:
    if runtime not in RUNTIMES:
        raise InputError(f"unknown JavaScript runtime {runtime!r}; valid: {', '.join(RUNTIMES)}")
    return runtime


@functools.lru_cache(maxsize=None)
def _probe(exe: str, runtime: str) -> tuple[str | None, str | None]:
    """(version, None) or (None, reason), from ``verify.mjs --probe``."""
    try:
        proc = subprocess.run([exe, str(SCRIPT), "--probe", runtime], capture_output=True, text=True, timeout=60,
                              cwd=NODE_DIR)
    except (OSError, subprocess.TimeoutExpired) as e:
        return None, f"cannot run {exe}: {e}"
    out = (proc.stdout.strip() or proc.stderr.strip()).splitlines()
    line = out[-1] if out else f"exit status {proc.returncode}"
    return (line, None) if proc.returncode == 0 else (None, line)


def _node_problem() -> str | None:
    exe = node_executable()
    if exe is None:
        return f"Node.js not found (install Node.js >= {MIN_NODE_MAJOR}, or set ${NODE_ENV})"
    try:
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"cannot run {exe}: {e}"
    try:
        major = int(out.lstrip("v").split(".")[0])
    except ValueError:
        return f"{exe} --version printed {out!r}, not a Node.js version"
    if major < MIN_NODE_MAJOR:
        return f"Node.js {out} is too old (need >= {MIN_NODE_MAJOR})"
    if not (NODE_DIR / "node_modules").is_dir():
        return f"the JavaScript packages are not installed ({INSTALL_HINT})"
    return None


def js_available(runtime: str) -> str | None:
    """Why ``runtime`` ("node" or "web") cannot be used here, or None when it can.

    Checks for Node.js (``$ZOO_NODE`` or ``node`` on PATH, version >= 18), for the packages in
    ``verify/node/node_modules``, and that the runtime's package actually loads. Raises
    ``ValueError`` for a runtime name other than "node" or "web".
    """
    _check_runtime(runtime)
    problem = _node_problem()
    if problem:
        return problem
    return _probe(node_executable(), runtime)[1]


def js_version(runtime: str) -> str | None:
    """E.g. ``"node v20.20.2, onnxruntime-node 1.30.0"``; None when unavailable."""
    _check_runtime(runtime)
    if _node_problem():
        return None
    return _probe(node_executable(), runtime)[0]


def tolerance_args(tolerances: Tolerances | None = None) -> list[str]:
    """``--tol`` arguments for the script: ``["--tol", "fp32=0.0001,0.001", ...]``."""
    args = []
    for precision, tol in (DEFAULT_TOLERANCES if tolerances is None else tolerances).items():
        t = tol if isinstance(tol, Tolerance) else Tolerance(*tol)
        args += ["--tol", f"{precision}={t.atol!r},{t.rtol!r}"]
    return args


def script_command(artifacts_dir: str | os.PathLike, names: Iterable[str] | None = None,
                   runtimes: Iterable[str] = ("node", "web"), precisions: Iterable[str] | None = None,
                   tolerances: Tolerances | None = None, json_output: bool = True) -> list[str]:
    """The command line that runs ``verify.mjs`` (needs Node.js; see :func:`node_executable`)."""
    cmd = [node_executable() or "node", str(SCRIPT), str(Path(artifacts_dir).resolve())]
    cmd += tolerance_args(tolerances)
    cmd += ["--runtimes", ",".join(runtimes)]
    if names is not None:
        cmd += ["--models", ",".join(names)]
    # Default: the built precisions; the files zoo bench --recommend adds have no parity tolerance.
    cmd += ["--precisions", ",".join(PRECISIONS if precisions is None else precisions)]
    if json_output:
        cmd.append("--json")
    return cmd


def _unavailable(entry: dict, runtime: str, precision: str, reason: str, tol: Tolerance) -> dict:
    sets = entry.get("test_data", {}).get("sets", [])
    return parity_record(backend=runtime, runtime=RUNTIMES[runtime], version=None, reference="test-data",
                         precision=precision, tol=tol,
                         batch_sizes=[entry["test_data"]["batch"]] if "test_data" in entry else [],
                         distributions=[s.rsplit("/", 1)[-1] for s in sets], verdict="unavailable", reason=reason)




def run_js(artifacts_dir: str | os.PathLike, manifest: dict, names: Iterable[str] | None = None,
           runtimes: Iterable[str] = ("node", "web"), precisions: Iterable[str] | None = None,
           tolerances: Tolerances | None = None) -> dict[str, list[dict]]:
    """Check the artifacts in ``artifacts_dir`` (a folder with ``manifest.json``, already loaded and
    validated by the caller as ``manifest``) in JavaScript.

    Runs ``verify/node/verify.mjs --json`` as a subprocess: every ``role == "model"`` file of each
    model (every built precision, or only ``precisions``) with every runtime of ``runtimes`` ("node":
    onnxruntime-node, "web": onnxruntime-web's wasm backend), on the model's test data
    (``test_data.sets``), against the PyTorch-computed ``output_*.pb``.

    ``names``: models to check (default: every model of the manifest). ``tolerances``: precision ->
    :class:`~verify.parity.Tolerance` or ``(atol, rtol)``; default
    :data:`verify.parity.DEFAULT_TOLERANCES`.

    Returns ``{model name: [parity record, ...]}``, one record per model file x runtime, each valid
    against the manifest schema's ``$defs/parity``, in manifest file order then runtime order. A
    mismatch is a record with ``verdict == "fail"`` and ``failed_check`` names | shapes | values (it
    does not raise). A runtime that cannot be used here (no Node.js, packages not installed) gives
    ``verdict == "unavailable"`` records with the reason, never a silent pass.

    Raises ``ValueError`` for an unknown
    runtime, model name or missing tolerance, and ``ZooError`` when the script fails to run (bad
    input it reports, a crash, a timeout).
    """
    root = Path(artifacts_dir)
    runtimes = [_check_runtime(r) for r in dict.fromkeys(runtimes)]
    if not runtimes:
        raise InputError("give at least one JavaScript runtime (node, web)")
    by_name, wanted = model_files(manifest, names, precisions, tolerances)
    selected = list(wanted)

    reasons = {r: js_available(r) for r in runtimes}
    usable = [r for r in runtimes if reasons[r] is None]
    results: dict[str, list[dict]] = {n: [] for n in selected}
    script: dict[str, list[dict]] = {}
    if usable and any(wanted.values()):
        script = _run_script(root, selected, usable, precisions, tolerances)
    for n in selected:
        got = iter(script.get(n, []))
        for f in wanted[n]:
            for r in runtimes:
                if reasons[r] is not None:
                    results[n].append(_unavailable(by_name[n], r, f["precision"], reasons[r],
                                                   tolerance(tolerances, f["precision"])))
                else:
                    rec = next(got, None)
                    if rec is None or rec["runtime"] != RUNTIMES[r] or rec["precision"] != f["precision"]:
                        raise ZooError(f"verify.mjs returned records out of order for {n} ({f['path']}, {r})")
                    results[n].append(rec)
    return results


def _run_script(root: Path, names: list[str], runtimes: list[str], precisions, tolerances) -> dict[str, list[dict]]:
    cmd = script_command(root, names, runtimes, precisions, tolerances, json_output=True)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S, cwd=NODE_DIR)
    except subprocess.TimeoutExpired:
        raise ZooError(f"verify.mjs did not finish within {TIMEOUT_S:g}s") from None
    except OSError as e:
        raise ZooError(f"cannot run Node.js: {e}") from None
    if proc.returncode not in (0, 1, 3):
        tail = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
        msg = next((ln for ln in tail if ln.startswith("error:")), tail[-1] if tail else "")
        raise ZooError(f"verify.mjs exited with status {proc.returncode}: {msg.removeprefix('error: ')[:500]}")
    try:
        data = json.loads(proc.stdout)
        return data["models"]
    except (json.JSONDecodeError, KeyError, TypeError):
        raise ZooError(f"verify.mjs printed no JSON result (exit {proc.returncode}): {proc.stderr.strip()[-500:]}") from None


def check_files(files: Mapping[str, bytes], entry: dict, runtimes: Iterable[str] = ("node", "web"), *,
                tolerances: Tolerances | None = None) -> list[dict]:
    """Check one model's files, given in memory, in JavaScript before anything is written.

    ``files`` maps relative paths (as in ``entry["files"]``: ``<name>/model.onnx``,
    ``<name>/model.int8.onnx``, ``<name>/test_data_set_0/input_0.pb``, ...) to their bytes;
    ``entry`` is the model's manifest entry, which decides what is checked: every file of role
    "model" that it lists, on the test data of ``entry["test_data"]["sets"]``. Both are written,
    with a one-entry manifest, into a temporary folder (removed afterwards) and checked with
    :func:`run_js` in ``runtimes``.

    Returns the parity records of the model (see :func:`run_js`): ``verdict`` "fail" on a
    mismatch, "unavailable" where a runtime cannot be used. Raises ``ManifestError`` if ``entry``
    is not a valid manifest entry and ``ValueError`` if it lists a file that ``files`` lacks.
    The one-entry manifest is written for verify.mjs alone, in a private folder.
    """
    return check_in_memory(run_js, files, entry, runtimes, tolerances=tolerances, prefix="zoo-js-")


def build_extra(runtimes: Iterable[str]):
    """The ``zoo build`` step that checks each model's files (every precision) in the JavaScript
    ``runtimes`` ("node", "web"; see :func:`js_available`) before anything is written."""
    return build_step(check_files, tuple(_check_runtime(r) for r in runtimes))




def main(argv: list[str] | None = None) -> int:
    """``python -m zoo.verify.js ARTIFACTS [...]``: the script with the zoo's tolerances; its exit status."""
    args = cli("python -m zoo.verify.js", __doc__.split("\n\n")[0], "node,web", "node,web (default: both)").parse_args(argv)
    split = lambda s: [x.strip() for x in s.split(",") if x.strip()] if s else None  # noqa: E731
    problem = _node_problem()
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 3
    cmd = script_command(args.artifacts, split(args.models), split(args.runtimes), split(args.precisions),
                         json_output=args.json)
    return subprocess.run(cmd, cwd=NODE_DIR).returncode


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
