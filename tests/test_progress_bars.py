"""Long work shows a progress bar on a terminal and stays line-based when stderr is not one."""

from __future__ import annotations

import io
import sys

from zoo.cli.build import ModelsProgress
from zoo.cli.train import TrainProgress


class Terminal(io.StringIO):
    def isatty(self):
        return True


def _epoch(progress, steps=8):
    progress({"event": "data", "model": "dense_b0", "dataset": {"samples": 400, "input_dim": 64, "seed": 42}})
    for s in range(1, steps + 1):
        progress({"event": "step", "model": "dense_b0", "epoch": 1, "epochs": 2, "step": s, "steps": steps,
                  "loss": 2.0 - s / 10, "elapsed_s": 0.1 * s})
    progress({"event": "epoch", "model": "dense_b0", "epoch": 1, "epochs": 2, "loss": 1.2, "test_top1": 0.31,
              "wall_s": 0.8})


def test_training_draws_a_bar_on_a_terminal():
    term = Terminal()
    _epoch(TrainProgress(term))
    out = term.getvalue()
    assert "\r" in out and "dense_b0 epoch 1/2:" in out and "/8 [" in out and "step" in out  # tqdm redraws in place
    assert "dense_b0 epoch 1/2: loss 1.200  test top-1 31.00%" in out


def test_training_in_a_log_is_a_few_plain_lines():
    log = io.StringIO()
    _epoch(TrainProgress(log))
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue()
    assert [ln.split(" loss")[0] for ln in lines[1:]] == ["dense_b0 epoch 1/2 25%", "dense_b0 epoch 1/2 50%",
                                                         "dense_b0 epoch 1/2 75%", "dense_b0 epoch 1/2:"]


def test_a_build_of_several_models_draws_a_bar_over_them(monkeypatch):
    term = Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    show = ModelsProgress(2)
    for msg in ("[1/2] dense_b0: create + export ...", "[1/2] dense_b0: ok (1.0s)",
                "[2/2] dense_b1: create + export ...", "[2/2] dense_b1: ok (2.0s)"):
        show(msg)
    assert show.bar.bar.n == 2
    show.close()
    out = term.getvalue()
    assert "\r" in out and "[2/2] dense_b1: ok (2.0s)" in out and "2/2" in out and "model" in out


def test_a_build_in_a_log_prints_its_lines_only(monkeypatch):
    log = io.StringIO()
    monkeypatch.setattr(sys, "stderr", log)
    show = ModelsProgress(2)
    show("[1/2] dense_b0: ok (1.0s)")
    show.close()
    assert log.getvalue() == "[1/2] dense_b0: ok (1.0s)\n"
