"""Issue 34: older runtimes are real (zoo.verify.old). onnxruntime 1.16.3 in a virtual environment of
its own (.venv-ort116) and onnxruntime-node / onnxruntime-web 1.16.3 (verify/node-old), as .ci/run
installs them, cannot load today's default file; each loads the file the zoo picks for it from the
records (zoo.hub.attest.pick_file) and matches PyTorch there."""

from __future__ import annotations

import pytest

from zoo.builder import manifest as mf
from zoo.builder.artifact import request_for
from zoo.hub import attest
from zoo.verify.matrix import MatrixOptions
from zoo.verify.old import old_records, old_runtimes, short_error

OLD = "1.16.3"
RUNTIMES = ("onnxruntime", "onnxruntime-node", "onnxruntime-web")


@pytest.fixture(scope="module")
def checked(targets_build):
    """The session's targets build of dense_b0 (input 64): its default file, opset 15 target and ORT
    format run in every old runtime (the opset 17 target is left out, to keep this short)."""
    entry = mf.entry(mf.load(targets_build), "dense_b0")
    keep = ("dense_b0/model.onnx", "dense_b0/model.opset15.onnx", "dense_b0/model.ort")
    entry["files"] = [f for f in entry["files"] if f["role"] not in ("model", "target") or f["path"] in keep]
    blobs = {f["path"]: (targets_build / f["path"]).read_bytes() for f in entry["files"]}
    files = {p: ("fp32", blobs[p]) for p in keep}
    rts = old_runtimes()
    model = request_for("dense_b0", input_dim=64).create()
    entry["parity"] = old_records(model, files, input_dim=64, seed=0, runtimes=rts,
                                  options=MatrixOptions(batch_sizes=(1, 7), distributions=("normal", "normal_x10")))
    return entry, rts, blobs


def test_the_old_runtimes_ci_installs_are_found(checked):
    _, rts, _ = checked
    assert sorted((rt.runtime, rt.version) for rt in rts) == sorted((r, OLD) for r in RUNTIMES)


def test_no_old_runtime_loads_the_default_file_and_each_says_why(checked):
    entry, _, _ = checked
    recs = {r["runtime"]: r for r in entry["parity"] if r["file"] == "dense_b0/model.onnx"}
    assert set(recs) == set(RUNTIMES)
    assert all(r["verdict"] == "fail" and r["version"] == OLD for r in recs.values())
    # the reason, from a real load: the IR version (10; 1.16 reads up to 9), not the opset
    for rt in ("onnxruntime", "onnxruntime-node"):
        assert "Unsupported model IR version: 10, max supported IR version: 9" in recs[rt]["reason"]
    assert "refused the model" in recs["onnxruntime-web"]["reason"]  # its wasm build gives no words


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_each_old_runtime_runs_the_picked_file_with_parity(checked, runtime):
    entry, _, _ = checked
    picked = attest.pick_file(entry, None, runtime, "1.16")
    assert picked["path"] == "dense_b0/model.opset15.onnx"
    rec = next(r for r in entry["parity"] if r["file"] == picked["path"] and r["runtime"] == runtime)
    assert rec["verdict"] == "pass" and rec["reference"] == "torch-cpu" and rec["batch_sizes"] == [1, 7]
    assert rec["max_abs_error"] <= rec["atol"] + rec["rtol"] * 40
    # the ORT format loads there too, when asked for
    assert attest.pick_file(entry, None, runtime, OLD, formats=("ort",))["path"] == "dense_b0/model.ort"
    # and the signed record says so: a passed test of that runtime at 1.16.3 on the target's sha256
    stmt = next(s for s in attest.statements_for(entry) if s["subject"][0]["name"] == picked["path"])
    assert any(runtime in t and OLD in t for t in stmt["predicate"]["passedTests"])
    with pytest.raises(attest.NotVerifiedError, match=f"it has passing records for {runtime} {OLD}"):
        attest.pick_file(entry, None, runtime, "1.17")


