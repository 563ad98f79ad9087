"""The consumer examples as a user runs them: examples/node (its lockfile, its output) and the
sha256 pin of examples/node/classify.mjs and of the C and C++ programs (issue 22): the right sha256
runs the model, any other bytes are refused before ONNX Runtime reads them. The browser page's pin
is tested in test_browser.py. The model is the session's small build (dense_b0, input width 64).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from zoo.verify import c, js

from tamper import change_one_weight_byte, sha256_file
from test_c import RUNTIMES, make, run

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "node"


@pytest.fixture(scope="module")
def artifacts(small_build) -> Path:
    reason = js.js_available("node")
    if reason is not None:
        pytest.fail(f"Node.js and verify/node's packages are required for these tests: {reason}")
    return small_build


@pytest.fixture(scope="module")
def programs() -> dict[str, Path]:
    for r in RUNTIMES:
        make(r)
        reason = c.c_available(r)
        if reason is not None:
            pytest.fail(f"the {r} example is required for these tests and is unavailable: {reason}")
    return {r: c.program(r) for r in RUNTIMES}


def data_set(artifacts: Path) -> tuple[Path, Path]:
    folder = artifacts / "dense_b0" / "test_data_set_0"
    return folder / "input_0.pb", folder / "output_0.pb"


# --- the Node.js example ------------------------------------------------------------------------


def test_example_lockfile_is_the_verifiers_packages():
    """examples/node/package-lock.json (what `npm ci` installs) locks onnxruntime-node at the pinned
    version, with exactly the versions and hashes of verify/node's lock that CI installs and tests."""
    example = json.loads((EXAMPLE / "package.json").read_text())
    lock = json.loads((EXAMPLE / "package-lock.json").read_text())
    verifier = json.loads((js.NODE_DIR / "package-lock.json").read_text())["packages"]
    assert lock["lockfileVersion"] == 3 and lock["packages"][""]["dependencies"] == example["dependencies"]
    assert lock["packages"]["node_modules/onnxruntime-node"]["version"] == example["dependencies"]["onnxruntime-node"]
    for path, pkg in lock["packages"].items():
        if path:
            assert (pkg["version"], pkg["integrity"]) == (verifier[path]["version"], verifier[path]["integrity"]), path
            assert "resolved" not in pkg, path  # no registry host in the repository


@pytest.fixture
def example(tmp_path) -> Path:
    """examples/node, copied as a user would, with the packages of verify/node as its node_modules."""
    for f in ("classify.mjs", "package.json", "package-lock.json"):
        shutil.copy(EXAMPLE / f, tmp_path / f)
    (tmp_path / "node_modules").symlink_to(js.NODE_DIR / "node_modules", target_is_directory=True)
    return tmp_path


def run_example(example: Path, *args) -> subprocess.CompletedProcess:
    return subprocess.run([js.node_executable(), "classify.mjs", *map(str, args)], capture_output=True, text=True,
                          cwd=example, timeout=120)


def test_node_example_prints_the_top_class(artifacts, example):
    model = artifacts / "dense_b0" / "model.onnx"
    proc = run_example(example, model, "5")
    assert proc.returncode == 0, proc.stderr

    dim = 64
    x = np.sin(np.arange(1, 5 * dim + 1, dtype=np.float64)).astype(np.float32).reshape(5, dim)
    logits = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    lines = proc.stdout.splitlines()
    assert len(lines) == 5
    for row, line in enumerate(lines):
        top = int(np.argmax(logits[row]))
        head, logit = line.rsplit(" (logit ", 1)
        assert head == f"row {row}: class {top}"
        assert float(logit.rstrip(")")) == pytest.approx(float(logits[row, top]), abs=1e-3)

    bad = run_example(example)
    assert bad.returncode == 2 and "usage: node classify.mjs" in bad.stderr
    missing = run_example(example, artifacts / "nope.onnx")
    assert (missing.returncode, missing.stderr) == (2, f"error: cannot open {artifacts / 'nope.onnx'}: ENOENT\n")


def test_node_example_runs_the_model_it_is_pinned_to(artifacts, example):
    model = artifacts / "dense_b0" / "model.onnx"
    plain = run_example(example, model, "3")
    pinned = run_example(example, model, "3", "--sha256", sha256_file(model).upper())
    assert pinned.returncode == 0 and pinned.stderr == "", pinned.stderr
    assert pinned.stdout == plain.stdout and len(pinned.stdout.splitlines()) == 3


