"""The GPU check (python -m zoo.verify.gpu) dry-run on the CPU, as the GPU machine would run it
(only the toolchain importable), its refusal to report a provider it did not run on, and the
transfer of onnxruntime-gpu in parts."""

import hashlib
import json
import os
import subprocess
import sys
import zipfile

import pytest

from zoo.errors import ProviderUnavailableError, ZooError, InputError
from zoo.verify.gpu import wheel

# What the GPU machine lacks (it has torch, onnx, onnxruntime, onnxscript, onnx-ir and numpy):
# a None in sys.modules makes `import X` raise ImportError there.
BLOCKED = ("openvino", "tract", "safetensors", "mnist1d", "click", "jsonschema", "ray", "matplotlib", "tqdm",
           "huggingface_hub", "tritonclient", "model_signing", "tuf", "oras", "hypothesis", "pytest")
WRAPPER = ("import sys, runpy\n"
           "for m in {blocked!r}: sys.modules[m] = None\n"
           "sys.argv = ['zoo.verify.gpu'] + sys.argv[1:]\n"
           "runpy.run_module('zoo.verify.gpu', run_name='__main__', alter_sys=True)\n")
DRY_ARGS = ("--provider", "cpu", "--models", "dense_b0", "--input-dim", "64", "--timing-batches", "1,8",
            "--compile", "none", "--jobs", "1")


def run_gpu_check(*args, blocked=BLOCKED, timeout=300):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, "-c", WRAPPER.format(blocked=blocked), *args], capture_output=True,
                          text=True, timeout=timeout, env=env)


@pytest.fixture(scope="session")
def dry_run(tmp_path_factory):
    """As on the GPU machine: the models built into a cache first (--build-only), then the check."""
    out, cache = tmp_path_factory.mktemp("gpu-dry"), tmp_path_factory.mktemp("gpu-cache")
    res = run_gpu_check("--build-only", "--cache", str(cache), *DRY_ARGS)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "built dense_b0 in" in res.stderr and not list(out.iterdir())
    assert json.loads((cache / "build-done.json").read_text()) == {"built": ["dense_b0"], "failed": []}
    res = run_gpu_check("--out", str(out), "--cache", str(cache), *DRY_ARGS)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "dense_b0: from the cache" in res.stderr
    return out, res


def test_dry_run_needs_only_the_toolchain_and_says_no_gpu_was_used(dry_run):
    out, res = dry_run
    assert "NO GPU WAS USED" in res.stderr
    assert "Traceback" not in res.stderr
    for stage in ("preflight", "build+parity", "onnxruntime timing", "torch eager timing"):
        assert f"stage {stage}:" in res.stderr
    result = json.loads((out / "gpu-check.json").read_text())
    assert result["gpu_used"] is False and result["provider"] == "CPUExecutionProvider"
    assert result["machine"]["gpu"] is None and "NO GPU WAS USED" in result["machine"]["note"]
    # jsonschema was blocked, as it is missing there: the check says it did not validate.
    assert result["schema_check"] == "not run: jsonschema is not installed here"
    summary = (out / "summary.md").read_text()
    assert summary.startswith("# GPU check: NO GPU (a dry run on the CPU provider)")
    assert "NO GPU WAS USED" in summary and "| dense_b0 | fp16 | 8 |" in summary


def test_dry_run_records_are_the_manifests(dry_run):
    import jsonschema

    from zoo.builder.manifest import schema

    out, _ = dry_run
    defs = schema()["$defs"]
    parity, latency = (json.loads((out / f"{k}.json").read_text())["dense_b0"] for k in ("parity", "latency"))
    for kind, records in (("parity", parity), ("latency", latency)):
        validator = jsonschema.Draft202012Validator({"$ref": f"#/$defs/{kind}", "$defs": defs})
        for rec in records:
            assert not list(validator.iter_errors(rec)), rec
    assert [(r["precision"], r["reference"], r["verdict"]) for r in parity] == [
        ("fp32", "torch-cpu", "pass"), ("fp16", "torch-cpu", "pass")]
    assert parity[0]["batch_sizes"] == [1, 2, 7, 64] and parity[0]["max_abs_error"] < parity[0]["atol"]
    keys = {(r["backend"], r["precision"], r["batch_size"]) for r in latency}
    assert keys == {(f"onnxruntime:CPUExecutionProvider:all{s}", p, b)
                    for s in ("", ":iobinding") for p in ("fp32", "fp16") for b in (1, 8)}
    for r in latency:
        assert r["p50_ms"] > 0 and r["torch_p50_ms"] > 0 and r["output_matches_plain"] is True
        assert r["speedup_vs_torch"] == pytest.approx(r["torch_p50_ms"] / r["p50_ms"])  # above 1 is faster
        assert r["machine"]["gpu_used"] is False and r["torch_device"] == "cpu"
        assert r["torch_compile_p50_ms"] is None and "--compile none" in r["torch_compile_note"]
    skipped = json.loads((out / "gpu-check.json").read_text())["models"]["dense_b0"]["not_measured"]
    assert {s["backend"] for s in skipped} == {"onnxruntime:CPUExecutionProvider:all:cudagraph"}
    assert all("CUDA graphs need CUDAExecutionProvider" in s["reason"] for s in skipped)


