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


def zoo_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "zoo", *args]
