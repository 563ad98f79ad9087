"""What a newcomer tripped over (issue 35), held by tests: skipped precisions and refused repo ids
are said, cheap checks come before hashing, ratios and sizes read right, a lockfile's folder is
not made silently, an atomic write names its target, and `zoo verify --runtimes node,web` runs
only what was asked."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from hub_server import built, hub_env, mirror  # noqa: F401 - fixtures

from zoo.cli import cli
from zoo.fsutil import TMP_PREFIX, atomic_write_bytes


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def error_line(result) -> str:
    """Exactly one line, ``Error: ...``, last on stderr; never a traceback."""
    assert "Traceback" not in result.output
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("Error:")]
    assert len(lines) == 1 and result.stderr.rstrip().splitlines()[-1] == lines[0], result.stderr
    return lines[0]


# -- item 8: lockfile folders and atomic-write messages ---------------------------------------------

def test_lock_does_not_make_a_missing_folder(mirror, tmp_path):
    out = tmp_path / "nonexistent" / "dir" / "x.lock"
    r = run("lock", "dense_b0", "--from", mirror, "--out", out)
    assert r.exit_code == 2, r.output
    line = error_line(r)
    assert str(out) in line and "does not exist" in line
    assert not (tmp_path / "nonexistent").exists()
    r = run("lock", "dense_b0", "--from", mirror, "--out", tmp_path / "x.lock")  # an existing folder: written
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "x.lock").read_text())["models"]["dense_b0"]["files"]


def test_an_atomic_write_that_fails_names_its_target_not_the_temporary_file(tmp_path):
    # The rename fails: the target is a folder with something in it.
    target = tmp_path / "taken"
    (target / "inside").mkdir(parents=True)
    with pytest.raises(OSError) as e:
        atomic_write_bytes(target, b"x")
    assert e.value.filename == str(target) and TMP_PREFIX not in str(e.value)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(TMP_PREFIX)]
    # The temporary file cannot be made (as root too: /proc takes no new files).
    with pytest.raises(OSError) as e:
        atomic_write_bytes("/proc/zoo-test.lock", b"x")
    assert e.value.filename == "/proc/zoo-test.lock" and TMP_PREFIX not in str(e.value)


def test_an_unwritable_lock_out_names_the_path_given(mirror):
    r = run("lock", "dense_b0", "--from", mirror, "--out", "/proc/zoo-test.lock")
    assert r.exit_code == 1, r.output
    line = error_line(r)
    assert "/proc/zoo-test.lock" in line and TMP_PREFIX not in line


# -- item 1b: a precision asked for and not built is named ----------------------------------------

def test_triton_export_names_the_precision_it_skipped(built, tmp_path):
    r = run("export", "triton", "--artifacts", built, "--to", tmp_path / "t", "--precision", "fp32,int8")
    assert r.exit_code == 0, r.output
    notes = [ln for ln in r.stderr.splitlines() if ln.startswith("note:")]
    assert notes == ["note: not exported, not built: int8 of dense_b0 (build it with "
                     "`zoo build NAME --precision fp32,int8`)"], r.stderr
    assert sorted(p.name for p in (tmp_path / "t").iterdir()) == ["dense_b0_fp32"]
    r = run("export", "triton", "--artifacts", built, "--to", tmp_path / "j", "--precision", "fp32,int8", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["skipped"] == [{"model": "dense_b0", "precision": "int8"}]
    r = run("export", "triton", "--artifacts", built, "--to", tmp_path / "k", "--json")  # nothing asked, nothing skipped
    assert json.loads(r.stdout)["skipped"] == [] and "note:" not in r.stderr


# -- item 2: one Hub repository per model ----------------------------------------------------------

def test_a_plain_repo_id_with_several_models_is_refused_and_a_pattern_suggested(built, tmp_path):
    r = run("export", "hf", "dense_b0", "dense_b1", "--artifacts", built, "--to", tmp_path / "hf",
            "--repo-id", "me/dense_b0")
    assert r.exit_code == 2, r.output
    line = error_line(r)
    assert "2 models" in line and "--repo-id 'me/{name}'" in line
    assert "verified" not in r.stderr and not (tmp_path / "hf").exists()  # refused before any file was read
    r = run("export", "hf", "--artifacts", built, "--to", tmp_path / "hf", "--repo-id", "me/{name}/x")
    assert r.exit_code == 2 and "not a Hub repository id" in error_line(r)


def test_a_repo_id_pattern_names_each_models_repository(built, tmp_path):
    r = run("export", "hf", "--artifacts", built, "--to", tmp_path / "hf", "--repo-id", "me/{name}-onnx")
    assert r.exit_code == 0, r.output
    card = (tmp_path / "hf" / "dense_b0" / "README.md").read_text()
    assert "https://huggingface.co/me/dense_b0-onnx/resolve/COMMIT/" in card and "{name}" not in card
    # A plain id for the one model a build has is that model's repository.
    r = run("export", "hf", "--artifacts", built, "--to", tmp_path / "one", "--repo-id", "me/b0")
    assert r.exit_code == 0, r.output
    assert "https://huggingface.co/me/b0/resolve/COMMIT/" in (tmp_path / "one" / "dense_b0" / "README.md").read_text()


# -- item 5: optional packages and inputs before any hashing ---------------------------------------

def test_export_hf_without_huggingface_hub_refuses_before_reading_a_model(built, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # as if not installed: importing it fails
    r = run("export", "hf", "--artifacts", built, "--to", tmp_path / "hf")
    assert r.exit_code == 3, r.output
    line = error_line(r)
    assert "huggingface_hub" in line and "publish" in line  # the extra to install
    assert "verified" not in r.stderr and not (tmp_path / "hf").exists()  # no model was hashed, nothing written


# -- item 7: ratios and sizes read right ------------------------------------------------------------

def test_a_slowdown_is_worded_as_one_and_a_short_run_is_marked():
    from zoo.bench.latency import NOISY, faster_than

    assert faster_than(2.5, "PyTorch") == "2.50x faster than PyTorch"
    assert faster_than(0.70, "PyTorch") == "1.43x slower than PyTorch"
    assert faster_than(1.0, "ORT fp32") == "1.00x faster than ORT fp32"
    assert faster_than(150.01, "PyTorch", short=True) == f"150.01x faster than PyTorch {NOISY}"


def test_the_builds_latency_lines_mark_their_ratios_as_noisy(built):
    import torch

    from zoo.bench.latency import NOISY, SHORT, LatencyOptions, measure_model

    data = (built / "dense_b0" / "model.onnx").read_bytes()
    model = torch.nn.Linear(64, 10).eval()  # the PyTorch side is only timed here; any model of the input width
    for options, marked in ((LatencyOptions(**{**SHORT.__dict__, "batch_sizes": (2,)}), True),
                            (LatencyOptions(batch_sizes=(2,), max_runs=5, time_budget_s=0.2), False)):
        lines: list[str] = []
        measure_model(data, precision="fp32", flops=1, input_dim=64, torch_model=model, options=options,
                      progress=lines.append)
        assert len(lines) == 1 and "than PyTorch" in lines[0], lines
        assert (NOISY in lines[0]) is marked, lines


def test_sizes_are_never_zero_megabytes():
    from zoo.cli.common import size_cell, table
    from zoo.units import human_bytes

    assert [human_bytes(n) for n in (0, 900, 15_300, 1_234_567, 40_000_000, 2_500_000_000)] == \
        ["0 B", "900 B", "15.3 KB", "1.23 MB", "40.0 MB", "2.50 GB"]
    text = table([{"f": "a", "s": size_cell(900)}, {"f": "b", "s": size_cell(15_300_000)}], [("f", "file"), ("s", "size")])
    assert text.splitlines()[2:] == ["a       900 B", "b     15.3 MB"]  # right-aligned, as numbers are


def test_export_and_build_tables_print_sizes_in_a_readable_unit(built, tmp_path):
    r = run("export", "triton", "--artifacts", built, "--to", tmp_path / "t")
    assert r.exit_code == 0, r.output
    assert "0.00" not in r.stdout and " MB" in r.stdout  # the model file
    r = run("export", "hf", "--artifacts", built, "--to", tmp_path / "hf")
    assert r.exit_code == 0, r.output
    assert " B " in r.stdout and "0.00" not in r.stdout  # the small files (test data, config) in bytes


# -- item 8: zoo verify --runtimes node,web runs what was asked, in a table that fits -------------

def test_verify_node_web_runs_only_node_and_web(built, tmp_path):
    import shutil

    art = tmp_path / "art"
    shutil.copytree(built, art)
    r = CliRunner().invoke(cli, ["verify", "--all", "--artifacts", str(art), "--runtimes", "node,web", "--json"])
    assert r.exit_code == 0, r.output
    recs = json.loads(r.stdout)["dense_b0"]
    assert sorted(rec["backend"] for rec in recs) == ["node", "web"] and all(rec["verdict"] == "pass" for rec in recs)
    assert "ONNX Runtime and PyTorch not re-run: only node,web asked for (add --providers cpu for them too)" in r.stderr
    assert "vs torch" not in r.stderr  # no matrix line of ONNX Runtime against PyTorch
    # The files are still checked before the runtimes read them.
    (art / "dense_b0" / "model.onnx").write_bytes(b"tampered")
    r = CliRunner().invoke(cli, ["verify", "--all", "--artifacts", str(art), "--runtimes", "node,web"])
    assert r.exit_code == 1 and "sha256" in error_line(r)


def test_the_verify_table_fits_a_terminal():
    from zoo.cli.common import fit_table
    from zoo.cli.verify import legend, matrix_rows

    backends = ["onnxruntime:CPUExecutionProvider:disabled", "onnxruntime:CPUExecutionProvider:all",
                "onnxruntime:CUDAExecutionProvider:all", "reference", "openvino", "openvino:default", "tract", "node",
                "web", "c", "cpp"]
    results = {f"dense_b{i}": [{"backend": b, "precision": p, "verdict": "pass", "max_abs_error": 1.5e-6}
                               for p in ("fp32", "int8", "fp16") for b in backends] for i in range(8)}
    results["dense_b7"][0] = dict(results["dense_b7"][0], verdict="fail", max_abs_error=0.5)
    rows, cols = matrix_rows(results)
    assert len(rows) == 24 and [h for _, h in cols][2:5] == ["ort:cpu:O0", "ort:cpu", "ort:cuda"]
    text = fit_table(rows, cols, keys=2, width=100)
    assert max(len(line) for line in text.splitlines() + legend(cols).splitlines()) <= 100
    assert "ov = OpenVINO" in legend(cols) and "OpenVINO" not in legend(cols[:2] + cols[-2:])
    assert all(h in text for _, h in cols) and "FAIL 5.0e-01" in text and text.count("dense_b3  fp16") == 2
