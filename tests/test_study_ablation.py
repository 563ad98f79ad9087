"""zoo study ablation: the option networks build and verify like any variant; progressive training
resumes to the same bits; the miniature ablation study; the claim-by-claim verdicts."""

from __future__ import annotations

import dataclasses
import json

import pytest
from click.testing import CliRunner

from zoo.cli import cli
from zoo.model.arch import Arch
from zoo.study.ablation import ablation_points, claim_verdicts
from zoo.study.trials import Trial, check_record

# B0, B0 without SE, the two baselines at B0's FLOPs, progressive from 128 features: 5 trials.
MINI = ["study", "ablation", "--claims", "se,baselines,progressive", "--baseline-multipliers", "1", "--seeds", "1",
        "--epochs", "2", "--samples", "200", "--workers", "2"]


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def test_option_networks_build_and_verify_like_any_variant(tmp_path):
    """One build of each option: no SE and ReLU (in one network), the residual MLP, the MLP."""
    import onnx

    from zoo.builder.artifact import request_for
    from zoo.builder.pipeline import build
    from zoo.verify.matrix import MatrixOptions, build_verifier

    names = ["dense_b0_nose_relu", "resmlp_1x", "mlp_1x"]
    options = MatrixOptions(batch_sizes=(1, 7), runtimes=["openvino", "tract"])
    results = build([request_for(n, input_dim=64) for n in names], tmp_path, verifier=build_verifier(options))
    for r in results:
        assert r.status == "ok", (r.name, r.error)
        passed = {p["backend"] for p in r.entry["parity"] if p["verdict"] == "pass"}
        assert {"onnxruntime:CPUExecutionProvider:all", "openvino", "tract"} <= passed, (r.name, passed)
        assert all(p["verdict"] == "pass" for p in r.entry["parity"]), r.name
    ops = {n: {node.op_type for node in onnx.load(str(tmp_path / n / "model.onnx")).graph.node} for n in names}
    assert "Relu" in ops["dense_b0_nose_relu"] and "Sigmoid" not in ops["dense_b0_nose_relu"]  # no SE, no SiLU
    assert "Sigmoid" in ops["resmlp_1x"] and "Relu" not in ops["resmlp_1x"]  # SiLU
    # the manifest names them, and `zoo verify` rebuilds each from its name and seed
    res = invoke("verify", "--all", "--artifacts", tmp_path, "--runtimes", "tract", "--batch-sizes", "3", "--json")
    assert res.exit_code == 0, res.output


def test_progressive_training_grows_the_input_and_resumes_to_the_same_bits(tmp_path):
    from zoo.model.scaling import Variant
    from zoo.model.train import Recipe, input_schedule, train

    assert input_schedule(128, 256, 4) == [128, 168, 216, 256] and input_schedule(128, 256, 1) == [256]
    with pytest.raises(ValueError, match="starting input width"):
        input_schedule(300, 256, 4)
    tiny = Variant("tiny", 1.0, 1.0, 56, 0.1, 64, arch=Arch("plain", width=32, depth=1))
    full = train(tiny, tmp_path / "a", Recipe(epochs=3), samples=200, grow_from=32)
    assert full["progressive"] == {"input_dims": [32, 48, 64]}
    assert [h["input_dim"] for h in full["history"]] == [32, 48, 64]
    assert train(tiny, tmp_path / "b", Recipe(epochs=3), samples=200, grow_from=32, stop_after=2) is None
    with pytest.raises(ValueError, match="another progressive"):  # a checkpoint of another schedule
        train(tiny, tmp_path / "b", Recipe(epochs=3), samples=200, grow_from=40, resume=True)
    resumed = train(tiny, tmp_path / "b", Recipe(epochs=3), samples=200, grow_from=32, resume=True)
    assert resumed["weights"]["sha256"] == full["weights"]["sha256"]
    assert [h["loss"] for h in resumed["history"]] == [h["loss"] for h in full["history"]]
    fixed = train(dataclasses.replace(tiny, name="fixed"), tmp_path / "a", Recipe(epochs=3), samples=200)
    assert "progressive" not in fixed and fixed["weights"]["sha256"] != full["weights"]["sha256"]


def _row(label, strategy, values, multiplier=None, flops=1.0):
    import statistics

    return {"label": label, "strategy": strategy, "multiplier": multiplier, "flops_ratio": flops,
            "params": 100, "flops": int(100 * flops), "top1_mean": statistics.fmean(values),
            "top1_std": statistics.stdev(values)}


def test_claim_verdicts_say_what_held():
    rows = [_row("baseline", "baseline", [0.50, 0.51], 1.0), _row("no-se", "se", [0.45, 0.46]),
            _row("relu", "activation", [0.50, 0.52]),
            _row("resmlp@1x", "resmlp", [0.40, 0.41], 1.0), _row("mlp@1x", "mlp", [0.41, 0.40], 1.0),
            _row("resmlp@4x", "resmlp", [0.50, 0.52], 4.0, 4.0), _row("mlp@4x", "mlp", [0.60, 0.61], 4.0, 4.0),
            _row("progressive-from-128", "progressive", [0.40, 0.41])]
    v = {c["claim"]: c for c in claim_verdicts(rows)}
    assert v["se"]["result"] == "held" and v["activation"]["result"] == "not shown (a tie)"
    assert v["baselines"]["result"] == ("at 1x B0's FLOPs: held; at 4x B0's FLOPs: "
                                        "mlp@4x did not hold, resmlp@4x a tie")
    assert v["progressive"]["result"] == "did not hold" and v["progressive"]["comparisons"][0]["a"].startswith("prog")
    with pytest.raises(ValueError, match="unknown claim 'speed'"):
        ablation_points(["speed"])


@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    out = tmp_path_factory.mktemp("ablation")
    r = invoke(*MINI, "--out", out, "--json")
    assert r.exit_code == 0, r.output
    return out, json.loads(r.stdout)


def test_miniature_ablation_study_writes_records_and_a_claim_by_claim_report(mini):
    out, summary = mini
    recs = {p.stem: json.loads(p.read_text()) for p in (out / "trials").glob("*.json")}
    assert len(recs) == 5 and sorted(summary["ran"]) == sorted(recs)
    by_label = {p["label"]: p for p in summary["points"]}
    assert set(by_label) == {"baseline", "no-se", "resmlp@1x", "mlp@1x", "progressive-from-128"}
    for rec in recs.values():
        trial = Trial.from_dict(rec["trial"])
        assert check_record(rec, trial) is None and rec["flops"] == trial.shape.flops()
    prog = next(r for k, r in recs.items() if "grow128" in k)
    assert [h["input_dim"] for h in prog["history"]] == [128, 256] and prog["config"]["input_dim"] == 256
    assert next(r for k, r in recs.items() if "resmlp-w672-l4" in k)["config"]["arch"]["body"] == "residual"
    assert abs(by_label["mlp@1x"]["flops_ratio"] - 1) < 0.01
    report = (out / "report.md").read_text()
    assert "## Claim by claim" in report and "Squeeze-excitation" in report and "at 1x B0's FLOPs" in report
    assert (out / "ablation.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    again = json.loads(invoke(*MINI, "--out", out, "--json").stdout)  # resumed: every trial read back
    assert again["ran"] == [] and sorted(again["reused"]) == sorted(recs)


def test_ablation_bad_input_is_one_line(tmp_path):
    r = invoke("study", "ablation", "--claims", "speed", "--out", tmp_path / "x")
    assert r.exit_code == 2 and "unknown claim 'speed'" in r.stderr and "Traceback" not in r.output
    assert not (tmp_path / "x").exists()
