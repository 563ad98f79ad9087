"""``zoo study scaling``, ``grid`` and ``ablation``: the studies (thin: parse, run, print)."""

from __future__ import annotations

from pathlib import Path

import click

from ..study.ablation import CLAIMS, DEFAULT_BASELINE_MULTIPLIERS, DEFAULT_GROW_FROM
from ..study.plans import (
    DEFAULT_GRID,
    DEFAULT_MULTIPLIERS,
    PAPER_COEFFICIENTS,
    STRATEGIES,
)
from ..study.studies import (
    DEFAULT_EPOCHS,
    DEFAULT_SAMPLES,
    DEFAULT_SEEDS,
    DEFAULT_WORKERS,
)
from .common import ZooGroup, emit_json, progress, table


def _floats(text: str, option: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a comma list of numbers", param_hint=option) from None
    if not values:
        raise click.BadParameter("give at least one number", param_hint=option)
    return values


def _common(kind: str):
    def wrap(f):
        for opt in reversed([
            click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("study") / kind,
                         show_default=True, help="Folder of the trial records, report.md, the chart and summary.json."),
            click.option("--seeds", type=click.IntRange(min=1), default=DEFAULT_SEEDS[kind], show_default=True,
                         help="Train every point with seeds 0..N-1; the report gives mean and spread."),
            click.option("--epochs", type=click.IntRange(min=1), default=DEFAULT_EPOCHS, show_default=True,
                         help="Per-trial budget: epochs."),
            click.option("--samples", type=click.IntRange(min=100), default=DEFAULT_SAMPLES, show_default=True,
                         help="Per-trial budget: MNIST-1D samples (80 % train), generated at each trial's input_dim."),
            click.option("--workers", type=click.IntRange(min=1), default=DEFAULT_WORKERS, show_default=True,
                         help="Local worker processes (one thread each)."),
            click.option("--ray-address", default=None,
                         help="Run the trials on Ray instead: host:port or ray://host:port of a cluster, auto, or "
                              "local (start Ray on this machine). Needs the study extra."),
            click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout."),
        ]):
            f = opt(f)
        return f
    return wrap


def _run(kind, points, out, seeds, epochs, samples, workers, ray_address, as_json):
    from ..study.studies import run
    from ..study.trials import Budget

    summary = run(kind, points, out, seeds=seeds, budget=Budget(epochs, samples), workers=workers,
                  ray_address=ray_address, progress=progress)
    if as_json:
        emit_json(summary)
        return summary
    rows = [dict(r, top1=100 * r["top1_mean"], sd=None if r["top1_std"] is None else 100 * r["top1_std"],
                 mflops=r["flops"] / 1e6, input_dim=r["shape"]["input_dim"]) for r in summary["points"]]
    click.echo(table(rows, [("label", "point"), ("input_dim", "input_dim"), ("params", "params"),
                            ("mflops", "MFLOPs"), ("flops_ratio", "x B0"), ("top1", "top-1 %"), ("sd", "sd")]))
    click.echo(f"{len(summary['ran'])} trial(s) run, {len(summary['reused'])} read back; "
               f"report: {Path(out) / summary['files']['report']}, chart: {Path(out) / summary['files']['chart']}")
    return summary


@click.group("study", cls=ZooGroup)
def study_group():
    """Does compound scaling pay off for this family, and with which alpha, beta, gamma? Do SE,
    SiLU and progressive training help, and does B0 beat plain (residual) MLPs at equal FLOPs?

    Each trial (a network shape, a seed, a budget) trains with zoo train's recipe and writes one
    JSON record under OUT/trials; a study that is run again reads finished trials back.

    \b
    Examples:
      zoo study scaling                      # depth, width, resolution, compound at 2x and 4x FLOPs
      zoo study grid --seeds 1               # alpha, beta, gamma at phi = 1
      zoo study ablation                     # SE, SiLU vs ReLU, MLP baselines, progressive training
      zoo study scaling --ray-address 10.0.0.5:6379 --seeds 5
    """


@study_group.command("scaling")
@click.option("--strategies", default=",".join(STRATEGIES), show_default=True,
              help="Comma list of depth, width, resolution, compound.")
@click.option("--multipliers", default=",".join(f"{m:g}" for m in DEFAULT_MULTIPLIERS), show_default=True,
              help="FLOPs multipliers over B0, each > 1 (8 if the budget allows).")
