"""Runtime-aware pulls (issue 34): a release carries a signed verification record per file (in-toto
test-result Statements in DSSE envelopes, TUF targets of the version), and ``zoo pull --runtime``
picks the fastest file verified on the runtime asked for, ``--require-verified`` refuses a file
without a passing record. The records come from real loads: onnxruntime 1.16.3 in its own virtual
environment (.venv-ort116, as .ci/run installs it), which cannot load the default file (IR 10).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import ROOT

from zoo import hub
from zoo.builder import manifest as mf
from zoo.cli import cli

OLD_PY = ROOT / ".venv-ort116" / "bin" / "python"


def run(*args, env=None):
    return CliRunner().invoke(cli, [str(a) for a in args], env=env, catch_exceptions=False)


@pytest.fixture(scope="module")
def signed(targets_build, tmp_path_factory):
    """The targets build with onnxruntime 1.16.3's real records, published and signed: (mirror, root)."""
    from zoo.builder.artifact import request_for
    from zoo.verify.matrix import MatrixOptions
    from zoo.verify.old import old_records, old_runtimes

    rts = [rt for rt in old_runtimes() if rt.runtime == "onnxruntime"]
    if not rts:
        pytest.fail("CI installs onnxruntime 1.16.3 in .venv-ort116 (.ci/run); it is missing here")
    work = tmp_path_factory.mktemp("runtime-pull")
    build = work / "build"
    shutil.copytree(targets_build, build)
    m = mf.load(build)
    entry = mf.entry(m, "dense_b0")
    files = {f["path"]: (f["precision"], (build / f["path"]).read_bytes()) for f in entry["files"]
             if f["path"] in ("dense_b0/model.onnx", "dense_b0/model.opset15.onnx")}
    entry["parity"] = entry.get("parity", []) + old_records(
        request_for("dense_b0", input_dim=64).create(), files, input_dim=64, seed=0, runtimes=rts,
        options=MatrixOptions(batch_sizes=(1, 3), distributions=("normal",)))
    mf.save(build / "manifest.json", m)
    key = hub.keygen(work / "zoo.key")
    hub.publish(build, work / "mirror", sign_key=key["private_key"], license="MIT")
    return work / "mirror", work / "mirror" / "metadata" / "1.root.json"


@pytest.fixture(autouse=True)
def config(monkeypatch, tmp_path):
    monkeypatch.setenv("ZOO_CONFIG", str(tmp_path / "config"))
    for var in ("ZOO_TRUST", "ZOO_REQUIRE_SIGNED", "ZOO_SOURCE", "ZOO_CACHE"):
        monkeypatch.delenv(var, raising=False)


def test_each_file_has_a_signed_record_listed_as_a_target_of_its_version(signed):
    mirror, _ = signed
    records = sorted(p for p in (mirror / "releases" / "dense_b0" / "1" / "records").glob("*.intoto.json")
                     if p.name.count(".") == 2)  # not the hash-named copies TUF clients fetch
    entry = mf.entry(mf.load(mirror), "dense_b0")
    loaded = {f["sha256"] for f in entry["files"] if f["role"] in ("model", "target")}
    assert {p.name.split(".")[0] for p in records} <= loaded and len(records) >= 3
    tgt = json.loads(next((mirror / "metadata").glob("*.targets.json")).read_text())["signed"]["targets"]
    assert {f"releases/dense_b0/1/records/{p.name}" for p in records} <= set(tgt)


