"""The deadline is the command's, not each precision's (issue 32, item 3): ``zoo pull --precision
fp32,fp16`` shares one ``ZOO_DEADLINE`` across both files, against a real server on 127.0.0.1 that
takes its time over each model file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from formats_build import formats_build  # noqa: F401 - dense_b0 in fp32 and fp16
from hub_server import serving

from zoo.builder import manifest as mf


@pytest.mark.timeout(120, func_only=True)
def test_one_deadline_for_every_precision_of_a_pull(formats_build, tmp_path):  # noqa: F811
    entry = mf.entry(mf.load(formats_build), "dense_b0")
    models = [f["path"] for f in entry["files"] if f["role"] == "model" and f["precision"] in ("fp32", "fp16")]
    assert len(models) == 2
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZOO_")}
    env.update(HOME=str(tmp_path), NO_PROXY="127.0.0.1", no_proxy="127.0.0.1")
    with serving(formats_build) as srv:
        def pull(deadline: str, cache: str):
            for p in models:  # each file alone fits the deadline; both together do not
                srv.set(p, "slow:1.6")
            t0 = time.monotonic()
            r = subprocess.run([sys.executable, "-m", "zoo", "pull", "dense_b0", "--precision", "fp32,fp16",
                                "--from", srv.url, "--cache-dir", str(tmp_path / cache), "--json"],
                               capture_output=True, text=True, env=dict(env, ZOO_DEADLINE=deadline), timeout=60)
            return r, time.monotonic() - t0

        r, took = pull("2.5", "c1")
        assert r.returncode == 1 and "deadline of 2.5 s" in r.stderr.strip().splitlines()[-1], r.stderr
        assert took < 2.5 + 8  # the deadline plus the interpreter's start-up, not 2 x the deadline
        view = tmp_path / "c1" / "models" / "dense_b0"  # the precision pulled in time stays, whole; not the other
        kept = {f["precision"] for f in mf.entry(mf.load(view), "dense_b0")["files"]} if view.exists() else set()
        assert "fp16" not in kept
        r, _ = pull("30", "c2")
        assert r.returncode == 0, r.stderr
        assert sorted(x["precision"] for x in json.loads(r.stdout)) == ["fp16", "fp32"]
