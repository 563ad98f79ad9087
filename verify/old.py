"""Older runtimes, real ones: which files of a model each loads, and whether it matches PyTorch there.

A table of "which onnxruntime reads which IR version" is a claim; a load is a fact. The zoo keeps
older runtimes installed beside the current ones and runs every model file (the default file of
each precision and every target, :mod:`zoo.builder.targets`) in each:

* **onnxruntime (Python)** in a virtual environment of its own (it cannot share the zoo's: the
  zoo pins a newer onnxruntime and numpy 2, which onnxruntime 1.16's wheel predates). Found as
  ``$ZOO_OLD_ORT`` (Python executables, separated by ``os.pathsep``; empty: none), else every
  ``.venv-ort*/bin/python`` at the repository root (``.ci/run`` makes ``.venv-ort116`` with
  onnxruntime 1.16.3 and numpy 1.26). It runs ``verify/old_ort_child.py``, which needs nothing of
  the zoo.
* **onnxruntime-node and onnxruntime-web** (wasm) from ``verify/node-old`` (its own
  ``package.json`` and ``package-lock.json``: 1.16.3; ``ONNXRUNTIME_NODE_INSTALL=skip npm ci``),
  running ``verify/node-old/run.mjs``.

The child processes only load and run; the zoo compares their outputs with PyTorch's (the parity
matrix's cases, :func:`zoo.verify.matrix.check_backend`, the tolerances of ``verify/parity.py``).
Each (runtime, file) gives one parity record naming the file (``file``), its runtime and version:
``verdict`` "pass", or "fail" with the runtime's own words where it cannot load the file
(onnxruntime 1.16.3 on the default file: ``Unsupported model IR version: 10, max supported IR
version: 9``). These records are the evidence :func:`zoo.hub.attest.pick_file` chooses from.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import onnxio
from ..errors import ZooError
from .backends import Backend, Runner
from .js import node_executable

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CHILD = HERE / "old_ort_child.py"
NODE_OLD_DIR = HERE / "node-old"
NODE_SCRIPT = NODE_OLD_DIR / "run.mjs"
OLD_ORT_ENV = "ZOO_OLD_ORT"
NODE_INSTALL_HINT = "cd verify/node-old && ONNXRUNTIME_NODE_INSTALL=skip npm ci"
TIMEOUT_S = 600.0
# What each kind of old runtime is called in records: (backend prefix, runtime, provider).
KINDS = {"python": ("onnxruntime", "onnxruntime", "CPUExecutionProvider"),
         "node": ("node", "onnxruntime-node", None), "web": ("web", "onnxruntime-web", None)}


def _run_child(command: list[str], job: dict, cwd: Path | None = None) -> dict:
    with tempfile.TemporaryDirectory(prefix="zoo-old-") as tmp:
        job = dict(job, out_dir=tmp)
        path = Path(tmp) / "job.json"
        path.write_text(json.dumps(job), encoding="utf-8")
        try:
            proc = subprocess.run([*command, str(path)], capture_output=True, text=True, timeout=TIMEOUT_S, cwd=cwd)
        except subprocess.TimeoutExpired:
            raise ZooError(f"{command[0]} did not finish within {TIMEOUT_S:g}s") from None
        except OSError as e:
            raise ZooError(f"cannot run {command[0]}: {e.strerror or e}") from None
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        if proc.returncode != 0 or not lines:
            tail = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
            raise ZooError(f"{' '.join(command[:2])}: {tail[:300]}")
        result = json.loads(lines[-1])
        for rec in result.get("models", {}).values():  # read the outputs before the folder goes
            for out in rec.get("outputs", {}).values():
                out["data"] = np.fromfile(out.pop("path"), dtype="<f4").reshape(out["shape"])
        return result


@dataclass(frozen=True)
class OldRuntime:
    """One installed older runtime: how to start it, and what it is."""

    kind: str  # python | node | web
    command: tuple[str, ...]
    cwd: str | None = None

    @functools.cached_property
    def version(self) -> str:
        return _run_child(list(self.command), {"input_name": "input", "models": {}, "cases": {}},
                          Path(self.cwd) if self.cwd else None)["version"]

    @property
    def runtime(self) -> str:
        return KINDS[self.kind][1]

    @property
    def name(self) -> str:
        """``onnxruntime@1.16.3``, ``node@1.16.3``, ``web@1.16.3``."""
        return f"{KINDS[self.kind][0]}@{self.version}"

    def run(self, models: dict[str, str], cases: dict[str, np.ndarray], input_name: str) -> dict:
        """Each model file (key -> path) on each input: the child's result, outputs as arrays."""
        with tempfile.TemporaryDirectory(prefix="zoo-old-in-") as tmp:
            job_cases = {}
            for key, x in cases.items():
                p = Path(tmp) / f"{key}.bin"
                np.ascontiguousarray(x, dtype="<f4").tofile(p)
                job_cases[key] = {"input": str(p), "shape": list(x.shape)}
            return _run_child(list(self.command), {"input_name": input_name, "models": models, "cases": job_cases},
                              Path(self.cwd) if self.cwd else None)


def python_runtimes() -> list[OldRuntime]:
    env = os.environ.get(OLD_ORT_ENV)
    if env is not None:
        exes = [p for p in env.split(os.pathsep) if p]
    else:
        exes = sorted(str(p) for p in REPO.glob(".venv-ort*/bin/python") if p.exists())
    return [OldRuntime("python", (exe, str(CHILD))) for exe in exes]


