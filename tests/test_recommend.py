"""A recommendation picks the fastest candidate whose accuracy passes the gate, and never one that
failed it; zoo bench --recommend writes it (and the static int8 file) into a schema-valid manifest;
zoo.hub.session opens the recommended ONNX Runtime file."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
from click.testing import CliRunner
from onnx import numpy_helper

from zoo import hub
from zoo.bench.peers import add_accuracy, contenders, measure_peers
from zoo.builder import manifest as mf
from zoo.builder.artifact import ModelRequest
from zoo.builder.recommend import eligible, recommend
from zoo.builder.report import write_report
from zoo.cli import cli
from zoo.model import data as ds


def _rec(backend, batch, p50, verdict="pass", measured=True, precision="int8"):
    return {"runtime": backend.split(":")[0], "backend": backend, "precision": precision, "file": f"m/{backend}.onnx",
            "settings": {}, "batch_size": batch, "p50_ms": p50, "speedup_vs_ort_fp32": 10.0 / p50,
            "verdict": "measured" if measured else "unavailable",
            "accuracy": {"top1": 0.9, "agreement": 0.99, "torch_top1": 0.9, "verdict": verdict}}


def test_the_fastest_passing_candidate_wins_per_batch():
    recs = [_rec("onnxruntime:fp32", 1, 10.0, precision="fp32"), _rec("onnxruntime:int8", 1, 4.0),
            _rec("onnxruntime:broken", 1, 1.0, verdict="fail"),  # fastest, but fails the gate
            _rec("tract", 1, 0.5, verdict="unavailable", measured=False),
            _rec("openvino:default", 1, 2.0, verdict=None),  # no accuracy measured: not eligible either
            _rec("onnxruntime:fp32", 256, 100.0, precision="fp32"), _rec("onnxruntime:broken", 256, 20.0, "fail")]
    out = {r["batch_size"]: r for r in recommend(recs)}
    assert out[1]["backend"] == "onnxruntime:int8" and out[1]["eligible"] == 2 and out[1]["candidates"] == 5
    assert out[256]["backend"] == "onnxruntime:fp32"
    assert not any(r["backend"] == "onnxruntime:broken" for r in out.values())
    assert recommend([_rec("x", 1, 1.0, "fail")]) == []  # nothing passes: no recommendation


def _damaged(fp32: bytes) -> bytes:
    """The fp32 file with its classifier's rows shuffled: as fast as the original, wrong classes."""
    proto = onnx.load_from_string(fp32)
    gemm = [n for n in proto.graph.node if n.op_type == "Gemm"][-1]
    inits = {t.name: t for t in proto.graph.initializer}
    for name in gemm.input[1:]:
        w = numpy_helper.to_array(inits[name])
        inits[name].CopyFrom(numpy_helper.from_array(np.roll(w, 3, axis=0).copy(), name))
    return proto.SerializeToString()


def test_a_damaged_candidate_fails_the_real_gate_and_is_never_picked(small_build):
    entry = mf.entry(mf.load(small_build / "manifest.json"), "dense_b0")
    fp32 = (small_build / "dense_b0" / "model.onnx").read_bytes()
    d = ds.generate(ds.DatasetParams(64, samples=500))
    evalset = ds.EvalSet("mnist1d", ds.dataset_sha256(d), d["x_test"], d["y_test"])
    model = ModelRequest.from_entry(entry).create()
    cands = contenders([("fp32", "dense_b0/model.onnx", fp32), ("int8", "dense_b0/damaged.onnx", _damaged(fp32))],
                       None, runtimes=())
    recs = measure_peers(cands, input_dim=64, flops=entry["flops"], batch_sizes=(2,), max_rounds=3, time_budget_s=1)
    add_accuracy(cands, recs, d["x_test"], d["y_test"], evalset, model)
    by = {r["backend"]: r for r in recs}
    assert by["onnxruntime:fp32"]["accuracy"]["verdict"] == "pass"
    bad = by["onnxruntime:int8"]["accuracy"]
    assert bad["verdict"] == "fail" and bad["agreement"] < 0.5 and "loses" in bad["reason"]
    by["onnxruntime:int8"]["p50_ms"] = 0.0  # even when it is the fastest by far
    assert [r["backend"] for r in recommend(recs)] == ["onnxruntime:fp32"]
    assert not eligible(by["onnxruntime:int8"])


