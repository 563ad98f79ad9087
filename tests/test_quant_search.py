"""The accuracy-driven quantisation search (zoo.exporters.quant_search) on a briefly trained dense_b0:
it reaches a floor the fixed recipe misses, records its recipe and fp32 layers (manifest, file,
zoo info, zoo report), gives the same bytes twice (and again from its record: zoo build --check),
and stops at its time budget saying so."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from zoo.cli import cli
from zoo.exporters import quant_search as qs
from zoo.exporters.int4 import quantize_int4
from zoo.exporters.int8 import gemm_to_matmul, int8_nodes
from zoo.model import data as ds

# On CI's dense_b0 (6 epochs on 8,000 samples: 51 % top-1, many answers near a boundary) the fixed
# int4 recipe keeps 92.7 % of the fp32 classes on the held-out training rows and 92-93 % on the
# test split: under this floor, which the search reaches (floor + 1 point on the held-out rows) by
# keeping layers fp32, in a few tries.
FLOOR = 0.94


@pytest.fixture(scope="module")
def built(trained_b0, tmp_path_factory):
    """``zoo build dense_b0 --precision fp32,int4`` from the trained weights at FLOOR: the search runs."""
    ckpt, _ = trained_b0
    out = tmp_path_factory.mktemp("quant-build")
    res = CliRunner().invoke(cli, ["build", "dense_b0", "--weights", str(ckpt / "dense_b0.safetensors"),
                                   "--precision", "fp32,int4", "--min-agreement", str(FLOOR), "--quant-budget", "600",
                                   "--no-verify", "--no-bench", "--artifacts", str(out)])
    assert res.exit_code == 0, res.output
    entry = json.loads((out / "manifest.json").read_text())["models"][0]
    return out, entry, res.stderr


@pytest.fixture(scope="module")
def split(built):
    p = built[1]["eval_data"]["params"]
    return ds.generate(ds.DatasetParams(p["input_dim"], p["samples"], p["seed"]))


def _agreement(model: bytes, ref: np.ndarray, x: np.ndarray) -> float:
    return float((qs.predict(model, x) == ref).mean())


def test_search_reaches_the_floor_the_fixed_recipe_misses(built, split):
    out, entry, stderr = built
    fp32 = (out / "dense_b0" / "model.onnx").read_bytes()
    q = next(r for r in entry["quantization"] if r["precision"] == "int4")
    # the fixed recipe was tried first and missed the target on the held-out training rows ...
    assert q["tried"][0]["recipe"] == "blocks of 32" and q["tried"][0]["fp32_layers"] == 0
    assert q["tried"][0]["agreement"] < q["target"] == pytest.approx(FLOOR + qs.MARGIN)
    # ... the search reached it by keeping layers fp32, and says what it tried
    assert q["passed"] and q["stopped"] is None and q["heldout"]["agreement"] >= q["target"]
    assert q["heldout"]["split"] == "train" and q["heldout"]["rows"][0] == 512  # after the calibration rows
    assert q["fp32_layers"] and len(q["tried"]) > 1 and q["tried"][-1]["verdict"] in ("pass", "under target")
    assert "try 1: blocks of 32" in stderr and "passes" in stderr
    # the gate on the test split (which the search never saw) passed for the searched file; the fixed
    # recipe's file misses the same floor there
    acc = next(r for r in entry["accuracy"] if r["precision"] == "int4")
    assert acc["verdict"] == "pass" and acc["agreement"] >= FLOOR
    ref = qs.predict(fp32, split["x_test"])
    assert _agreement(quantize_int4(fp32), ref, split["x_test"]) < FLOOR


def test_the_file_records_its_recipe_and_fp32_layers(built):
    out, entry, _ = built
    q = next(r for r in entry["quantization"] if r["precision"] == "int4")
    path = out / q["file"]
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert meta["zoo.fp32_layers"].split(",") == q["fp32_layers"]
    settings = json.loads(meta["zoo.precision_settings"])
    assert settings["search"]["recipe"] == q["recipe"] and settings["search"]["floor"] == FLOOR
    graph = onnx.load(str(path)).graph
    kept = {n.name for n in graph.node if n.op_type == "MatMul"}
    assert set(q["fp32_layers"]) <= kept  # left as fp32 MatMuls, the rest are MatMulNBits
    assert sum(n.op_type == "MatMulNBits" for n in graph.node) == settings["quantized_nodes"] > 0
    info = CliRunner().invoke(cli, ["info", str(path), "--json"])
    assert info.exit_code == 0 and json.loads(info.stdout)["metadata"]["zoo.fp32_layers"] == meta["zoo.fp32_layers"]
    report = CliRunner().invoke(cli, ["report", "--artifacts", str(out), "--no-chart"])
    assert report.exit_code == 0, report.output
    text = (out / "report.md").read_text()
    assert "## Quantisation searches" in text and q["recipe_text"] in text


def test_bytes_are_reproducible(built, split, trained_b0):
    out, entry, _ = built
    fp32 = (out / "dense_b0" / "model.onnx").read_bytes()
    # two searches, same inputs: same bytes (a cheap floor: the fixed recipe passes at once)
    a = qs.search(fp32, "int4", split["x"], split["y"], min_agreement=0.9, budget_s=60)
    b = qs.search(fp32, "int4", split["x"], split["y"], min_agreement=0.9, budget_s=60)
    assert a.passed and len(a.tried) == 1 and a.data == b.data
    # the build's searched file comes back from its manifest record alone: zoo build --check
    ckpt, _ = trained_b0
    res = CliRunner().invoke(cli, ["build", "dense_b0", "--check", str(out / "manifest.json"),
                                   "--weights", str(ckpt / "dense_b0.safetensors"), "--json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)["files"]
    int4 = [r for r in rows if r["path"].endswith("model.int4.onnx")]
    assert int4 and int4[0]["match"] and int4[0]["actual"] == hashlib.sha256((out / int4[0]["path"]).read_bytes()).hexdigest()


def test_a_tiny_budget_stops_after_the_fixed_recipe_and_says_so(built, split):
    out, _, _ = built
    fp32 = (out / "dense_b0" / "model.onnx").read_bytes()
    lines: list[str] = []
    r = qs.search(fp32, "int4", split["x"], split["y"], min_agreement=0.99, budget_s=0.01, progress=lines.append)
    assert r.stopped == "budget" and not r.passed
    assert [t["recipe"] for t in r.tried] == ["blocks of 32"] and r.fp32_layers == []
    assert r.record()["stopped"] == "budget" and "stopped by its time budget" in lines[-1]
    settings = json.loads({p.key: p.value for p in onnx.load_from_string(r.data).metadata_props}["zoo.precision_settings"])
    assert settings["search"]["recipe"] == {"block_size": 32, "symmetric_activations": False, "exclude": []}


def test_sensitivity_ranks_layers_by_what_reaches_the_logits(built, split):
    out, _, _ = built
    fp32 = (out / "dense_b0" / "model.onnx").read_bytes()
    rows = qs.sensitivity(fp32, "int4", qs.Recipe(per_channel=None, block_size=32), split["x"][:16])
    quantised = int8_nodes(gemm_to_matmul(onnx.load_from_string(fp32)))  # weights of 4,096 elements or more
    assert sorted(r["layer"] for r in rows) == sorted(quantised) and {r["kind"] for r in rows} >= {"stem", "expand", "se_reduce", "se_expand", "project",
                                                              "head", "classifier"}
    errors = [r["logit_error"] for r in rows]
    assert errors == sorted(errors, reverse=True) and errors[0] > 0 and all(0 <= r["rel_error"] < 1 for r in rows)
    # rounding a layer's input and weights as int4 does adds error at its own output and at the logits
    assert all(r["rel_error"] > 0 and r["input_outlier"] >= 1 for r in rows)
    summary = qs.by_kind(rows)
    assert sum(k["layers"] for k in summary.values()) == len(rows) and summary["stem"]["max_logit_error"] > 0


def test_a_sensitivity_cut_short_ranks_by_the_local_error(built, split):
    out, _, _ = built
    fp32 = (out / "dense_b0" / "model.onnx").read_bytes()
    # a deadline already past: no layer gets its logit error, the ranking falls back to the local one
    rows = qs.sensitivity(fp32, "int4", qs.Recipe(per_channel=None, block_size=32), split["x"][:8], deadline=0.0)
    assert rows and not any("logit_error" in r for r in rows)
    assert [r["rel_error"] for r in rows] == sorted((r["rel_error"] for r in rows), reverse=True)
    assert sorted(qs.fallback_order(rows)) == sorted(r["layer"] for r in rows)  # no KeyError: every layer ranked


def test_no_training_split_is_one_line(small_build):
    res = CliRunner().invoke(cli, ["build", "dense_b0", "--input-dim", "64", "--precision", "fp32,int4",
                                   "--artifacts", str(small_build)])
    assert res.exit_code == 2, res.output
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("Error:")]
    assert len(errors) == 1 and "training split" in errors[0]