def test_node_example_refuses_bytes_other_than_the_pinned_ones(artifacts, example, tmp_path):
    pin = sha256_file(artifacts / "dense_b0" / "model.onnx")
    model = tmp_path / "model.onnx"
    shutil.copyfile(artifacts / "dense_b0" / "model.onnx", model)
    change_one_weight_byte(model)
    assert run_example(example, model, "3").returncode == 0  # a valid model: unpinned, it runs
    proc = run_example(example, model, "3", "--sha256", pin)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr == f"error: {model}: sha256 {sha256_file(model)} differs from the pinned {pin}; not loaded\n"

    proc = run_example(example, model, "--sha256", "abc")
    assert (proc.returncode, proc.stderr) == (2, "error: --sha256 abc: expected 64 hex digits\n")


@pytest.mark.parametrize("size", [0, 65536, 65537 + 3 * 65536])
def test_node_example_hashes_any_size_in_a_stream(example, tmp_path, size):
    """The digest it reports is hashlib's, across read-chunk boundaries."""
    blob = tmp_path / "blob.onnx"
    blob.write_bytes(np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8).tobytes())
    proc = run_example(example, blob, "--sha256", "0" * 64)
    assert proc.returncode == 1 and f"sha256 {sha256_file(blob)} differs" in proc.stderr, proc.stderr


# --- a pinned sha256 (--sha256 HEX): other bytes are refused before ONNX Runtime reads them ---------


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_runs_the_model_it_is_pinned_to(artifacts, programs, runtime):
    x_path, _ = data_set(artifacts)
    model = artifacts / "dense_b0" / "model.onnx"
    plain = run(programs[runtime], model, x_path)
    pinned = run(programs[runtime], model, x_path, "--sha256", sha256_file(model).upper())
    assert pinned.returncode == 0 and pinned.stderr == "", pinned.stderr
    assert pinned.stdout == plain.stdout and len(pinned.stdout.splitlines()) == 6


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_refuses_bytes_other_than_the_pinned_ones(artifacts, programs, runtime, tmp_path):
    pin = sha256_file(artifacts / "dense_b0" / "model.onnx")
    model = tmp_path / "model.onnx"
    shutil.copyfile(artifacts / "dense_b0" / "model.onnx", model)
    change_one_weight_byte(model)
    x_path, y_path = data_set(artifacts)
    assert run(programs[runtime], model, x_path).returncode == 0  # a valid model: unpinned, it runs
    proc = run(programs[runtime], model, x_path, "--expect", y_path, "--atol", "1e-4", "--rtol", "1e-3",
               "--json", "--sha256", pin)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr == f"error: {model}: sha256 {sha256_file(model)} differs from the pinned {pin}; not loaded\n"
    # refused before anything else is read: a missing input file is not even noticed
    proc = run(programs[runtime], model, tmp_path / "nope.pb", "--sha256", pin)
    assert proc.returncode == 1 and "differs from the pinned" in proc.stderr


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_hashes_any_size_in_a_stream(programs, runtime, tmp_path):
    """The digest it reports is hashlib's, across the 64 KiB read-chunk boundaries."""
    for size in (0, 65535, 65536, 65537 + 3 * 65536):
        blob = tmp_path / f"{size}.onnx"
        blob.write_bytes(np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8).tobytes())
        proc = run(programs[runtime], blob, "--sha256", "0" * 64)
        assert proc.returncode == 1 and f"sha256 {sha256_file(blob)} differs" in proc.stderr, proc.stderr
    proc = run(programs[runtime], tmp_path, "--sha256", "0" * 64)  # a folder: cannot read, bad input
    assert proc.returncode == 2 and proc.stderr.startswith("error: cannot "), proc.stderr


# --- the deployment profile (--profile, issue 34): the examples load the file it names for them ----


