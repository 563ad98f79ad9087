import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("OPENVINO_TELEMETRY", "0")


@pytest.fixture(scope="session")
def small_build(tmp_path_factory):
    """dense_b0 with a narrow input, built once (no parity matrix): artifacts dir + manifest."""
    from zoo.builder.artifact import request_for
    from zoo.builder.pipeline import build

    out = tmp_path_factory.mktemp("small-build")
    results = build([request_for("dense_b0", input_dim=64)], out)
    assert [r.status for r in results] == ["ok"]
    return out


@pytest.fixture(scope="session")
def quickstart_build(tmp_path_factory):
    """What the README's quick start leaves, for one model: ``zoo build dense_b0`` with the defaults of
    ``zoo build --all`` (the same bytes as the committed SHA256SUMS lines), without the parity matrix
    and timings. The artifacts folder; read only (copy it)."""
    import subprocess

    work = tmp_path_factory.mktemp("quickstart")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZOO_")}
    proc = subprocess.run(zoo_cmd("build", "dense_b0", "--no-verify", "--no-bench"), cwd=work, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return work / "artifacts"


@pytest.fixture(scope="session")
def targets_build(tmp_path_factory):
    """dense_b0 (input 64) with opset 15 and 17 targets and the ORT format (issue 34), the default file
    and every target checked in ONNX Runtime's CPU provider at batches 1 and 3 only."""
    from zoo.builder.artifact import request_for
    from zoo.builder.pipeline import build
    from zoo.builder.steps import default_extras
    from zoo.verify.backends import OrtBackend
    from zoo.verify.matrix import MatrixOptions, build_verifier

    out = tmp_path_factory.mktemp("targets-build")
    verifier = build_verifier(MatrixOptions(batch_sizes=(1, 3), backends=[OrtBackend()]))
    extras = default_extras(bench=False, verify=False, opsets=(15, 17), ort=True)
    results = build([request_for("dense_b0", input_dim=64)], out, verifier=verifier, extras=extras)
    assert [r.status for r in results] == ["ok"], results[0].error
    return out


def zoo_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "zoo", *args]


@pytest.fixture(scope="session")
def trained_b0(tmp_path_factory):
    """dense_b0 trained briefly on MNIST-1D (CI-sized): the checkpoint folder and its record."""
    import json

    import torch
    from click.testing import CliRunner

    from zoo.cli import cli

    out = tmp_path_factory.mktemp("trained")
    threads = torch.get_num_threads()
    try:  # one thread: on a shared two-core machine it is faster than two fighting
        res = CliRunner().invoke(cli, ["train", "dense_b0", "--epochs", str(TRAIN_EPOCHS), "--samples",
                                       str(TRAIN_SAMPLES), "--threads", "1", "--out", str(out), "--json"])
    finally:
        torch.set_num_threads(threads)
    assert res.exit_code == 0, res.output
    return out, json.loads(res.stdout)["models"][0]


# CI's short training of dense_b0 (about a minute on two cores).
TRAIN_SAMPLES = 8000
TRAIN_EPOCHS = 6