def test_cuda_asked_where_onnxruntime_has_none_is_refused_before_any_work(tmp_path):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has the CUDA provider: the refusal is for one without")
    res = run_gpu_check("--out", str(tmp_path / "out"), "--models", "dense_b0", blocked=(), timeout=120)
    assert res.returncode == 3
    lines = res.stderr.strip().splitlines()
    assert lines[-1].startswith("Error: zoo verify gpu: CUDAExecutionProvider is not in this onnxruntime")
    assert "Traceback" not in res.stderr and not (tmp_path / "out").exists()


def test_a_session_that_falls_back_to_the_cpu_is_refused():
    from zoo.verify.gpu.env import make_session, tiny_model

    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("onnxruntime-gpu here would not fall back")
    # The CPU build of onnxruntime takes this session and silently runs it on the CPU provider.
    with pytest.raises(ProviderUnavailableError, match="runs the session on CPUExecutionProvider: refusing"):
        make_session(tiny_model(), "CUDAExecutionProvider", {"use_tf32": "0"})


def test_torch_compile_is_timed_and_skipped_at_the_time_limit():
    import numpy as np
    import torch

    from zoo.verify.gpu.timing import torch_modes
    from zoo.bench.latency import LatencyOptions

    net = torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.ReLU())
    xs = {1: np.ones((1, 8), np.float32), 3: np.ones((3, 8), np.float32)}
    fast = LatencyOptions(warmup_runs=1, max_runs=3, time_budget_s=0.05)
    calls = []
    res = torch_modes(net, xs, device="cpu", precision="fp32", compile_backend="eager", options=fast,
                      can_compile=lambda: not calls.append(1) and len(calls) < 2)
    assert res[(1, "eager")].summary["p50_ms"] > 0 and res[(1, "compile")].summary["p50_ms"] > 0
    assert res[(1, "compile")].session_create_ms > 0  # the first call, which compiles
    assert res[(3, "compile")].summary is None and res[(3, "compile")].reason.startswith("skipped")


def test_a_cached_model_is_used_only_while_its_files_are_intact(tmp_path):
    from zoo.verify.gpu import build

    key = build._cache_key("dense_b0", 64, ("fp32", "fp16"))
    d = {"name": "dense_b0", "files": {"fp32": b"a" * 10, "fp16": b"b" * 5}, "state": b"s", "flops": 1, "params": 2,
         "timings_s": {"export": 1.0}}
    build._to_cache(tmp_path, key, d)
    hit = build._from_cache(tmp_path, key)
    assert hit["cached"] and hit["files"] == d["files"] and hit["state"] == b"s" and hit["flops"] == 1
    assert build._from_cache(tmp_path, {**key, "torch": "0.0"}) is None  # another PyTorch: rebuilt
    (tmp_path / "fp16.onnx").write_bytes(b"c" * 5)
    assert build._from_cache(tmp_path, key) is None


# ---- the transfer -------------------------------------------------------------------------------


def test_split_verify_join_round_trip_and_damage_is_named(tmp_path):
    data = os.urandom(1000)
    src = tmp_path / "pkg-1.0-py3-none-any.whl"
    src.write_bytes(data)
    index = wheel.split(src, tmp_path / "parts", max_part_bytes=300)
    sizes = [p["bytes"] for p in index["parts"]]
    assert sizes == [250, 250, 250, 250] and index["sha256"] == hashlib.sha256(data).hexdigest()
    assert wheel.missing_parts(tmp_path / "parts") == []
    joined = wheel.join(tmp_path / "parts", tmp_path / "out")
    assert joined.read_bytes() == data

    part3 = tmp_path / "parts" / index["parts"][2]["name"]
    part3.write_bytes(b"x" + part3.read_bytes()[1:])  # same size, other bytes
    (tmp_path / "parts" / index["parts"][3]["name"]).unlink()
    assert wheel.missing_parts(tmp_path / "parts") == [index["parts"][2]["name"], index["parts"][3]["name"]]
    with pytest.raises(ZooError, match="2 of 4 parts missing or damaged"):
        wheel.join(tmp_path / "parts", tmp_path / "out2")
    assert not (tmp_path / "out2" / src.name).exists()
    assert wheel.main(["verify", "--parts", str(tmp_path / "parts")]) == 1


