"""``zoo data``: the reference task's dataset as a file."""

from __future__ import annotations

from pathlib import Path

import click

from .common import emit_json, progress


@click.group("data")
def data_cmd():
    """Generate evaluation / training sets (offline, deterministic).

    \b
    Examples:
      zoo data mnist1d --input-dim 256 --out mnist1d_256.npz
      zoo data mnist1d --input-dim 688 --samples 4000 --seed 7 --out small_688.npz
    """


@data_cmd.command("mnist1d")
@click.option("--input-dim", type=click.IntRange(min=8), required=True,
              help="Features per sample (a variant's input_dim: 256 for dense_b0 ... 688 for dense_b7).")
@click.option("--samples", type=click.IntRange(min=100), default=None,
              help="Train + test samples (80/20 split)  [default: 40000; the original set has 4000]")
@click.option("--seed", type=click.IntRange(min=0), default=None, help="Generator seed  [default: 42, the package's]")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="The .npz file to write.")
@click.option("--json", "as_json", is_flag=True, help="Print the parameters and sha256 as JSON.")
def mnist1d_cmd(input_dim, samples, seed, out, as_json):
    """MNIST-1D (the mnist1d package, generated offline) at INPUT_DIM features: arrays x, y, x_test,
    y_test in a .npz whose bytes depend only on the parameters; prints its sha256.

    \b
    Examples:
      zoo data mnist1d --input-dim 256 --out mnist1d_256.npz
      zoo data mnist1d --input-dim 344 --samples 8000 --out b3_small.npz --json
    """
    from ..model import data as ds

    params = ds.DatasetParams(input_dim, ds.DEFAULT_SAMPLES if samples is None else samples,
                              ds.DEFAULT_SEED if seed is None else seed)
    progress(f"generating {params.samples} MNIST-1D samples at {input_dim} features (seed {params.seed}) ...")
    arrays = ds.generate(params)
    sha = ds.write_npz(arrays, out)
    if as_json:
        emit_json(params.to_dict() | {"path": str(out), "sha256": sha, "train": len(arrays["y"]),
                                      "test": len(arrays["y_test"])})
    else:
        click.echo(f"{sha}  {out}")
