"""Latency records: warm-up excluded, runs bounded by count and time budget, numeric and ordered,
schema-valid; ``zoo build`` records a short run by default; ``zoo bench`` updates the manifest."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from click.testing import CliRunner

from zoo.bench import latency as lat
from zoo.bench import roofline
from zoo.bench.latency import SHORT, LatencyOptions, measure_model, summarize, time_runs, upsert_latency
from zoo.bench.roofline import Machine, roofline_row
from zoo.builder import manifest as mf
from zoo.cli import cli
from zoo.errors import ProviderUnavailableError

FLOAT_FIELDS = ("session_create_ms", "p50_ms", "p90_ms", "p99_ms", "mean_ms", "throughput_sps", "gflops_per_s",
                "torch_p50_ms", "speedup_vs_torch")


class FakeClock:
    """A clock that only moves when the function under test 'runs' (by the given durations)."""

    def __init__(self, durations):
        self.now = 0.0
        self.durations = list(durations)
        self.calls = 0

    def __call__(self):
        return self.now

    def run(self):
        self.now += self.durations[min(self.calls, len(self.durations) - 1)]
        self.calls += 1


def test_warmup_runs_are_not_timed():
    # three slow warm-up runs (first-call effects), then fast ones
    clock = FakeClock([5.0, 2.0, 1.0] + [0.001 * (i % 7 + 1) for i in range(100)])
    t = time_runs(clock.run, warmup_runs=3, max_runs=50, time_budget_s=100.0, clock=clock)
    assert t.warmup_runs == 3 and t.runs == 50 and clock.calls == 53
    assert max(t.samples_ms) <= 7.0 + 1e-9  # none of the 1-5 s warm-up runs is in the samples
    assert t.samples_ms[:3] == pytest.approx([1.0, 2.0, 3.0])


def test_the_time_budget_bounds_the_timed_runs():
    clock = FakeClock([0.1])
    t = time_runs(clock.run, warmup_runs=0, max_runs=1_000_000, time_budget_s=0.35, clock=clock)
    assert t.runs == 4  # 0.1, 0.2, 0.3 < 0.35 <= 0.4
    assert t.wall_s == pytest.approx(0.4)
    # at least one timed run, even when a single run is over the budget
    clock = FakeClock([10.0])
    assert time_runs(clock.run, warmup_runs=2, max_runs=5, time_budget_s=1.0, clock=clock).runs == 1


def test_a_long_warm_up_stops_at_the_budget():
    clock = FakeClock([1.0])
    t = time_runs(clock.run, warmup_runs=100, max_runs=10, time_budget_s=2.5, clock=clock)
    assert t.warmup_runs == 3 and t.runs == 3


def test_the_budget_bounds_a_real_run():
    # No wall-clock bound is asserted (a loaded machine may stretch any run): the budget, not the
    # count, ended the run, so at least the budget was spent and each run's sleep is in the samples.
    t = time_runs(lambda: time.sleep(0.01), warmup_runs=1, max_runs=1_000_000, time_budget_s=0.2)
    assert 1 <= t.runs < 1_000_000 and t.wall_s >= 0.2
    assert min(t.samples_ms) >= 10.0 and len(t.samples_ms) == t.runs


def test_summary_is_ordered_floats():
    rng = np.random.default_rng(0)
    for n in (1, 2, 5, 100):
        s = summarize(list(rng.lognormal(0, 1, n)))
        assert all(isinstance(v, float) for v in s.values())
        assert s["min_ms"] <= s["p50_ms"] <= s["p90_ms"] <= s["p99_ms"]
    assert summarize([2.0, 1.0, 3.0])["p50_ms"] == 2.0
    with pytest.raises(ValueError):
        summarize([])


@pytest.mark.parametrize("kwargs", [dict(batch_sizes=(0,)), dict(batch_sizes=()), dict(max_runs=0),
                                    dict(time_budget_s=0), dict(warmup_runs=-1), dict(threads=0)])
def test_bad_options_are_value_errors(kwargs):
    with pytest.raises(ValueError):
        LatencyOptions(**kwargs)


def test_upsert_replaces_records_of_the_same_key():
    old = [dict(backend="a", precision="fp32", batch_size=1, threads=2, p50_ms=1.0),
           dict(backend="a", precision="fp32", batch_size=32, threads=2, p50_ms=5.0)]
    new = [dict(backend="a", precision="fp32", batch_size=1, threads=2, p50_ms=0.5),
           dict(backend="a", precision="fp32", batch_size=1, threads=1, p50_ms=0.9)]
    out = upsert_latency(old, new)
    assert [(r["batch_size"], r["threads"], r["p50_ms"]) for r in out] == [(32, 2, 5.0), (1, 2, 0.5), (1, 1, 0.9)]


# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def zoo_dir(tmp_path_factory):
    """dense_b0 (narrow input) built with int8 by ``zoo build`` and its default short latency run."""
    out = tmp_path_factory.mktemp("bench") / "zoo"
    res = CliRunner().invoke(cli, ["build", "dense_b0", "--input-dim", "64", "--precision", "int8", "--no-verify",
                                   "--artifacts", str(out)])
    assert res.exit_code == 0, res.output
    return out


def _check_record(rec, *, flops, batch_sizes, options=SHORT):
    for k in FLOAT_FIELDS:
        assert isinstance(rec[k], float), k
    assert 0 <= rec["p50_ms"] <= rec["p90_ms"] <= rec["p99_ms"]
    assert isinstance(rec["runs"], int) and 1 <= rec["runs"] <= options.max_runs
    assert isinstance(rec["warmup_runs"], int) and 1 <= rec["warmup_runs"] <= options.warmup_runs
    assert rec["batch_size"] in batch_sizes and rec["threads"] == lat.default_threads()
    assert rec["provider"] == "CPUExecutionProvider" and rec["backend"] == "onnxruntime:CPUExecutionProvider:all"
    assert rec["speedup_vs_torch"] == pytest.approx(rec["torch_p50_ms"] / rec["p50_ms"])  # above 1 is faster
    assert rec["gflops_per_s"] == pytest.approx(flops * rec["batch_size"] / (rec["p50_ms"] / 1e3) / 1e9)
    assert rec["throughput_sps"] == pytest.approx(rec["batch_size"] / (rec["p50_ms"] / 1e3))
    assert rec["machine"]["cpu"] and rec["machine"]["physical_cores"] >= 1


def test_build_records_a_short_latency_run_by_default(zoo_dir):
    manifest = mf.load(zoo_dir / "manifest.json")  # validates against the schema
    entry = mf.entry(manifest, "dense_b0")
    keys = sorted((r["precision"], r["batch_size"]) for r in entry["latency"])
    assert keys == sorted((p, b) for p in ("fp32", "int8") for b in SHORT.batch_sizes)
    for rec in entry["latency"]:
        _check_record(rec, flops=entry["flops"], batch_sizes=SHORT.batch_sizes)


def test_measure_model_without_pytorch_and_with_a_budget(zoo_dir):
    data = (zoo_dir / "dense_b0" / "model.onnx").read_bytes()
    opts = LatencyOptions(batch_sizes=(3,), warmup_runs=2, max_runs=1_000_000, time_budget_s=0.2, torch=False)
    recs = measure_model(data, precision="fp32", flops=1000, input_dim=64, options=opts)
    (rec,) = recs
    assert 1 <= rec["runs"] < 1_000_000 and rec["warmup_runs"] <= 2
    assert rec["torch_p50_ms"] is None and rec["speedup_vs_torch"] is None
    entry = mf.entry(mf.load(zoo_dir / "manifest.json"), "dense_b0")
    mf.validate({**mf.empty_manifest(), "models": [dict(entry, latency=recs)]})


def test_a_missing_provider_is_unavailable_not_replaced(zoo_dir, monkeypatch):
    import onnxruntime as ort

    # An onnxruntime built without CUDA, wherever this runs (the CLI runs in-process, so it sees this too)
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    assert lat.default_providers() == ["CPUExecutionProvider"]
    data = (zoo_dir / "dense_b0" / "model.onnx").read_bytes()
    with pytest.raises(ProviderUnavailableError, match="CUDAExecutionProvider"):
        measure_model(data, precision="fp32", flops=1, input_dim=64, providers=["cuda"],
                      options=LatencyOptions(batch_sizes=(1,), torch=False))
    res = CliRunner().invoke(cli, ["bench", "dense_b0", "--artifacts", str(zoo_dir), "--providers", "cpu,cuda"])
    assert res.exit_code == 3 and "CUDAExecutionProvider" in res.output and "Traceback" not in res.output


def test_bench_updates_the_manifest_and_replaces_its_own_records(zoo_dir):
    path = zoo_dir / "manifest.json"
    before = mf.entry(mf.load(path), "dense_b0")["latency"]
    args = ["bench", "dense_b0", "--artifacts", str(zoo_dir), "--precision", "int8", "--batch-sizes", "2,1",
            "--runs", "3", "--warmup", "1", "--time-budget", "0.2", "--json"]
    runner = CliRunner()
    for _ in range(2):
        res = runner.invoke(cli, args)
        assert res.exit_code == 0, res.output
        out = json.loads(res.stdout)
        assert [(r["model"], r["precision"], r["batch_size"]) for r in out["records"]] == [
            ("dense_b0", "int8", 2), ("dense_b0", "int8", 1)]
        for r in out["records"]:
            assert r["runs"] <= 3 and r["warmup_runs"] == 1
    after = mf.entry(mf.load(path), "dense_b0")["latency"]
    # int8 batch 1 replaced (not duplicated), int8 batch 2 added once, the fp32 records untouched
    assert len(after) == len(before) + 1
    assert [r for r in after if r["precision"] == "fp32"] == [r for r in before if r["precision"] == "fp32"]
    new_b1 = [r for r in after if r["precision"] == "int8" and r["batch_size"] == 1]
    assert len(new_b1) == 1 and new_b1[0]["runs"] <= 3


def test_bench_prints_a_table_and_no_save_keeps_the_manifest(zoo_dir):
    path = zoo_dir / "manifest.json"
    before = path.read_bytes()
    res = CliRunner().invoke(cli, ["bench", "--all", "--artifacts", str(zoo_dir), "--batch-sizes", "1", "--runs", "2",
                                   "--warmup", "0", "--time-budget", "0.1", "--no-torch", "--no-record"])
    assert res.exit_code == 0, res.output
    assert "p50 ms" in res.stdout and "dense_b0" in res.stdout and "int8" in res.stdout
    assert path.read_bytes() == before


def test_bench_roofline(zoo_dir, monkeypatch):
    small = roofline.measure_machine
    monkeypatch.setattr(roofline, "measure_machine", lambda threads: small(threads, dram_bytes=32 << 20, gemm_sizes=(256,)))
    res = CliRunner().invoke(cli, ["bench", "dense_b0", "--artifacts", str(zoo_dir), "--precision", "fp32",
                                   "--batch-sizes", "1,64", "--runs", "3", "--warmup", "1", "--no-torch", "--no-record",
                                   "--roofline", "--json"])
    assert res.exit_code == 0, res.output
    roof = json.loads(res.stdout)["roofline"]
    assert roof["machine"]["gemm_peak_gflops"] > 0 and roof["machine"]["dram_gbs"] > 0
    assert [(r["batch_size"], r["precision"]) for r in roof["rows"]] == [(1, "fp32"), (64, "fp32")]
    for r in roof["rows"]:
        assert 0 < r["frac_roofline"] and r["bound"] in ("compute", "memory")
        assert r["frac_roofline"] == pytest.approx(max(r["frac_gemm_peak"], r["frac_read_bw"]))


def test_roofline_arithmetic():
    m = Machine(gemm={"gflops": 100.0}, dram_gbs=10.0, threads=2, _ws={1: 20.0, 100: 10.0})
    rec = {"precision": "fp32", "provider": "CPUExecutionProvider", "batch_size": 1, "p50_ms": 10.0}
    # 100 MB of weights at 10 GB/s = 10 ms: memory-bound and at the limit; 1 GFLOP at 100 GFLOP/s = 10 ms too
    row = roofline_row(rec, flops=10**8, weight_bytes=100 << 20, machine=m)
    assert row["frac_read_bw"] == pytest.approx((100 << 20) / 10e9 / 0.01)
    assert row["frac_gemm_peak"] == pytest.approx(0.1)
    row = roofline_row(dict(rec, batch_size=256), flops=10**8, weight_bytes=1 << 20, machine=m)
    assert row["bound"] == "compute" and row["frac_roofline"] == pytest.approx(25.6)


def test_machine_measurements_are_positive():
    assert roofline.gemm_peak(1, sizes=(128,), time_budget_s=0.2)["gflops"] > 0
    assert roofline.read_bandwidth(4 << 20, 1, time_budget_s=0.1) > 0


@pytest.mark.parametrize("args, code, words", [
    ([], 2, "name at least one model"),
    (["dense_b0", "--all"], 2, "not both"),
    (["dense_b0", "--batch-sizes", "1,0"], 2, "positive integers"),
    (["dense_b0", "--batch-sizes", "x"], 2, "comma-separated integers"),
    (["dense_b0", "--precision", "int4"], 2, "unknown precision"),
    (["dense_b0", "--providers", "tpu"], 2, "unknown execution provider"),
    (["dense_b9"], 2, "not in the manifest"),  # unknown names are bad input (exit 2)
    (["dense_b0", "--precision", "fp16"], 2, "no fp16 file"),
])
def test_bad_bench_input_gets_one_clear_line(zoo_dir, args, code, words):
    res = CliRunner().invoke(cli, ["bench", *args, "--artifacts", str(zoo_dir), "--no-record"])
    assert res.exit_code == code, res.output
    assert words in res.output and "Traceback" not in res.output


def test_bench_refuses_a_file_that_differs_from_the_manifest(zoo_dir, tmp_path):
    import shutil

    copy = tmp_path / "zoo"
    shutil.copytree(zoo_dir, copy)
    model = copy / "dense_b0" / "model.int8.onnx"
    model.write_bytes(model.read_bytes() + b"\0")
    res = CliRunner().invoke(cli, ["bench", "dense_b0", "--artifacts", str(copy), "--precision", "int8"])
    assert res.exit_code == 1 and "differs from its manifest record" in res.output
    res = CliRunner().invoke(cli, ["bench", "--all", "--artifacts", str(tmp_path / "nowhere")])
    assert res.exit_code == 2 and "no manifest" in res.output  # a missing file is bad input