def test_an_index_naming_a_path_outside_its_folder_is_refused(tmp_path):
    (tmp_path / "parts.json").write_text(json.dumps({"wheel": "../../evil.whl", "bytes": 1, "sha256": "0" * 64,
                                                     "parts": []}))
    with pytest.raises(InputError, match="refusing the file name"):
        wheel.join(tmp_path, tmp_path / "out")
    (tmp_path / "parts.json").write_text("{not json")
    with pytest.raises(InputError, match="not a parts index"):
        wheel.read_index(tmp_path)


def test_install_joins_and_pip_installs_into_its_own_target(tmp_path):
    # A real (tiny) wheel, so pip itself runs, offline, as it will on the GPU machine.
    whl = tmp_path / "zoo_gpu_probe-1.0-py3-none-any.whl"
    files = {"zoo_gpu_probe/__init__.py": b"VALUE = 42\n",
             "zoo_gpu_probe-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: zoo-gpu-probe\nVersion: 1.0\n",
             "zoo_gpu_probe-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                                                  b"Tag: py3-none-any\n"}
    with zipfile.ZipFile(whl, "w") as z:
        for name, body in files.items():
            z.writestr(name, body)
        z.writestr("zoo_gpu_probe-1.0.dist-info/RECORD", "".join(f"{n},,\n" for n in files)
                   + "zoo_gpu_probe-1.0.dist-info/RECORD,,\n")
    wheel.split(whl, tmp_path / "parts", max_part_bytes=200)
    target = wheel.install(tmp_path / "parts", tmp_path / "site", work=tmp_path / "work")
    assert (target / "zoo_gpu_probe" / "__init__.py").read_bytes() == b"VALUE = 42\n"
    res = subprocess.run([sys.executable, "-c", "import zoo_gpu_probe; print(zoo_gpu_probe.VALUE)"],
                         env=dict(os.environ, PYTHONPATH=str(target)), capture_output=True, text=True)
    assert res.stdout.strip() == "42"


def test_check_says_when_the_cpu_onnxruntime_shadows_the_gpu_one(tmp_path):
    out = wheel.check(tmp_path)  # this onnxruntime is the CPU build, from site-packages
    assert any("not from" in p and "PYTHONPATH" in p for p in out["problems"])
    if out["device"] != "GPU":
        assert "CUDAExecutionProvider is not among the available providers" in out["problems"]


# ---- on a GPU -----------------------------------------------------------------------------------


def _cuda_ready() -> bool:
    try:
        import onnxruntime as ort
        import torch

        return torch.cuda.is_available() and "CUDAExecutionProvider" in ort.get_available_providers()
    except Exception:
        return False


@pytest.mark.gpu
@pytest.mark.skipif(not _cuda_ready(), reason="no CUDA GPU and onnxruntime-gpu here: the GPU check runs where one is")
def test_gpu_check_on_cuda(tmp_path):
    from zoo.verify.gpu.__main__ import main

    assert main(["--out", str(tmp_path), "--models", "dense_b0", "--input-dim", "64", "--compile", "none"]) == 0
    result = json.loads((tmp_path / "gpu-check.json").read_text())
    parity = result["models"]["dense_b0"]["parity"]
    assert result["gpu_used"] and result["machine"]["gpu"]
    assert {(r["precision"], r["reference"]) for r in parity if r["verdict"] == "pass"} >= {
        ("fp32", "torch-cpu"), ("fp32", "torch-cuda"), ("fp16", "torch-cpu"), ("fp16", "torch-cuda")}


def test_runs_bound_to_fixed_buffers_as_cuda_graphs_need_them():
    """The CUDA-graph path's binding (buffers allocated once, output read back), on the CPU."""
    import numpy as np

    from zoo.bench.latency import LatencyOptions
    from zoo.verify.gpu.env import make_session, tiny_model
    from zoo.verify.gpu.timing import fixed_buffers

    sess = make_session(tiny_model(), "CPUExecutionProvider")
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    fast = LatencyOptions(warmup_runs=1, max_runs=3, time_budget_s=0.05)
    m = fixed_buffers(sess, x, x + x, device="cpu", input_name="x", output_name="y", options=fast)
    assert m.matches_plain is True and m.runs >= 1 and m.summary["p50_ms"] > 0
    assert fixed_buffers(sess, x, x * 3, device="cpu", input_name="x", output_name="y",
                         options=fast).matches_plain is False
