"""zoo train and zoo data: deterministic data, a short real training, resume to the same bits."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from zoo.cli import cli
from zoo.model import data as ds
from zoo.model.train import Recipe, paths, train
from zoo.model.weights import read_state


def test_ci_training_learns(trained_b0):
    out, rec = trained_b0
    assert rec["final_top1"] >= 0.40  # chance is 0.10
    assert rec["history"][-1]["test_top1"] == rec["final_top1"] and len(rec["history"]) == rec["epochs"]
    on_disk = json.loads((out / "dense_b0.train.json").read_text())
    assert on_disk["weights"]["sha256"] == read_state(out / "dense_b0.safetensors")[1]["sha256"]
    assert on_disk["dataset"]["sha256"] == ds.dataset_sha256(ds.generate(ds.DatasetParams(256, on_disk["dataset"]["samples"])))
    assert on_disk["recipe"]["label_smoothing"] > 0 and on_disk["recipe"]["dropout"] == 0.2
    assert not (out / "dense_b0.ckpt.safetensors").exists()


def test_data_is_deterministic_and_the_same_digits_at_any_width(tmp_path):
    res = [CliRunner().invoke(cli, ["data", "mnist1d", "--input-dim", "64", "--samples", "500", "--out",
                                    str(tmp_path / f"{i}.npz")]) for i in range(2)]
    assert all(r.exit_code == 0 for r in res), res[0].output
    assert (tmp_path / "0.npz").read_bytes() == (tmp_path / "1.npz").read_bytes()
    sha = res[0].stdout.split()[0]
    assert len(sha) == 64 and sha == ds.dataset_sha256(ds.load_npz(tmp_path / "0.npz"))
    a, b = ds.generate(ds.DatasetParams(64, 500)), ds.generate(ds.DatasetParams(128, 500))
    assert a["x"].shape == (400, 64) and b["x_test"].shape == (100, 128)
    assert np.array_equal(a["y"], b["y"]) and np.array_equal(a["y_test"], b["y_test"])
    state = np.random.get_state()[1].copy()
    ds.generate(ds.DatasetParams(64, 200))
    assert np.array_equal(np.random.get_state()[1], state)  # the global RNG is left alone


def test_interrupted_training_resumes_to_the_same_weights(tmp_path):
    recipe = Recipe(epochs=2, batch_size=64, seed=3)
    data = ds.generate(ds.DatasetParams(256, 400))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        full = train("dense_b0", tmp_path / "full", recipe, samples=400, data=data)
        assert train("dense_b0", tmp_path / "cut", recipe, samples=400, data=data, stop_after=1) is None
        p = paths(tmp_path / "cut", "dense_b0")
        assert p["checkpoint"].exists() and not p["weights"].exists()
        with pytest.raises(ValueError, match="--resume"):
            train("dense_b0", tmp_path / "cut", recipe, samples=400, data=data)
        with pytest.raises(ValueError, match="another recipe"):
            train("dense_b0", tmp_path / "cut", Recipe(epochs=3, batch_size=64, seed=3), samples=400, data=data,
                  resume=True)
        resumed = train("dense_b0", tmp_path / "cut", recipe, samples=400, data=data, resume=True)
    finally:
        torch.set_num_threads(threads)
    a = (tmp_path / "full" / "dense_b0.safetensors").read_bytes()
    assert a == (tmp_path / "cut" / "dense_b0.safetensors").read_bytes()
    assert [h["loss"] for h in full["history"]] == [h["loss"] for h in resumed["history"]]
    assert full["weights"]["sha256"] == resumed["weights"]["sha256"]


def test_train_cli_bad_input():
    r = CliRunner().invoke(cli, ["train"])
    assert r.exit_code == 2 and "--all" in r.output
    r = CliRunner().invoke(cli, ["train", "dense_b9"])
    assert r.exit_code == 2 and "Traceback" not in r.output
