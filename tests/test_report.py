"""``zoo report``: a Markdown file and a PNG chart, from the manifest alone (no build needed here)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from zoo.builder import manifest as mf
from zoo.cli import cli
from zoo.builder.report import chart_series, markdown, model_rows, write_report

MACHINE = {"cpu": "Test CPU", "physical_cores": 2}
BATCHES = (1, 32, 256)


def _entry(name: str, params: int, scale: float) -> dict:
    files = [{"path": f"{name}/model.onnx", "bytes": params * 4, "sha256": "a" * 64, "role": "model",
              "precision": "fp32"},
             {"path": f"{name}/model.int8.onnx", "bytes": params, "sha256": "b" * 64, "role": "model",
              "precision": "int8"}]
    parity = [
        {"backend": "onnxruntime:CPUExecutionProvider:all", "runtime": "onnxruntime", "version": "1", "precision": p,
         "verdict": "pass", "max_abs_error": err, "cosine_similarity": cos}
        for p, err, cos in (("fp32", 1e-5, 1.0), ("fp32", 3e-5, 0.99999), ("int8", 0.2, 0.995), ("int8", 0.1, 0.997))
    ] + [{"backend": "tract", "runtime": "tract", "version": None, "precision": "fp32", "verdict": "unavailable",
          "max_abs_error": None}]
    latency = []
    for p, factor in (("fp32", 1.0), ("int8", 0.5)):
        for b in BATCHES:
            p50 = scale * factor * b ** 0.5
            latency.append({"backend": "onnxruntime:CPUExecutionProvider:all", "provider": "CPUExecutionProvider",
                            "precision": p, "batch_size": b, "threads": 2, "runs": 10, "p50_ms": p50,
                            "p90_ms": p50 * 1.1, "p99_ms": p50 * 1.2, "mean_ms": p50 * 1.05,
                            "torch_p50_ms": 4.0 * scale * b ** 0.5, "speedup_vs_torch": (4.0 * scale * b ** 0.5) / p50,
                            "machine": MACHINE})
    return {
        "model": name, "model_path": f"{name}/model.onnx", "onnx_version": "1.23.2", "opset_version": 18,
        "metadata": {"model_sha": "a" * 64, "model_bytes": params * 4, "tags": [],
                     "io_ports": {"inputs": [], "outputs": []}},
        "family": "dense_efficientnet", "flavor": "paper",
        "scaling": {"width": 1.0, "depth": 1.0, "resolution": 224, "dropout": 0.2, "input_dim": 256},
        "num_classes": 10, "params": params, "flops": 2 * params, "seed": 0, "exporter": "dynamo", "ir_version": 10,
        "files": files, "test_data": {"batch": 3, "seed": 0, "sets": [f"{name}/test_data_set_0"]},
        "parity": parity, "latency": latency,
    }


@pytest.fixture
def manifest():
    m = mf.empty_manifest()
    m["models"] = [_entry("dense_b0", 4_000_000, 1.0), _entry("dense_b3", 10_000_000, 2.0),
                   _entry("dense_b7", 60_000_000, 8.0)]
    mf.validate(m)  # the fixture itself is a valid manifest
    return m


def test_rows_compute_speedups_and_worst_parity(manifest):
    rows = {r["model"]: r for r in model_rows(manifest)}
    b3 = rows["dense_b3"]
    assert b3["params"] == 10_000_000 and b3["mflops"] == pytest.approx(20.0)
    assert b3["file_mb"] == {"fp32": 40.0, "int8": 10.0}
    assert b3["worst_parity"]["fp32"]["max_abs_error"] == 3e-5
    assert b3["worst_parity"]["int8"] == {"max_abs_error": 0.2, "cosine_similarity": 0.995, "records": 2, "failed": 0}
    by = {(r["precision"], r["batch_size"]): r for r in b3["latency"]}
    assert by[("fp32", 1)]["speedup_vs_torch"] == pytest.approx(4.0)
    assert by[("int8", 32)]["speedup_vs_torch"] == pytest.approx(8.0)
    assert by[("int8", 256)]["speedup_vs_fp32"] == pytest.approx(2.0)
    assert by[("fp32", 1)]["speedup_vs_fp32"] is None


def test_the_newest_record_of_a_key_wins(manifest):
    e = manifest["models"][0]
    e["latency"].append(dict(e["latency"][0], p50_ms=0.25))
    lat = {(r["precision"], r["batch_size"]): r for r in model_rows(manifest)[0]["latency"]}
    assert lat[("fp32", 1)]["p50_ms"] == 0.25
    assert len(model_rows(manifest)[0]["latency"]) == 6


def test_markdown_has_the_tables(manifest):
    text = markdown(manifest)
    assert text.startswith("# Dense EfficientNet zoo: report")
    assert "| dense_b7 | 60,000,000 | 120.00 | 240.0 | 60.0 |" in text
    assert "## Latency on CPU (p50 ms, 2 thread(s))" in text
    assert "| p50 b1 | p50 b32 | p50 b256 | x faster than PyTorch b1 |" in text
    # dense_b0 int8: p50 0.5 ms at batch 1, 4x... PyTorch speed-up 8x, 2x over fp32
    line = next(ln for ln in text.splitlines() if ln.startswith("| dense_b0 | int8 |"))
    assert "| 0.5 |" in line and "8.00×" in line and "2.00×" in line
    assert "3.00e-05, 1.0000" in text and "2.00e-01, 0.9950" in text
    assert "Test CPU" in text and "![p50 latency against parameters](latency.png)" in text


def test_chart_series_are_sorted_by_params(manifest):
    series = chart_series(manifest)
    assert list(series) == list(BATCHES)
    pts = series[1]["fp32 CPU"]
    assert [p for p, _ in pts] == [4_000_000, 10_000_000, 60_000_000]
    assert [v for _, v in pts] == pytest.approx([1.0, 2.0, 8.0])


def test_report_writes_markdown_and_a_png_that_opens(manifest, tmp_path):
    from PIL import Image

    written = write_report(manifest, tmp_path / "out")
    md = tmp_path / "out" / "report.md"
    png = tmp_path / "out" / "latency.png"
    assert written == {"markdown": str(md), "chart": str(png), "chart_skipped": None, "models": 3}
    assert "dense_b3" in md.read_text()
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(png) as im:
        im.verify()
    with Image.open(png) as im:
        assert im.format == "PNG" and im.width == 1500 and im.height == 420  # three panels, 5 x 4.2 in at 100 dpi
        px = np.asarray(im.convert("RGB"))
    assert px.std() > 10  # not a blank image
    assert (px.reshape(-1, 3).min(axis=1) < 100).mean() > 0.005  # dark ink: axes, labels
    # coloured lines: tab:blue (fp32) and tab:orange (int8) are drawn
    blue = np.all(np.abs(px.astype(int) - [31, 119, 180]) < 40, axis=-1).sum()
    orange = np.all(np.abs(px.astype(int) - [255, 127, 14]) < 40, axis=-1).sum()
    assert blue > 100 and orange > 100


def test_report_command(manifest, tmp_path):
    art = tmp_path / "zoo"
    art.mkdir()
    mf.save(art / "manifest.json", manifest)
    runner = CliRunner()
    res = runner.invoke(cli, ["report", "--artifacts", str(art)])
    assert res.exit_code == 0, res.output
    assert (art / "report.md").exists() and (art / "latency.png").exists()
    res = runner.invoke(cli, ["report", "--artifacts", str(art), "--to", str(tmp_path / "r"), "--no-chart", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["chart"] is None and out["models"] == 3 and len(out["summary"]) == 3
    assert not (tmp_path / "r" / "latency.png").exists()
    assert "latency.png" not in (tmp_path / "r" / "report.md").read_text()


def test_a_manifest_without_latencies_gets_markdown_only(manifest, tmp_path):
    for m in manifest["models"]:
        m["latency"] = []
    written = write_report(manifest, tmp_path)
    assert written["chart"] is None and "zoo bench" in written["chart_skipped"]
    assert "## Latency on" not in (tmp_path / "report.md").read_text()


def test_report_errors_are_one_line(tmp_path):
    res = CliRunner().invoke(cli, ["report", "--artifacts", str(tmp_path / "missing")])
    assert res.exit_code == 2 and "no manifest" in res.output and "Traceback" not in res.output  # a missing file
    (tmp_path / "manifest.json").write_text("{not json")
    res = CliRunner().invoke(cli, ["report", "--artifacts", str(tmp_path)])
    assert res.exit_code == 1 and "not valid JSON" in res.output


def test_a_version_1_manifest_is_read_with_its_time_ratios_turned_into_speedups(manifest, tmp_path):
    """Schema version 1 recorded p50 / baseline (below 1 faster); version 2 the speed-up (above 1
    faster). A version 1 manifest still loads, converted."""
    old = json.loads(json.dumps(manifest))
    old["schema_version"] = 1
    for m in old["models"]:
        for r in m["latency"]:
            r["ratio_vs_torch"] = 1 / r.pop("speedup_vs_torch")
        m["peers"] = [{"runtime": "onnxruntime", "backend": "onnxruntime:int8", "precision": "int8", "batch_size": 1,
                       "verdict": "measured", "p50_ms": 1.0, "ratio_vs_ort_fp32": 0.25,
                       "file": f"{m['model']}/model.int8.onnx"}]
    (tmp_path / "manifest.json").write_text(json.dumps(old))
    got = mf.load(tmp_path / "manifest.json")
    assert got["schema_version"] == mf.SCHEMA_VERSION == 2
    rec = got["models"][0]["latency"][0]
    assert "ratio_vs_torch" not in rec and rec["speedup_vs_torch"] == pytest.approx(rec["torch_p50_ms"] / rec["p50_ms"])
    assert got["models"][0]["peers"][0]["speedup_vs_ort_fp32"] == pytest.approx(4.0)


def test_records_run_in_bf16_stay_out_of_the_fp32_column(manifest):
    """OpenVINO's default runs an fp32 file in bf16: its error is a bf16 figure, shown apart."""
    m = json.loads(json.dumps(manifest))
    entry = m["models"][0]
    entry["parity"].append({"backend": "openvino:default", "runtime": "openvino", "version": "1", "precision": "fp32",
                            "verdict": "pass", "max_abs_error": 0.795, "cosine_similarity": 0.99,
                            "compute_precision": "bf16"})
    mf.validate(m)
    row = next(r for r in model_rows(m) if r["model"] == entry["model"])
    assert row["worst_parity"]["fp32"]["max_abs_error"] == pytest.approx(3e-5)
    assert row["worst_parity"]["bf16"]["max_abs_error"] == pytest.approx(0.795)
    text = markdown(m)
    assert "worst bf16 error (max abs, cosine) (fp32 file run in bf16 by OpenVINO's default)" in text
    line = next(ln for ln in text.splitlines() if ln.startswith(f"| {entry['model']} |"))
    assert "7.95e-01" in line and line.index("3.00e-05") < line.index("7.95e-01")


def test_build_short_runs_and_bench_runs_are_never_one_series(manifest, tmp_path):
    """zoo build's short run of one model and zoo bench's of the others: two series, marked."""
    m = json.loads(json.dumps(manifest))
    for r in m["models"][1]["latency"]:
        r["measured_by"] = "build"
    for r in m["models"][0]["latency"]:  # a version 1 record says nothing: its bounds tell
        r.update(max_runs=20, time_budget_s=0.25)
    series = chart_series(m)[1]
    assert [p for p, _ in series["fp32 CPU"]] == [60_000_000]
    assert [p for p, _ in series["fp32 CPU (zoo build short run)"]] == [4_000_000, 10_000_000]
    text = markdown(m)
    assert "| fp32 (build run) |" in text and "not comparable" in text
    assert write_report(m, tmp_path)["chart"]
