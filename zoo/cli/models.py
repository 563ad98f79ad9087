"""``zoo list`` and ``zoo show``: the scaling table (pure Python, no torch)."""

from __future__ import annotations

import click

from ..model.scaling import VARIANTS, get_variant
from .common import compound_variant, emit_json, json_option, shape_options, table, variant_row


@click.command("list")
@shape_options
@json_option
def list_cmd(flavor, num_classes, input_dim, phi, alpha, beta, gamma, as_json):
    """List the variants with their shape, parameters and FLOPs.

    \b
    Examples:
      zoo list
      zoo list --flavor edifice --num-classes 100
      zoo list --phi 1.5 --json
      zoo list --phi 2 --alpha 1.4 --beta 1.1 --gamma 1.1
    """
    custom = compound_variant(phi, alpha, beta, gamma)
    variants = [custom] if custom is not None else list(VARIANTS.values())
    rows = [variant_row(v, flavor, num_classes, input_dim) for v in variants]
    if as_json:
        emit_json(rows)
        return
    for r in rows:
        r["mflops"] = r["flops"] / 1e6
    click.echo(table(rows, [("name", "name"), ("width", "width"), ("depth", "depth"), ("resolution", "resolution"),
                            ("input_dim", "input_dim"), ("dropout", "dropout"), ("blocks", "blocks"),
                            ("params", "params"), ("mflops", "MFLOPs/sample")]))


@click.command("show")
@click.argument("name", required=False)
@shape_options
@json_option
def show_cmd(name, flavor, num_classes, input_dim, phi, alpha, beta, gamma, as_json):
    """Show one variant's stages.

    \b
    Examples:
      zoo show dense_b3
      zoo show dense_b0 --flavor edifice
      zoo show --phi 2
      zoo show --phi 1 --alpha 1.4 --beta 1.1 --gamma 1.1
    """
    if (name is None) == (phi is None):
        raise click.UsageError("give a variant NAME or --phi (one of them)")
    custom = compound_variant(phi, alpha, beta, gamma)
    v = custom if custom is not None else get_variant(name)
    row = variant_row(v, flavor, num_classes, input_dim)
    if as_json:
        emit_json(row)
        return
    click.echo(f"{row['name']} ({flavor}): width {v.width:g}, depth {v.depth:g}, resolution {v.resolution}, "
               f"dropout {v.dropout:g}")
    if v.flops_factor is not None:
        click.echo(f"compound scaling phi={v.phi:g}: FLOPs factor {v.flops_factor:.3f} over B0")
    click.echo(f"input  {row['input_dim']}\nstem   {row['stem_dim']}")
    stages = [dict(stage=i, **s) for i, s in enumerate(row["stages"], 1)]
    click.echo(table(stages, [("stage", "stage"), ("expand_ratio", "expand"), ("dim", "dim"), ("repeats", "repeats")]))
    click.echo(f"head   {row['head_dim']}\noutput {num_classes}\n"
               f"blocks {row['blocks']}, params {row['params']:,}, {row['flops'] / 1e6:.2f} MFLOPs/sample")