def test_runtime_picks_the_file_verified_there_and_the_old_runtime_runs_it(signed, tmp_path):
    mirror, root = signed
    res = run("pull", "dense_b0", "--from", mirror, "--trust", root, "--runtime", "onnxruntime@1.16",
              "--cache-dir", tmp_path / "c", "--json")
    assert res.exit_code == 0, res.output
    got = json.loads(res.stdout)[0]
    assert got["trust"] == "verified" and got["path"].endswith("dense_b0/model.opset15.onnx")
    probe = ("import sys, numpy as np, onnxruntime as ort; s = ort.InferenceSession(sys.argv[1]); "
             "x = np.zeros((2, 64), np.float32); print(ort.__version__, s.run(None, {'input': x})[0].shape)")
    out = subprocess.run([str(OLD_PY), "-c", probe, got["path"]], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.split()[0] == "1.16.3", out.stderr[-2000:]
    default = subprocess.run([str(OLD_PY), "-c", probe, str(mirror / "dense_b0" / "model.onnx")],
                             capture_output=True, text=True, timeout=120)
    assert default.returncode != 0 and "IR version" in default.stderr  # why the pick matters


def test_a_runtime_without_records_names_the_versions_there_are(signed, tmp_path):
    mirror, root = signed
    res = run("pull", "dense_b0", "--from", mirror, "--trust", root, "--runtime", "onnxruntime@1.9",
              "--cache-dir", tmp_path / "c")
    assert res.exit_code == 2 and "1.16.3" in res.stderr and "signed records" in res.stderr
    assert not (tmp_path / "c" / "models").exists()
    res = run("pull", "dense_b0", "--from", mirror, "--trust", root, "--require-verified", "onnxruntime@1.16",
              "--cache-dir", tmp_path / "c")  # the default file does not load on 1.16: no passing record
    assert res.exit_code == 2 and "dense_b0/model.onnx carries no passing verification record" in res.stderr
    res = run("models", "--from", mirror, "--trust", root, "--json")
    assert "1.16.3" in json.loads(res.stdout)[0]["verified_on"]["onnxruntime"]


def test_a_changed_record_is_refused(signed, tmp_path):
    mirror, root = signed
    copy = tmp_path / "m"
    shutil.copytree(mirror, copy)
    rec = next(p for p in (copy / "releases" / "dense_b0" / "1" / "records").glob("*.intoto.json")
               if p.name.count(".") == 2)
    data = bytearray(rec.read_bytes())
    data[len(data) // 2] ^= 1
    rec.write_bytes(bytes(data))
    for p in (copy / "releases" / "dense_b0" / "1" / "records").glob(f"*.{rec.name}"):
        p.write_bytes(bytes(data))  # the hash-named copy too
    res = run("pull", "dense_b0", "--from", copy, "--trust", root, "--runtime", "onnxruntime@1.16",
              "--cache-dir", tmp_path / "c")
    assert res.exit_code == 1 and "differs from its length or sha256" in res.stderr
    assert not (tmp_path / "c" / "models").exists()


def test_hub_session_detects_its_onnxruntime_and_opens_the_file_verified_there(signed, tmp_path, monkeypatch):
    """hub.session reads its own ONNX Runtime's version: where the records say the default file
    failed on that version (1.16.3 here, a real load above) and a target passed, it opens the target;
    on a version whose records pass the default file (this one), the default file."""
    import onnxruntime as ort

    mirror, root = signed
    s = hub.session("dense_b0", source=mirror, trust=root, cache_dir=tmp_path / "c")
    assert s._model_path.endswith("dense_b0/model.onnx")
    monkeypatch.setattr(ort, "__version__", "1.16.3")  # what an onnxruntime 1.16.3 installation reports
    s = hub.session("dense_b0", source=mirror, trust=root, cache_dir=tmp_path / "c")
    assert s._model_path.endswith("dense_b0/model.opset15.onnx")
    assert s.run(None, {"input": __import__("numpy").zeros((2, 64), "float32")})[0].shape == (2, 10)


def test_zoo_info_shows_where_a_file_was_verified(signed, tmp_path):
    mirror, root = signed
    res = run("info", mirror / "dense_b0" / "model.opset15.onnx", "--json")
    assert res.exit_code == 0, res.output
    assert "1.16.3" in json.loads(res.stdout)["verified_on"]["onnxruntime"]
    res = run("info", mirror / "dense_b0" / "model.onnx")
    assert res.exit_code == 0 and "verified   onnxruntime" in res.stdout and "1.16.3" not in res.stdout