def _recommended(small_build, tmp_path, runs: str = "3"):
    """A copy of the small build after ``zoo bench dense_b0 --recommend``: (root, the CLI result)."""
    root = tmp_path / "art"
    shutil.copytree(small_build, root)
    data = tmp_path / "mnist1d_64.npz"
    ds.write_npz(ds.generate(ds.DatasetParams(64, samples=400)), data)
    r = CliRunner().invoke(cli, ["bench", "dense_b0", "--recommend", "--artifacts", str(root), "--data", str(data),
                                 "--batch-sizes", "1", "--runs", runs, "--time-budget", "0.5", "--no-torch", "--json"])
    assert r.exit_code == 0, r.output
    return root, r


def test_recommend_writes_the_manifest_and_the_hub_opens_the_file(small_build, tmp_path):
    root, r = _recommended(small_build, tmp_path)
    out = json.loads(r.stdout)
    manifest = mf.load(root / "manifest.json")  # schema-valid
    entry = mf.entry(manifest, "dense_b0")
    static = [f for f in entry["files"] if f["precision"] == "int8_static"]
    assert len(static) == 1 and (root / static[0]["path"]).stat().st_size == static[0]["bytes"]
    int4 = [f for f in entry["files"] if f["precision"] == "int4"]
    assert len(int4) == 1 and (root / int4[0]["path"]).stat().st_size == int4[0]["bytes"]
    # every candidate file was measured and judged by the gate, whatever the verdict
    for precision in ("int8_static", "int4"):
        rec = next(p for p in entry["peers"] if p["backend"] == f"onnxruntime:{precision}")
        assert rec["verdict"] == "measured" and rec["accuracy"]["verdict"] in ("pass", "fail")
        assert rec["timing"]["method"] == "interleaved bursts" and rec["timing"]["rounds"] >= 1
    best = entry["recommended"]["by_batch"][0]
    assert entry["recommended"]["min_agreement"] == 0.95  # the gate's agreement floor it passed
    assert all(p["accuracy"]["verdict"] == "fail" for p in entry["peers"] if p["verdict"] == "measured"
               and p["accuracy"]["agreement"] is not None and p["accuracy"]["agreement"] < 0.95)
    assert best == {k: v for k, v in out["recommended"]["dense_b0"][0].items()}
    assert best["batch_size"] == 1 and best["backend"] in {p["backend"] for p in entry["peers"]}
    chosen = next(p for p in entry["peers"] if p["backend"] == best["backend"])
    assert chosen["accuracy"]["verdict"] == "pass"
    assert best["p50_ms"] == min(p["p50_ms"] for p in entry["peers"] if eligible(p))
    # the report: the peers table with the recommendation marked, and its chart
    written = write_report(manifest, tmp_path / "report")
    text = (tmp_path / "report" / "report.md").read_text()
    assert "## Peers and recommendation" in text and f"{best['backend']} **(recommended)**" in text
    assert written.get("peers_chart") and (tmp_path / "report" / "peers.png").read_bytes()[:4] == b"\x89PNG"
    # the hub: without a precision, the recommended ONNX Runtime file
    want = hub.recommended_precision(entry)
    if best["runtime"] == "onnxruntime":
        assert want == next(f["precision"] for f in entry["files"] if f["path"] == best["file"])
    else:  # another runtime won here: the hub opens the fastest ONNX Runtime file that passed the same gate
        ort = [p for p in entry["peers"] if p["runtime"] == "onnxruntime" and p["batch_size"] == 1 and eligible(p)]
        fastest = min(ort, key=lambda p: p["p50_ms"])["file"] if ort else None
        assert want == next((f["precision"] for f in entry["files"] if f["path"] == fastest), None)
    sess = hub.session("dense_b0", str(root), cache_dir=tmp_path / "cache")
    path = hub.load("dense_b0", str(root), want or "fp32", cache_dir=tmp_path / "cache")
    assert sess.run(None, {"input": np.zeros((1, 64), np.float32)})[0].shape == (1, 10)
    assert onnx.load(str(path)).metadata_props and path.name == (static[0]["path"].split("/")[-1]
                                                                 if want == "int8_static" else path.name)