@click.option("--alpha", type=float, default=PAPER_COEFFICIENTS[0], show_default=True, help="Compound: depth base.")
@click.option("--beta", type=float, default=PAPER_COEFFICIENTS[1], show_default=True, help="Compound: width base.")
@click.option("--gamma", type=float, default=PAPER_COEFFICIENTS[2], show_default=True, help="Compound: resolution base.")
@_common("scaling")
def scaling_cmd(strategies, multipliers, alpha, beta, gamma, out, seeds, epochs, samples, workers, ray_address,
                as_json):
    """Scale B0 by depth only, width only, resolution only and compound, at equal FLOPs; chart top-1
    against FLOPs, one line per strategy (the paper's Figures 3 and 8, for this family).

    \b
    Examples:
      zoo study scaling
      zoo study scaling --multipliers 2,4,8 --seeds 5 --workers 4
      zoo study scaling --strategies width,compound --alpha 1.4 --beta 1.1 --gamma 1.1
      zoo study scaling --samples 300 --epochs 1 --seeds 1 --strategies depth,width --multipliers 2
    """
    from ..study.plans import scaling_points

    points = scaling_points([s.strip() for s in strategies.split(",") if s.strip()],
                            _floats(multipliers, "--multipliers"), (alpha, beta, gamma))
    _run("scaling", points, out, seeds, epochs, samples, workers, ray_address, as_json)


@study_group.command("grid")
@click.option("--alphas", default=",".join(f"{v:g}" for v in DEFAULT_GRID["alpha"]), show_default=True,
              help="Grid of alpha (>= 1).")
@click.option("--betas", default=",".join(f"{v:g}" for v in DEFAULT_GRID["beta"]), show_default=True,
              help="Grid of beta (>= 1).")
@click.option("--gammas", default=",".join(f"{v:g}" for v in DEFAULT_GRID["gamma"]), show_default=True,
              help="Grid of gamma (>= 1).")
@_common("grid")
def grid_cmd(alphas, betas, gammas, out, seeds, epochs, samples, workers, ray_address, as_json):
    """The paper's step 1: at phi = 1, train every (alpha, beta, gamma) of the grid with
    alpha * beta**2 * gamma**2 within 10 % of 2, and the table's (1.2, 1.1, 1.15) under the same budget.

    \b
    Examples:
      zoo study grid
      zoo study grid --alphas 1.1,1.2,1.3 --betas 1,1.1,1.2 --gammas 1,1.1,1.2 --seeds 3
      zoo list --phi 2 --alpha 1.4 --beta 1.1 --gamma 1.1   # the family from the best triple
    """
    from ..study.plans import grid_points

    points = grid_points(_floats(alphas, "--alphas"), _floats(betas, "--betas"), _floats(gammas, "--gammas"))
    summary = _run("grid", points, out, seeds, epochs, samples, workers, ray_address, as_json)
    if not as_json:
        v = summary["verdicts"]
        c = v["best_vs_reference"]
        click.echo(f"best: {v['best']} vs the table's {v['reference']}: {c['diff_points']:+.2f} points "
                   f"({c['verdict']})")


@study_group.command("ablation")
@click.option("--claims", default=",".join(CLAIMS), show_default=True,
              help="Comma list of the claims to test: se, activation, baselines, progressive.")
@click.option("--baseline-multipliers", default=",".join(f"{m:g}" for m in DEFAULT_BASELINE_MULTIPLIERS),
              show_default=True, help="The residual-MLP and MLP baselines' FLOPs, as multiples of B0's.")
@click.option("--grow-from", type=click.IntRange(min=8, max=248), default=DEFAULT_GROW_FROM, show_default=True,
              help="Progressive training: B0's input width in the first epoch (it grows to 256 by the last).")
@_common("ablation")
def ablation_cmd(claims, baseline_multipliers, grow_from, out, seeds, epochs, samples, workers, ray_address, as_json):
    """The seed material's other claims, each against B0 under one budget: squeeze-excitation on/off,
    SiLU vs ReLU, a residual MLP and an MLP at B0's FLOPs and at 4x, and progressive input width
    against the final width from the start. The report says, claim by claim, what held.

    \b
    Examples:
      zoo study ablation
      zoo study ablation --claims se,activation --seeds 5
      zoo study ablation --claims baselines --baseline-multipliers 1,2,4,8
      zoo study ablation --ray-address 10.0.0.5:6379
    """
    from ..study.ablation import ablation_points

    points = ablation_points([c.strip() for c in claims.split(",") if c.strip()],
                             _floats(baseline_multipliers, "--baseline-multipliers"), grow_from)
    summary = _run("ablation", points, out, seeds, epochs, samples, workers, ray_address, as_json)
    if not as_json:
        for v in summary["verdicts"]:
            click.echo(f"{v['claim']}: {v['result']}")