@pytest.fixture(scope="module")
def profiled(small_build, tmp_path_factory) -> Path:
    """A model folder: model.onnx, its opset 15 target, and a profile.json (zoo.builder.profile's
    layout) that points each example's runtime at the target, another version at model.onnx."""
    from zoo.exporters.targets import opset_target_bytes

    folder = tmp_path_factory.mktemp("profiled")
    shutil.copyfile(small_build / "dense_b0" / "model.onnx", folder / "model.onnx")
    (folder / "model.opset15.onnx").write_bytes(opset_target_bytes((folder / "model.onnx").read_bytes(), 15))
    node_version = json.loads((js.NODE_DIR / "node_modules" / "onnxruntime-node" / "package.json").read_text())["version"]

    def row(runtime, version, file, batch=None):
        return {"runtime": runtime, "version": version, "batch_size": batch, "file": file,
                "sha256": sha256_file(folder / file), "precision": "fp32", "format": "onnx",
                "settings": {"threads": 1, "execution_provider": None, "graph_optimization_level": "basic"},
                "measured": None}

    entries = [row("onnxruntime", "1.16.3", "model.onnx"), row("onnxruntime", ort.__version__, "model.opset15.onnx"),
               row("onnxruntime-node", "1.16.3", "model.onnx"),
               row("onnxruntime-node", node_version, "model.opset15.onnx")]
    (folder / "profile.json").write_text(json.dumps({"profile_version": 1, "model": "dense_b0", "entries": entries}))
    return folder


def _profile_with(folder: Path, tmp_path: Path, change) -> Path:
    """A copy of the folder whose profile is changed by ``change(profile)``."""
    out = tmp_path / "copy"
    shutil.copytree(folder, out)
    profile = json.loads((out / "profile.json").read_text())
    change(profile)
    (out / "profile.json").write_text(json.dumps(profile))
    return out


def test_node_example_follows_the_profile(artifacts, example, profiled, tmp_path):
    proc = run_example(example, "--profile", profiled / "profile.json", "3")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.startswith("profile: model.opset15.onnx (sha256 ") and "graph optimisation basic" in proc.stderr
    assert proc.stdout == run_example(example, profiled / "model.opset15.onnx", "3").stdout
    # the profile's sha256 is a pin: other bytes of that file are refused before ONNX Runtime reads them
    bad = _profile_with(profiled, tmp_path, lambda p: None)
    change_one_weight_byte(bad / "model.opset15.onnx")
    proc = run_example(example, "--profile", bad / "profile.json", "3")
    assert proc.returncode == 1 and proc.stdout == "" and "differs from the pinned" in proc.stderr
    # no entry for this version: one line naming the versions it has
    old = _profile_with(profiled, tmp_path / "b", lambda p: p.update(entries=p["entries"][:3]))
    proc = run_example(example, "--profile", old / "profile.json")
    assert proc.returncode == 1 and "has no file for onnxruntime-node" in proc.stderr and "1.16.3" in proc.stderr
    # a file name that leaves the profile's folder is refused
    out = _profile_with(profiled, tmp_path / "c", lambda p: p["entries"][3].update(file="../model.onnx"))
    proc = run_example(example, "--profile", out / "profile.json")
    assert proc.returncode == 2 and "not a file name beside the profile" in proc.stderr


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_c_and_cpp_examples_follow_the_profile(artifacts, programs, runtime, profiled, tmp_path):
    x_path, y_path = data_set(artifacts)
    proc = run(programs[runtime], "--profile", profiled / "profile.json", x_path, "--expect", y_path,
               "--atol", "1e-4", "--rtol", "1e-3")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0].startswith(f"model   {profiled / 'model.opset15.onnx'} (onnxruntime ")
    assert proc.stderr.startswith("profile: model.opset15.onnx (sha256 ") and "threads 1, graph optimisation basic" in proc.stderr
    assert "check   logits: pass" in proc.stdout
    bad = _profile_with(profiled, tmp_path, lambda p: None)
    change_one_weight_byte(bad / "model.opset15.onnx")
    proc = run(programs[runtime], "--profile", bad / "profile.json", x_path)
    assert proc.returncode == 1 and "differs from the pinned" in proc.stderr
    old = _profile_with(profiled, tmp_path / "b", lambda p: p.update(entries=p["entries"][:1]))
    proc = run(programs[runtime], "--profile", old / "profile.json", x_path)
    assert proc.returncode == 1 and "has no file for onnxruntime" in proc.stderr and "versions: 1.16.3" in proc.stderr
    proc = run(programs[runtime], "--profile", profiled / "profile.json", "--sha256", "0" * 64)
    assert proc.returncode == 2 and "give --profile or --sha256" in proc.stderr