def test_zoo_verify_after_recommend_checks_the_made_files_are_intact_not_their_parity(small_build, tmp_path):
    # The files --recommend adds have no parity tolerance (their check is the accuracy gate); zoo
    # verify checks they are intact and runs the matrix, node included, on the built precisions.
    root, _ = _recommended(small_build, tmp_path, runs="1")
    r = CliRunner().invoke(cli, ["verify", "dense_b0", "--artifacts", str(root), "--runtimes", "node", "--json"])
    assert r.exit_code == 0, r.output
    recs = json.loads(r.stdout)["dense_b0"]
    assert "int4: intact" in r.stderr and "int8_static: intact" in r.stderr
    assert {x["precision"] for x in recs} == {"fp32"} and all(x["verdict"] == "pass" for x in recs)
    assert "node" in {x["backend"] for x in recs}
    entry = mf.entry(mf.load(root / "manifest.json"), "dense_b0")
    assert {p["precision"] for p in entry["parity"]} == {"fp32"}
    # the made files can be pulled like the built ones
    r = CliRunner().invoke(cli, ["pull", "dense_b0", "--from", str(root), "--precision", "int4,int8_static",
                                 "--cache-dir", str(tmp_path / "cache"), "--json"])
    assert r.exit_code == 0, r.output
    pulled = {x["precision"]: x for x in json.loads(r.stdout)}
    assert set(pulled) == {"int4", "int8_static"} and all(x["status"] == "downloaded" for x in pulled.values())
    assert pulled["int4"]["path"].endswith("model.int4.onnx")
    # a tampered made file is caught like any other
    f = next(f for f in entry["files"] if f["precision"] == "int4")
    (root / f["path"]).write_bytes((root / f["path"]).read_bytes()[:-1] + b"\0")
    r = CliRunner().invoke(cli, ["verify", "dense_b0", "--artifacts", str(root), "--runtimes", "node"])
    assert r.exit_code != 0 and "Traceback" not in r.output and "int4" in r.output


def test_recommended_precision_reads_only_onnxruntime_rows():
    entry = {"files": [{"path": "m/model.onnx", "role": "model", "precision": "fp32"},
                       {"path": "m/model.int8_static.onnx", "role": "model", "precision": "int8_static"}],
             "recommended": {"by_batch": [{"batch_size": 256, "runtime": "openvino", "file": "m/model.onnx"},
                                          {"batch_size": 1, "runtime": "onnxruntime", "file": "m/model.int8_static.onnx"}]}}
    assert hub.recommended_precision(entry) == "int8_static"
    assert hub.recommended_precision(entry, 256) is None  # OpenVINO won and no peers are on record
    assert hub.recommended_precision({"files": []}) is None
    # With the peers on record: the fastest ONNX Runtime file at that batch that passed the gate
    peer = lambda path, p50, verdict="pass", batch=256: {  # noqa: E731
        "runtime": "onnxruntime", "file": path, "batch_size": batch, "p50_ms": p50, "verdict": "measured",
        "accuracy": {"verdict": verdict}}
    entry["files"].append({"path": "m/model.int4.onnx", "role": "model", "precision": "int4"})
    entry["peers"] = [peer("m/model.onnx", 10.0), peer("m/model.int8_static.onnx", 4.0),
                      peer("m/model.int4.onnx", 3.0, verdict="fail"),  # fastest, but failed the gate
                      peer("m/model.int4.onnx", 1.0, batch=1),  # another batch size
                      {"runtime": "openvino", "file": "m/model.onnx", "batch_size": 256, "p50_ms": 2.0,
                       "verdict": "measured", "accuracy": {"verdict": "pass"}}]
    assert hub.recommended_precision(entry, 256) == "int8_static"
    assert hub.recommended_precision(entry) == "int8_static"  # batch 1: ONNX Runtime won, its file


def test_the_reference_of_a_trained_model_is_its_weights_file(tmp_path):
    import torch
    from safetensors.torch import save_file

    from zoo.builder.artifact import request_for
    from zoo.builder.pipeline import build
    from zoo.builder.verification import reference_model

    trained = request_for("dense_b0", input_dim=64, seed=7).create()  # stands in for trained weights
    wfile = tmp_path / "dense_b0.safetensors"
    save_file(trained.state_dict(), str(wfile))
    out = tmp_path / "art"
    assert [r.status for r in build([request_for("dense_b0", input_dim=64, weights=str(wfile))], out)] == ["ok"]
    entry = mf.entry(mf.load(out / "manifest.json"), "dense_b0")
    model = reference_model(out, entry)[1]  # what zoo bench, --recommend and zoo verify compare with
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((4, 64), dtype=np.float32))
    with torch.no_grad():
        assert torch.equal(model(x), trained.eval()(x))  # not the seed-0 network the entry's seed names
