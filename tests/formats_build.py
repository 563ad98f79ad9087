"""The build the publishing-format tests share: dense_b0 at input width 64 from a weights file
(the seeded weights saved as safetensors, so the build has weights to publish), fp32 and fp16,
every tensor in external data, release metadata (version 2, license, author, labels) and top-1
measured on a small MNIST-1D split (so the model card has a model-index)."""

from __future__ import annotations

import json

import pytest

LABELS = [f"class {i}" for i in range(10)]
VERSION = 2
LICENSE = "Apache-2.0"
AUTHOR = "Zoo Test Authors"
_SESSION: dict = {}  # one build per test process, whichever module asks first


@pytest.fixture(scope="session")
def formats_build(tmp_path_factory):
    from click.testing import CliRunner

    if "artifacts" in _SESSION:
        return _SESSION["artifacts"]
    import zoo
    from zoo.cli import cli
    from zoo.model.weights import save_weights

    d = tmp_path_factory.mktemp("formats-build")
    save_weights(zoo.create("dense_b0", input_dim=64), d / "dense_b0.safetensors")
    (d / "labels.json").write_text(json.dumps(LABELS))
    runner = CliRunner()
    r = runner.invoke(cli, ["data", "mnist1d", "--input-dim", "64", "--samples", "500", "--out", str(d / "eval.npz")])
    assert r.exit_code == 0, r.output
    r = runner.invoke(cli, ["build", "dense_b0", "--input-dim", "64", "--precision", "fp32,fp16", "--external-data",
                            "--no-verify", "--no-bench", "--weights", str(d / "dense_b0.safetensors"), "--eval-data", str(d / "eval.npz"), "--artifacts",
                            str(d / "artifacts"), "--model-version", str(VERSION), "--license", LICENSE,
                            "--author", AUTHOR, "--labels", str(d / "labels.json")])
    assert r.exit_code == 0, r.output
    _SESSION["artifacts"] = d / "artifacts"
    return d / "artifacts"