def node_runtimes() -> list[OldRuntime]:
    exe = node_executable()
    if exe is None or not (NODE_OLD_DIR / "node_modules" / "onnxruntime-node").is_dir():
        return []
    return [OldRuntime(kind, (exe, str(NODE_SCRIPT), kind), str(NODE_OLD_DIR)) for kind in ("node", "web")]


def old_runtimes() -> list[OldRuntime]:
    """Every older runtime installed here (see the module docstring), each that answers a probe."""
    out = []
    for rt in python_runtimes() + node_runtimes():
        try:
            rt.version  # noqa: B018 - a runtime that cannot start is not offered
        except ZooError:
            continue
        out.append(rt)
    return out


_CPP_SITE = re.compile(r"/onnxruntime_src/\S+:\d+ .*?\)\s(?=[A-Z])")


def short_error(text: str) -> str:
    """The runtime's words without the C++ source location and signature it prefixes them with
    (``.../model.cc:149 onnxruntime::Model::Model(...) Unsupported model IR version: 10, ...``)."""
    return _CPP_SITE.sub("", text)


def _key(x: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(x, dtype="<f4").tobytes() + str(x.shape).encode()).hexdigest()


class _Replay(Runner):
    """The outputs the child computed, handed back case by case (check_backend asks one at a time)."""

    def __init__(self, outputs: dict[str, np.ndarray], output_name: str):
        self.outputs, self.output_name = outputs, output_name

    def run(self, feeds):
        x = next(iter(feeds.values()))
        return {self.output_name: self.outputs[_key(x)]}


@dataclass
class OldBackend(Backend):
    """An older runtime as a parity-matrix backend: ``load`` runs every case in the child at once."""

    old: OldRuntime | None = None
    cases: dict = field(default_factory=dict)  # key -> input array
    input_name: str = "input"
    output_name: str = "logits"

    def __post_init__(self):
        kind = self.old.kind
        self.runtime, self.provider = KINDS[kind][1], KINDS[kind][2]
        self.optimization = "all" if kind == "python" else None

    @property
    def name(self) -> str:
        return self.old.name + (f":{self.provider}" if self.provider else "")

    def version(self):
        return self.old.version

    def load(self, model: onnxio.ModelRef) -> Runner:
        with onnxio.as_path(model, "zoo-old-model-") as path:
            result = self.old.run({"m": str(path)}, self.cases, self.input_name)
        rec = result["models"]["m"]
        if not rec["loaded"] or rec["error"]:
            raise RuntimeError(short_error(rec["error"] or "not loaded"))
        return _Replay({k: out["data"] for k, out in rec["outputs"].items()}, self.output_name)


def old_records(model, files: dict[str, tuple[str, onnxio.ModelRef]], *, input_dim: int, seed: int,
                input_name: str = "input", output_name: str = "logits", runtimes: list[OldRuntime] | None = None,
                options=None, progress=lambda m: None) -> list[dict]:
    """Parity records of every file (``{path: (precision, model ref)}``) in every older runtime
    (default: :func:`old_runtimes`), against ``model`` (PyTorch) on the matrix's cases; each names its
    file. A file a runtime cannot load gives a "fail" record with the runtime's words; nothing raises."""
    from .matrix import MatrixOptions, check_backend, declared_outputs, reference_cases
    from .parity import tolerance_for

    runtimes = old_runtimes() if runtimes is None else runtimes
    if not runtimes:
        return []
    options = options or MatrixOptions()
    cases = reference_cases(model, input_dim, output_name, seed, options)
    inputs = {_key(c.x): c.x for c in cases}
    records = []
    for path, (precision, ref) in files.items():
        declared = None if path.endswith(".ort") else declared_outputs(ref)
        if declared is None:  # the ORT format is not ONNX: its outputs are declared by the model it came from
            declared = {output_name: ["batch", int(cases[0].expected[output_name].shape[1])]}
        for rt in runtimes:
            backend = OldBackend(old=rt, cases=inputs, input_name=input_name, output_name=output_name)
            rec = check_backend(backend, ref, cases, input_name, precision, tolerance_for(precision),
                                declared=declared)
            rec["file"] = path
            records.append(rec)
            err = rec["max_abs_error"]
            progress(f"{path} in {rt.runtime} {rt.version}: {rec['verdict']}"
                     + (f", max abs {err:.2e}" if err is not None else "")
                     + (f" ({rec['reason'][:160]})" if rec["verdict"] != "pass" else ""))
    return records


def old_runtimes_extra(runtimes: list[OldRuntime] | None = None):
    """A ``zoo build`` extra: every model file and target of the model in every older runtime
    installed here, as parity records (evidence, not a gate: an old runtime that cannot load the
    default file is the reason the targets exist)."""

    def extra(art, entry: dict, staged: dict, progress) -> None:
        rts = old_runtimes() if runtimes is None else runtimes
        if not rts:
            return
        with_data = {f.get("of") for f in entry["files"] if f["role"] == "external_data"}
        files = {f["path"]: (f["precision"], staged[f["path"]]) for f in entry["files"]
                 if f["role"] in ("model", "target") and f["path"] in staged and f["path"] not in with_data}
        spec = art.request.spec
        entry["parity"].extend(old_records(art.model, files, input_dim=art.request.effective_input_dim,
                                           seed=art.request.seed, input_name=spec.input_name,
                                           output_name=spec.output_name, runtimes=rts, progress=progress))

    return extra