def test_the_runtime_words_lose_only_the_cpp_location():
    raw = ("Failed to load model with error: /onnxruntime_src/onnxruntime/core/graph/model.cc:149 "
           "onnxruntime::Model::Model(onnx::ModelProto&&, const PathString&, const onnxruntime::ModelOptions&) "
           "Unsupported model IR version: 10, max supported IR version: 9")
    assert short_error(raw) == ("Failed to load model with error: Unsupported model IR version: 10, "
                                "max supported IR version: 9")


def test_the_profile_names_the_file_each_runtime_version_loads(checked):
    """zoo.builder.profile from these records: each old runtime gets the opset 15 target, pinned."""
    from zoo.builder.profile import profile_for

    entry, _, _ = checked
    prof = profile_for(entry)
    sha = {f["path"]: f["sha256"] for f in entry["files"]}
    rows = {(r["runtime"], r["version"]): r for r in prof["entries"]}
    assert set(rows) == {(rt, OLD) for rt in RUNTIMES}
    for r in rows.values():
        assert (r["file"], r["sha256"], r["batch_size"]) == ("model.opset15.onnx", sha["dense_b0/model.opset15.onnx"], None)
    assert rows[("onnxruntime", OLD)]["settings"] == {"threads": None, "execution_provider": "CPUExecutionProvider",
                                                      "graph_optimization_level": "all"}
    assert prof["input"] == {"name": "input", "width": 64} and prof["output"] == {"name": "logits", "classes": 10}
    # zoo bench --recommend's measurement adds a row per batch size, with the settings it measured
    measured = dict(entry, recommended={"threads": 2, "machine": "cpu x", "by_batch": [
        {"batch_size": 32, "runtime": "onnxruntime", "backend": "onnxruntime:fp32", "precision": "fp32",
         "file": "dense_b0/model.onnx", "settings": {"provider": "CPUExecutionProvider", "optimization": "all"},
         "p50_ms": 0.5, "top1": 0.9}]})
    row = next(r for r in profile_for(measured)["entries"] if r["batch_size"] == 32)
    assert row["file"] == "model.onnx" and row["sha256"] == sha["dense_b0/model.onnx"]
    assert row["settings"] == {"threads": 2, "execution_provider": "CPUExecutionProvider", "graph_optimization_level": "all"}
    assert row["measured"]["p50_ms"] == 0.5


def test_the_node_example_on_onnxruntime_node_116_follows_the_profile_to_a_file_it_loads(checked, tmp_path):
    """examples/node/classify.mjs with verify/node-old's onnxruntime-node 1.16.3: model.onnx is
    refused (IR version 10); --profile picks the opset 15 target, which runs and gives the classes
    the current ONNX Runtime gives on model.onnx."""
    import json
    import shutil
    import subprocess

    import numpy as np
    import onnxruntime as ort

    from zoo.builder.profile import profile_bytes
    from zoo.verify import js
    from zoo.verify.old import NODE_OLD_DIR

    entry, _, blobs = checked
    folder = tmp_path / "dense_b0"
    folder.mkdir()
    for path, data in blobs.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_bytes(data)
    (folder / "profile.json").write_bytes(profile_bytes(entry))
    example = tmp_path / "example"
    example.mkdir()
    shutil.copy(js.NODE_DIR.parents[1] / "examples" / "node" / "classify.mjs", example)
    (example / "node_modules").symlink_to(NODE_OLD_DIR / "node_modules", target_is_directory=True)
    run = lambda *a: subprocess.run([js.node_executable(), "classify.mjs", *map(str, a)], capture_output=True,  # noqa: E731
                                    text=True, cwd=example, timeout=120)
    plain = run(folder / "model.onnx", "3")
    assert plain.returncode == 1 and "Unsupported model IR version: 10, max supported IR version: 9" in plain.stderr
    proc = run("--profile", folder / "profile.json", "3")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.startswith("profile: model.opset15.onnx (sha256 ") and f"onnxruntime-node {OLD}" in proc.stderr
    x = np.sin(np.arange(1, 3 * 64 + 1, dtype=np.float64)).astype(np.float32).reshape(3, 64)
    y = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    assert [int(line.split()[3]) for line in proc.stdout.splitlines()] == [int(i) for i in y.argmax(axis=1)]
    assert json.loads((folder / "profile.json").read_text())["input"]["width"] == 64
