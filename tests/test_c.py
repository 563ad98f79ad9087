"""The artifacts in C and C++: examples/c/classify (ONNX Runtime's C API) and examples/cpp/classify
(its C++ API), and ``c`` / ``cpp`` in the parity matrix (verify/c.py).

Nothing here is skipped: a C11 and a C++17 compiler, make, apt-get (for the headers, see
examples/ort.mk), OpenSSL's libcrypto (Debian's libssl-dev, for --sha256) and valgrind are required; CI installs them and builds both examples with
``make -C examples/c`` and ``make -C examples/cpp``. The module fixture runs the same make commands
(nothing to do when CI has built them), so the programs tested are those of the sources.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import urllib.parse
from pathlib import Path

import jsonschema
import numpy as np
import onnx
import onnxruntime as ort
import pytest

from zoo.builder import manifest as mf
from zoo.builder.artifact import read_tensor, tensor_bytes
from zoo.errors import ZooError
from zoo.exporters.variants import variant_bytes
from zoo.fsutil import sha256_bytes
from zoo.spec import variant_path
from zoo.verify import c
from zoo.verify.parity import DEFAULT_TOLERANCES, error_metrics

from conftest import zoo_cmd
from tamper import sha256_file

ROOT = Path(__file__).resolve().parents[1]
PRECISIONS = ("fp32", "int8", "fp16")
RUNTIMES = ("c", "cpp")
VALGRIND = "/usr/bin/valgrind"


def make(example: str) -> None:
    """``make -C examples/EXAMPLE`` with this venv's onnxruntime wheel; fails (never skips) when it cannot."""
    proc = subprocess.run(["make", "-C", str(ROOT / "examples" / example), f"PYTHON={sys.executable}"],
                          capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        pytest.fail(f"make -C examples/{example} failed (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}")


@pytest.fixture(scope="module")
def programs() -> dict[str, Path]:
    for r in RUNTIMES:
        make(r)
        reason = c.c_available(r)
        if reason is not None:
            pytest.fail(f"the {r} example is required for these tests and is unavailable: {reason}")
    return {r: c.program(r) for r in RUNTIMES}


@pytest.fixture(scope="module")
def artifacts(small_build, tmp_path_factory, programs) -> Path:
    """The session's small build (dense_b0, input width 64) plus its int8 and fp16 files, as
    ``zoo build --precision fp32,int8,fp16`` makes them."""
    out = tmp_path_factory.mktemp("c-artifacts")
    shutil.copytree(small_build, out, dirs_exist_ok=True)
    manifest = mf.load(out)
    entry = mf.entry(manifest, "dense_b0")
    fp32 = next(f for f in entry["files"] if f["role"] == "model" and f["precision"] == "fp32")
    model = (out / fp32["path"]).read_bytes()
    for p in PRECISIONS[1:]:
        data = variant_bytes(model, p)
        path = variant_path("dense_b0", p)
        (out / path).write_bytes(data)
        entry["files"].append({"path": path, "bytes": len(data), "sha256": sha256_bytes(data), "role": "model",
                               "precision": p})
    mf.save(out / mf.MANIFEST_NAME, mf.upsert(manifest, entry))
    return out


@pytest.fixture(scope="module")
def results(artifacts) -> dict[str, list[dict]]:
    return c.run_c(artifacts, mf.load(artifacts), runtimes=RUNTIMES)


def files(artifacts: Path) -> dict[str, Path]:
    return {p: artifacts / variant_path("dense_b0", p) for p in PRECISIONS}


def data_set(artifacts: Path) -> tuple[Path, Path]:
    folder = artifacts / "dense_b0" / "test_data_set_0"
    return folder / "input_0.pb", folder / "output_0.pb"




def run(program: Path, *args, valgrind: bool = False, timeout: float = 120) -> subprocess.CompletedProcess:
    cmd = [str(program), *map(str, args)]
    if valgrind:
        cmd = [VALGRIND, "-q", f"--suppressions={ROOT / 'examples' / 'valgrind.supp'}", "--leak-check=full",
               "--errors-for-leak-kinds=definite,indirect", "--error-exitcode=99", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def parity_validator() -> jsonschema.Draft202012Validator:
    schema = mf.schema()
    return jsonschema.Draft202012Validator({**schema["$defs"]["parity"], "$defs": schema["$defs"]})


# --- the toolchain --------------------------------------------------------------------------------


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_built_against_this_venvs_onnxruntime(programs, runtime):
    assert c.c_version(runtime) == ort.__version__
    proc = run(programs[runtime], "--version")
    assert proc.returncode == 0 and proc.stdout.startswith(f"onnxruntime {ort.__version__} (")
    # the library is found through the rpath, as the SONAME the wheel does not provide as a name
    ldd = subprocess.run(["ldd", str(programs[runtime])], capture_output=True, text=True).stdout
    line = next(ln for ln in ldd.splitlines() if "libonnxruntime" in ln)
    assert line.split()[0] == "libonnxruntime.so.1" and "examples/.ort/lib/libonnxruntime.so.1" in line, line


def test_no_mirror_host_in_the_makefiles():
    """The mirror comes from the system's apt sources at build time, never from the repository."""
    text = (ROOT / "examples" / "ort.mk").read_text()
    assert "URIs:" in text and "Dir::State::Lists=" in text and "Dir::Etc::SourceParts=/dev/null" in text
    sources = Path("/etc/apt/sources.list.d/debian.sources")
    lines = sources.read_text().splitlines() if sources.exists() else []
    uris = [ln.split()[1] for ln in lines if ln.startswith("URIs:") and len(ln.split()) > 1]
    hosts = {urllib.parse.urlsplit(u).hostname for u in uris} - {None}
    for path in [*(ROOT / "examples").glob("**/Makefile"), ROOT / "examples" / "ort.mk"]:
        assert not any(h in path.read_text() for h in hosts), path


# --- every model file, every precision, both programs ----------------------------------------------


def test_every_precision_passes_in_c_and_cpp(artifacts, results):
    validator = parity_validator()
    records = results["dense_b0"]
    assert [(r["backend"], r["precision"]) for r in records] == [(b, p) for p in PRECISIONS for b in RUNTIMES]
    x = read_tensor(data_set(artifacts)[0].read_bytes())
    y = read_tensor(data_set(artifacts)[1].read_bytes())
    for rec in records:
        validator.validate(rec)
        assert rec["verdict"] == "pass", rec["reason"]
        assert rec["runtime"] == rec["backend"] and rec["version"] == ort.__version__
        tol = DEFAULT_TOLERANCES[rec["precision"]]
        assert (rec["atol"], rec["rtol"]) == (tol.atol, tol.rtol) and rec["reference"] == "test-data"
        assert rec["batch_sizes"] == [3] and rec["distributions"] == ["test_data_set_0"]
        assert rec["output"] == "logits" and rec["failed_check"] is None
        # the same numbers as ONNX Runtime's Python package on the same file, under verify/parity.py's definitions
        sess = ort.InferenceSession(str(files(artifacts)[rec["precision"]]), providers=["CPUExecutionProvider"])
        expected = error_metrics(sess.run(None, {"input": x})[0], y, tol)
        exact = rec["precision"] == "fp32"
        for key in ("max_abs_error", "mean_abs_error", "p99_abs_error", "cosine_similarity", "rel_l2_error",
                    "top1_agreement"):
            assert rec[key] == pytest.approx(expected[key], rel=1e-3 if exact else 0.05, abs=1e-6), key
    # the records belong in the manifest like any other runtime's
    manifest = mf.load(artifacts)
    mf.entry(manifest, "dense_b0")["parity"].extend(records)
    mf.validate(manifest)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_prints_ports_and_the_top_class_per_row(artifacts, programs, runtime):
    x_path, y_path = data_set(artifacts)
    model = files(artifacts)["fp32"]
    proc = run(programs[runtime], model, x_path)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[1] == "input   input: float32 [batch, 64]"  # the symbolic batch axis by its name
    assert lines[2] == "output  logits: float32 [batch, 10]"
    logits = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).run(
        None, {"input": read_tensor(x_path.read_bytes())})[0]
    rows = lines[3:]
    assert len(rows) == 3
    for i, line in enumerate(rows):
        top = int(np.argmax(logits[i]))
        assert line == f"row {i}: class {top} (logit {logits[i, top]:.4f})"

    proc = run(programs[runtime], model, x_path, "--json")
    out = json.loads(proc.stdout)
    assert out["inputs"] == [{"name": "input", "type": "float32", "shape": ["batch", 64]}]
    assert out["outputs"] == [{"name": "logits", "type": "float32", "shape": ["batch", 10]}]
    assert out["top_class"] == [int(i) for i in logits.argmax(axis=1)] and out["output_shape"] == [3, 10]


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_clean_under_valgrind(artifacts, programs, runtime):
    """No memory error and no leak in the program (ONNX Runtime's own findings: examples/valgrind.supp)."""
    x_path, y_path = data_set(artifacts)
    proc = run(programs[runtime], files(artifacts)["fp32"], x_path, "--expect", y_path, "--atol", "1e-4",
               "--rtol", "1e-3", "--json", "--sha256", sha256_file(files(artifacts)["fp32"]), valgrind=True,
               timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout)["verdict"] == "pass"
    # a failure path frees everything too
    proc = run(programs[runtime], files(artifacts)["fp32"], artifacts / "nope.pb", valgrind=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-3000:]


# --- failures: one line, the documented exit status ----------------------------------------------


@pytest.fixture(scope="module")
def bad_inputs(artifacts, tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("bad-inputs")
    x = read_tensor(data_set(artifacts)[0].read_bytes())
    (d / "corrupted.pb").write_bytes(data_set(artifacts)[0].read_bytes()[:-7])  # raw_data cut short
    (d / "garbage.pb").write_bytes(b"\x0a\xff")  # a truncated length
    (d / "wide.pb").write_bytes(tensor_bytes(np.zeros((3, 63), np.float32), "input"))
    (d / "int64.pb").write_bytes(tensor_bytes(np.zeros((3, 64), np.int64), "input"))
    external = onnx.numpy_helper.from_array(x, "input")
    external.data_location = onnx.TensorProto.EXTERNAL
    (d / "external.pb").write_bytes(external.SerializeToString())
    return d


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("case, status, message", [
    ("corrupted", 2, "corrupted.pb: "),
    ("garbage", 2, "garbage.pb: truncated"),
    ("wide", 2, "wide.pb: shape [3, 63] does not fit the model's input \"input\" [batch, 64]"),
    ("int64", 2, "int64.pb: data_type 7 is not float32 (1); this reader handles float32 only"),
    ("external", 2, "external.pb: the tensor keeps its data in an external file (not supported)"),
    ("missing-input", 2, "cannot open "),
    ("missing-model", 2, "cannot open "),
    ("unknown-option", 2, "unknown option --frobnicate (see --help)"),
    ("no-tolerance", 2, "--expect needs --atol and --rtol"),
    ("negative-tolerance", 2, "--atol -1: expected a number >= 0"),
    ("no-arguments", 2, "expected MODEL.onnx [INPUT.pb] (see --help)"),
    ("short-sha256", 2, "--sha256 abc: expected 64 hex digits"),
    ("non-hex-sha256", 2, "--sha256 " + "g" * 64 + ": expected 64 hex digits"),
    ("not-a-model", 2, "ONNX Runtime cannot load "),
])
def test_bad_input_is_one_line_and_exit_2(artifacts, programs, bad_inputs, runtime, case, status, message):
    model, (x_path, y_path) = files(artifacts)["fp32"], data_set(artifacts)
    args = {
        "missing-input": [model, artifacts / "nope.pb"],
        "missing-model": [artifacts / "nope.onnx", x_path],
        "unknown-option": ["--frobnicate", model, x_path],
        "no-tolerance": [model, x_path, "--expect", y_path],
        "negative-tolerance": [model, x_path, "--expect", y_path, "--atol", "-1", "--rtol", "0"],
        "no-arguments": [],
        "not-a-model": [x_path, x_path],
        "short-sha256": [model, x_path, "--sha256", "abc"],
        "non-hex-sha256": [model, x_path, "--sha256", "g" * 64],
    }.get(case, [model, bad_inputs / f"{case}.pb", "--expect", y_path, "--atol", "1e-4", "--rtol", "1e-3"])
    proc = run(programs[runtime], *args, "--json")
    assert proc.returncode == status, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
    assert proc.stdout == ""  # no half a result


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_failed_check_is_exit_1_naming_the_worst_element(artifacts, programs, runtime, tmp_path):
    x_path, y_path = data_set(artifacts)
    y = read_tensor(y_path.read_bytes())
    y[2, 7] += 0.5
    bad = tmp_path / "output_0.pb"
    bad.write_bytes(tensor_bytes(y, "logits"))
    proc = run(programs[runtime], files(artifacts)["fp32"], x_path, "--expect", bad, "--atol", "1e-4", "--rtol", "1e-3",
               "--json")
    assert proc.returncode == 1
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("FAILED: ") and "values check" in lines[0], lines
    out = json.loads(proc.stdout)
    assert out["verdict"] == "fail" and out["failed_check"] == "values"
    assert out["checks"][0]["worst"]["index"] == [2, 7] and out["checks"][0]["max_abs_error"] == pytest.approx(0.5, abs=1e-3)

    bad.write_bytes(tensor_bytes(y, "probabilities"))
    out = json.loads(run(programs[runtime], files(artifacts)["fp32"], x_path, "--expect", bad, "--atol", "1",
                         "--rtol", "0", "--json").stdout)
    assert (out["failed_check"], out["reason"]) == ("names", 'output 0 is named "logits", expected "probabilities"')
    bad.write_bytes(tensor_bytes(np.ascontiguousarray(y[:, :9]), "logits"))
    out = json.loads(run(programs[runtime], files(artifacts)["fp32"], x_path, "--expect", bad, "--atol", "1",
                         "--rtol", "0", "--json").stdout)
    assert (out["failed_check"], out["reason"]) == ("shapes", 'output "logits" has shape [3, 10], expected [3, 9]')


def test_the_matrix_records_failures_and_refuses_bad_test_data(artifacts, tmp_path):
    folder = tmp_path / "a"
    shutil.copytree(artifacts, folder)
    y_path = folder / "dense_b0/test_data_set_0/output_0.pb"
    y = read_tensor(y_path.read_bytes())
    y[0, 0] += 1.0
    y_path.write_bytes(tensor_bytes(y, "logits"))
    (rec,) = c.run_c(folder, mf.load(folder), precisions=["fp32"])["dense_b0"]
    parity_validator().validate(rec)
    assert (rec["verdict"], rec["failed_check"]) == ("fail", "values")
    assert rec["reason"].startswith("test_data_set_0 batch 3: output \"logits\" differs") and rec["max_abs_error"] > 0.9

    (folder / "dense_b0/test_data_set_0/input_0.pb").write_bytes(b"\x0a\xff")
    with pytest.raises(ZooError, match="input_0.pb: truncated"):
        c.run_c(folder, mf.load(folder), precisions=["fp32"])
    with pytest.raises(ValueError, match="not in the manifest: dense_b9"):
        c.run_c(artifacts, mf.load(artifacts), ["dense_b9"])
    with pytest.raises(ValueError, match="unknown C runtime 'fortran'"):
        c.run_c(artifacts, mf.load(artifacts), runtimes=["fortran"])


def test_tolerances_come_from_the_python_verifier():
    for p, tol in DEFAULT_TOLERANCES.items():
        cmd = c.command("c", "m.onnx", "input_0.pb", ["output_0.pb"], tol)
        assert cmd[cmd.index("--atol") + 1] == repr(tol.atol) and cmd[cmd.index("--rtol") + 1] == repr(tol.rtol)


# --- in the zoo's commands -------------------------------------------------------------------------


def test_zoo_verify_runtimes_c_records_pass_records(artifacts, tmp_path):
    folder = tmp_path / "v"
    shutil.copytree(artifacts, folder)
    proc = subprocess.run(zoo_cmd("verify", "dense_b0", "--artifacts", str(folder), "--runtimes", "c",
                                  "--batch-sizes", "2", "--json"), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    recs = [r for r in mf.entry(mf.load(folder), "dense_b0")["parity"] if r["backend"] == "c"]
    assert sorted(r["precision"] for r in recs) == sorted(PRECISIONS)
    assert all(r["verdict"] == "pass" and r["version"] == ort.__version__ for r in recs), recs
    assert [r["backend"] for r in json.loads(proc.stdout)["dense_b0"]].count("c") == 3


def test_an_unbuilt_program_is_unavailable_and_named_with_the_make_command(artifacts, monkeypatch, tmp_path):
    monkeypatch.setenv(c.PROGRAM_ENV["c"], str(tmp_path / "classify"))
    assert "is not built" in c.c_available("c")
    records = c.run_c(artifacts, mf.load(artifacts), precisions=["fp32"])["dense_b0"]
    assert [(r["backend"], r["verdict"]) for r in records] == [("c", "unavailable")]
    parity_validator().validate(records[0])

    monkeypatch.delenv(c.PROGRAM_ENV["c"])
    monkeypatch.setattr(c, "EXAMPLES", {**c.EXAMPLES, "c": tmp_path})
    assert c.c_available("c").endswith("build it: make -C examples/c)")
    from click.testing import CliRunner

    from zoo.cli import cli

    blocker = tmp_path / "a-file"
    blocker.write_text("")
    res = CliRunner().invoke(cli, ["build", "dense_b0", "--out", str(blocker / "zoo")])
    notes = [ln for ln in res.stderr.splitlines() if ln.startswith("note: no parity on c: ")]
    assert len(notes) == 1 and "make -C examples/c" in notes[0], res.stderr


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_model_saved_with_external_data_loads(artifacts, programs, runtime, tmp_path):
    """Models over 2 GB must keep their weights outside the .onnx file: the programs load the model
    from its path, so ONNX Runtime finds the data file beside it."""
    proto = onnx.load(str(files(artifacts)["fp32"]))
    model = tmp_path / "model.onnx"
    onnx.save(proto, str(model), save_as_external_data=True, all_tensors_to_one_file=True,
              location="model.onnx.data", size_threshold=0)
    assert (tmp_path / "model.onnx.data").stat().st_size > 10 * model.stat().st_size  # the weights are outside
    x_path, y_path = data_set(artifacts)
    args = [x_path, "--expect", y_path, "--atol", "1e-4", "--rtol", "1e-3", "--json"]
    proc = run(programs[runtime], model, *args)
    assert proc.returncode == 0, proc.stderr
    single = json.loads(run(programs[runtime], files(artifacts)["fp32"], *args).stdout)
    assert json.loads(proc.stdout)["checks"][0]["max_abs_error"] == single["checks"][0]["max_abs_error"]

    (tmp_path / "model.onnx.data").unlink()  # without its data the model cannot load: one line, exit 1
    proc = run(programs[runtime], model, *args)
    assert proc.returncode == 1 and len(proc.stderr.splitlines()) == 1, proc.stderr
    assert proc.stderr.startswith("error: ONNX Runtime cannot load ")
