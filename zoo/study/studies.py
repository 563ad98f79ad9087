"""The two studies of ``zoo study``, end to end: plan -> trials (resumed) -> report."""

from __future__ import annotations

import os
from pathlib import Path

from . import plans
from .report import write
from .runner import Progress, run_trials
from .trials import Budget

# The per-trial budget of both default studies, measured to keep each inside 45 minutes on two
# CPU cores (README, "The scaling study"): 8,000 MNIST-1D samples (6,400 train), 4 epochs.
DEFAULT_SAMPLES = 8_000
DEFAULT_EPOCHS = 4
DEFAULT_SEEDS = {"scaling": 3, "grid": 2, "ablation": 3}
DEFAULT_WORKERS = 2


def run(kind: str, points: list[plans.Point], out: str | os.PathLike, *, seeds: int, budget: Budget,
        workers: int = DEFAULT_WORKERS, ray_address: str | None = None, progress: Progress = lambda m: None) -> dict:
    """Run (or resume) the trials of ``points`` and write the report; returns the summary plus
    which trials ran and which were read back."""
    trials = plans.trials_for(points, seeds, budget)
    progress(f"{kind} study: {len(points)} point(s) x {seeds} seed(s) = {len(trials)} trial(s), "
             f"{budget.epochs} epoch(s) over {budget.samples:,} samples each -> {out}")
    result = run_trials(trials, out, workers=workers, ray_address=ray_address, progress=progress)
    summary = write(kind, points, trials, result["records"], Path(out), seeds)
    return {**summary, "ran": result["ran"], "reused": result["reused"], "out": str(out)}
