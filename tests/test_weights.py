"""Weights files: round trip through zoo build --weights, strict loading, bad input refused."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import zoo
from zoo.cli import cli
from zoo.fsutil import sha256_file
from zoo.model.weights import save_weights

DIM = 64


def _changed_b0(seed: int = 0) -> torch.nn.Module:
    """dense_b0 at a narrow input whose weights and BatchNorm statistics all moved off the seeded ones."""
    model = zoo.create("dense_b0", input_dim=DIM, seed=seed)
    g = torch.Generator().manual_seed(123)
    with torch.no_grad():
        for t in model.state_dict().values():
            if t.is_floating_point():
                t.mul_(1 + 0.1 * torch.randn(t.shape, generator=g)).add_(0.01 * torch.randn(t.shape, generator=g))
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                m.running_var.abs_().add_(0.1)
    return model.eval()


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("w") / "b0.safetensors"
    model = _changed_b0()
    save_weights(model, path)
    return path, model


def _build(out, *args):
    return CliRunner().invoke(cli, ["build", "dense_b0", "--input-dim", str(DIM), "--out", str(out), "--no-bench",
                                    "--no-verify", *args])


def test_round_trip_build_matches_pytorch_and_is_reproducible(weights_file, tmp_path):
    import onnxruntime as ort

    path, model = weights_file
    a, b = tmp_path / "a", tmp_path / "b"
    for out in (a, b):
        res = _build(out, "--weights", str(path))
        assert res.exit_code == 0, res.output
    entry = json.loads((a / "manifest.json").read_text())["models"][0]
    assert entry["weights"] == {"source": "file", "sha256": sha256_file(path), "bytes": path.stat().st_size}
    assert {f["role"] for f in entry["files"]} >= {"model", "weights"}
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file() and p.name != "manifest.json")
    assert files and all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    assert (a / "dense_b0" / "weights.safetensors").read_bytes() == path.read_bytes()

    sess = ort.InferenceSession(str(a / "dense_b0" / "model.onnx"), providers=["CPUExecutionProvider"])
    seeded = zoo.create("dense_b0", input_dim=DIM)
    for batch in (1, 3, 64):
        x = torch.randn(batch, DIM, generator=torch.Generator().manual_seed(batch))
        with torch.no_grad():
            want, other = model(x).numpy(), seeded(x).numpy()
        got = sess.run(None, {"input": x.numpy()})[0]
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-3)
        assert not np.allclose(want, other, atol=1e-2)  # the file's weights, not the seeded ones

    # zoo verify checks against the published weights file, not a seeded model
    ver = CliRunner().invoke(cli, ["verify", "dense_b0", "--artifacts", str(a), "--runtimes", "openvino",
                                   "--batch-sizes", "1,3"])
    assert ver.exit_code == 0, ver.output

    # --check rebuilds with the manifest's options (it refuses shape options); the weights come again
    check = CliRunner().invoke(cli, ["build", "dense_b0", "--weights", str(path), "--check", str(a / "manifest.json")])
    assert check.exit_code == 0, check.output
    assert "match" in check.output
    seeded_check = CliRunner().invoke(cli, ["build", "dense_b0", "--check", str(a / "manifest.json")])
    assert seeded_check.exit_code == 1  # without the weights, the rebuild differs


def test_published_weights_are_pulled_on_request(weights_file, tmp_path):
    from zoo import hub

    path, model = weights_file
    assert _build(tmp_path / "art", "--weights", str(path)).exit_code == 0
    hub.publish(tmp_path / "art", tmp_path / "mirror")
    cache = tmp_path / "cache"
    plain = hub.pull(["dense_b0"], str(tmp_path / "mirror"), cache_dir=cache)[0]
    assert {f["role"] for f in plain.files} == {"model"}  # weights only when asked for
    res = CliRunner().invoke(cli, ["pull", "dense_b0", "--from", str(tmp_path / "mirror"), "--with-weights",
                                   "--cache-dir", str(cache), "--json"])
    assert res.exit_code == 0, res.output
    assert "weights" in {f["role"] for f in json.loads(res.stdout)[0]["files"]}
    w = hub.load("dense_b0", str(tmp_path / "mirror"), role="weights", cache_dir=cache)
    assert w.read_bytes() == path.read_bytes()
    tuned = zoo.create("dense_b0", input_dim=DIM, weights=w)
    assert all(torch.equal(tuned.state_dict()[k], v) for k, v in model.state_dict().items())


def test_python_api_create_and_load(weights_file):
    path, model = weights_file
    a = zoo.create("dense_b0", input_dim=DIM, weights=str(path))
    b = zoo.load_weights(zoo.create("dense_b0", input_dim=DIM, seed=5), path)
    for m in (a, b):
        assert all(torch.equal(m.state_dict()[k], v) for k, v in model.state_dict().items())
    assert not a.training


def _bad(kind: str, tmp_path, model) -> str:
    state = {k: v.clone() for k, v in model.state_dict().items()}
    p = tmp_path / "w.safetensors"
    if kind == "missing":
        return str(tmp_path / "nope.safetensors")
    if kind == "pickle":
        p = tmp_path / "w.pt"
        torch.save(state, p)
        return str(p)
    if kind == "pickle_renamed":
        torch.save(state, p)
    elif kind == "truncated":
        save_weights(state, p)
        p.write_bytes(p.read_bytes()[:-100])
    elif kind == "not_safetensors":
        p.write_bytes(b"hello, this is not a weights file" * 10)
    elif kind == "wrong_keys":
        state["extra.weight"] = state.pop("classifier.bias")
        save_weights(state, p)
    elif kind == "wrong_shape":
        save_weights(zoo.create("dense_b0", input_dim=DIM + 8), p)
    elif kind == "wrong_dtype":
        state["classifier.bias"] = state["classifier.bias"].double()
        save_weights(state, p)
    elif kind == "other_variant":
        save_weights(zoo.create("dense_b1", input_dim=DIM), p)
    elif kind in ("nan", "inf"):
        state["classifier.weight"][0, 0] = float("nan") if kind == "nan" else float("inf")
        save_weights(state, p)
    return str(p)


@pytest.mark.parametrize("kind, words", [
    ("missing", "no such weights file"), ("pickle", "never loaded"), ("pickle_renamed", "never loaded"),
    ("truncated", "truncated"), ("not_safetensors", "not a safetensors file"), ("wrong_keys", "missing 1 key"),
    ("wrong_shape", "file [32, 72]"), ("wrong_dtype", "float64"), ("other_variant", "do not fit"),
    ("nan", "NaN or Inf"), ("inf", "NaN or Inf"),
])
def test_bad_weights_exit_2_and_write_nothing(kind, words, tmp_path, weights_file):
    path = _bad(kind, tmp_path, weights_file[1])
    out = tmp_path / "out"
    res = _build(out, "--weights", path)
    assert res.exit_code == 2, res.output
    assert words in res.output and "Traceback" not in res.output
    errors = [ln for ln in res.output.splitlines() if ln.startswith("Error:")]
    assert len(errors) == 1 and "\n" not in errors[0]
    if kind == "pickle":
        assert "save_file(torch.load(" in res.output  # how to convert it
    assert not out.exists() or not any(out.rglob("*"))
