"""zoo bench --peers: every installed contender is measured in one interleaved run, one that is
not installed is named with the reason, speed-ups are over ONNX Runtime fp32 on model.onnx (above 1 is faster)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from zoo.bench import peers as pe
from zoo.bench import roofline as rl
from zoo.bench.peers import PEER_RUNTIMES, Contender, contenders, measure_peers
from zoo.cli import cli
from zoo.versions import dist_version


def test_peers_on_dense_b0_records_every_installed_contender(small_build):
    r = CliRunner().invoke(cli, ["bench", "dense_b0", "--peers", "--artifacts", str(small_build), "--batch-sizes", "2",
                                 "--runs", "3", "--time-budget", "0.5", "--threads", "1", "--json"])
    assert r.exit_code == 0, r.output
    recs = {x["backend"]: x for x in json.loads(r.stdout)["records"]}
    want = {"onnxruntime:fp32", *PEER_RUNTIMES}
    assert want <= set(recs)
    installed = {"openvino:f32": dist_version("openvino"), "openvino:default": dist_version("openvino"),
                 "tract": dist_version("tract")}
    for backend in want:
        rec = recs[backend]
        if installed.get(backend, True) is None:
            assert rec["verdict"] == "unavailable" and rec["reason"]
            continue
        assert rec["verdict"] == "measured", (backend, rec.get("reason"))
        assert rec["runs"] >= 1 and 0 < rec["p50_ms"] <= rec["p99_ms"] and rec["batch_size"] == 2
        assert rec["threads"] == 1 and isinstance(rec["settings"], dict) and rec["speedup_vs_ort_fp32"] > 0
    assert recs["onnxruntime:fp32"]["speedup_vs_ort_fp32"] == 1.0
    assert recs["torch.compile"]["compile_s"] > 0  # the compile is timed apart from the runs
    assert recs["torch.compile"]["p50_ms"] < recs["torch.compile"]["compile_s"] * 1e3
    if installed["openvino:default"]:
        assert recs["openvino:f32"]["precision"] == "fp32"
        assert recs["openvino:default"]["precision"] in ("bf16", "fp32", "fp16")  # what it really ran at
    assert json.loads(r.stdout)["saved"] is False  # --peers alone leaves the manifest alone


def test_a_contender_that_is_not_installed_is_named(monkeypatch, small_build):
    monkeypatch.setattr(pe, "dist_version", lambda name: None if name in ("tract", "openvino") else "1")
    fp32 = (small_build / "dense_b0" / "model.onnx").read_bytes()
    cands = contenders([("fp32", "dense_b0/model.onnx", fp32)], None)
    recs = {r["backend"]: r for r in measure_peers(cands, input_dim=64, flops=1, batch_sizes=(1,), max_rounds=2,
                                                    time_budget_s=0.2)}
    for name in ("tract", "openvino:f32", "openvino:default"):
        assert recs[name]["verdict"] == "unavailable" and "not installed" in recs[name]["reason"]
    for name in ("torch", "torch.compile"):  # no model given: named with the reason, not dropped
        assert recs[name]["verdict"] == "unavailable" and "--no-torch" in recs[name]["reason"]
    assert recs["onnxruntime:fp32"]["verdict"] == "measured"


def test_rounds_interleave_every_contender_and_rotate_who_goes_first(monkeypatch):
    calls = []
    monkeypatch.setattr(pe.time, "sleep", lambda s: calls.append(f"pause {s}"))

    def fake(name):
        return Contender(name, name, "fp32", None, _setup=lambda t: ((lambda x: calls.append(name)), 0.0, {}))

    cands = [fake(n) for n in "abc"]
    recs = measure_peers(cands, input_dim=4, flops=1, batch_sizes=(1,), warmup_runs=1, max_rounds=3,
                         time_budget_s=100.0, warm_s=0.0, burst_s=0.0)
    rounds = calls[3:]  # one warm-up call each first
    # Each turn: an untimed call (at least one), the timed one, a pause long enough for spinning threads to park.
    turn = lambda n: [n, n, f"pause {pe.PARK_S}"]  # noqa: E731
    assert rounds == [c for n in "abcbcacab" for c in turn(n)]
    assert pe.PARK_S >= 0.03  # ONNX Runtime's idle threads spin about 30 ms after a run
    assert all(r["runs"] == 3 and r["timing"]["rounds"] == 3 for r in recs)


def test_a_turn_is_a_burst_warm_calls_until_warm_s_then_timed_calls(monkeypatch):
    # A fake clock: every call of a contender takes 10 ms, nothing else takes time.
    now = [0.0]
    monkeypatch.setattr(pe.time, "perf_counter", lambda: now[0])
    monkeypatch.setattr(pe.time, "sleep", lambda s: None)
    calls = []

    def run(x):
        calls.append(1)
        now[0] += 0.010

    c = Contender("a", "a", "fp32", None, _setup=lambda t: (run, 0.0, {}))
    recs = measure_peers([c], input_dim=4, flops=1, batch_sizes=(1,), warmup_runs=1, max_rounds=2,
                         min_rounds=1, time_budget_s=100.0, warm_s=0.05, burst_s=1.0, burst_calls=4)
    # Per turn: 5 warm calls (50 ms of them) and 4 timed ones (the burst's count ends it), two rounds.
    assert len(calls) == 1 + 2 * (5 + 4)
    assert recs[0]["runs"] == 8 and recs[0]["p50_ms"] == pytest.approx(10.0)
    calls.clear()
    recs = measure_peers([c], input_dim=4, flops=1, batch_sizes=(1,), warmup_runs=1, max_rounds=1,
                         time_budget_s=100.0, warm_s=0.0, burst_s=0.025, burst_calls=10)
    assert recs[0]["runs"] == 3  # 30 ms of timed calls passed the 25 ms burst
    # The budget counts timed calls, but the rounds go on to min_rounds even when it is spent.
    recs = measure_peers([c], input_dim=4, flops=1, batch_sizes=(1,), warmup_runs=1, max_rounds=50,
                         time_budget_s=0.001, warm_s=0.0, burst_s=0.0, min_rounds=3)
    assert recs[0]["runs"] == 3 and recs[0]["timing"]["rounds"] == 3


@pytest.mark.parametrize("precision,peak", [("bf16", 300.0), ("fp32", 150.0)])
def test_roofline_uses_the_precision_s_peak(precision, peak):
    roof = rl.Roofline(150.0, 300.0, lambda nbytes: 20.0)
    rec = {"p50_ms": 1.0, "precision": precision, "batch_size": 1, "weight_bytes": 40_000_000}
    row = rl.peer_fractions(rec, 1_000_000_000, roof)
    assert row["peak_gflops"] == peak
    assert row["frac_gemm_peak"] == pytest.approx(1e9 / (peak * 1e9) / 1e-3)
    wbytes = 20_000_000 if precision == "bf16" else 40_000_000
    assert row["frac_read_bw"] == pytest.approx(wbytes / 20e9 / 1e-3)


def test_int8_is_held_to_the_weight_stream_not_to_the_fp32_peak():
    roof = rl.Roofline(150.0, None, lambda nbytes: 25.0)
    row = rl.peer_fractions({"p50_ms": 4.0, "precision": "int8_static", "batch_size": 1, "weight_bytes": 62_500_000},
                   10**9, roof)
    assert row["frac_gemm_peak"] is None and row["bound"] == "memory"
    assert row["frac_roofline"] == pytest.approx(62.5e6 / 25e9 / 4e-3)  # 2.5 ms floor / 4 ms = 62.5 %
