"""The ``zoo`` command line: thin commands over the library, one clear line per error.

Domain failures (``ZooError``) exit 1; bad input (``ValueError`` from the API, Click's own checks)
exits 2. Long work prints progress on stderr; ``--json`` puts machine-readable output on stdout.
"""

from __future__ import annotations

import json
import sys

import click

from . import __version__
from .errors import ZooError
from .model import FLAVORS, variant_config
from .scaling import VARIANTS, Variant, compound, get_variant


class ZooGroup(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except ZooError as e:
            raise click.ClickException(str(e)) from None
        except ValueError as e:
            raise click.UsageError(str(e), ctx) from None


def emit_json(obj) -> None:
    click.echo(json.dumps(obj, indent=2))


def progress(msg: str) -> None:
    click.echo(msg, err=True)


def table(rows: list[dict], columns: list[tuple[str, str]]) -> str:
    """A plain aligned text table; numbers right-aligned."""
    cells = [[h for _, h in columns]] + [[_fmt(r.get(k)) for k, _ in columns] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    numeric = [all(isinstance(r.get(k), (int, float)) for r in rows if r.get(k) is not None) for k, _ in columns]
    lines = []
    for j, row in enumerate(cells):
        parts = [c.rjust(w) if numeric[i] and j else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))]
        lines.append("  ".join(parts).rstrip())
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1e-2 and v else f"{v:,.2f}".rstrip("0").rstrip(".") if v != int(v) else f"{v:g}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


# Options shared by list, show and build: they shape the network.
def shape_options(f):
    f = click.option("--phi", type=float, default=None,
                     help="Compound-scaled custom variant: depth 1.2**phi, width 1.1**phi, resolution 224*1.15**phi.")(f)
    f = click.option("--input-dim", type=int, default=None, help="Pin the input width (default: from the resolution).")(f)
    f = click.option("--num-classes", type=int, default=10, show_default=True, help="Classifier outputs.")(f)
    f = click.option("--flavor", type=click.Choice(FLAVORS), default="paper", show_default=True,
                     help="paper: the paper's MBConv, dense; edifice: the Axon library's network.")(f)
    return f


def variant_row(v: Variant, flavor: str, num_classes: int, input_dim: int | None) -> dict:
    cfg = variant_config(v, num_classes, flavor, input_dim)
    return {
        "name": v.name,
        "width": v.width,
        "depth": v.depth,
        "resolution": v.resolution,
        "input_dim": cfg.input_dim,
        "dropout": v.dropout,
        "stem_dim": cfg.stem_dim,
        "head_dim": cfg.head_dim,
        "stages": [{"expand_ratio": s.expand_ratio, "dim": s.dim, "repeats": s.repeats} for s in cfg.stages],
        "blocks": len(cfg.blocks),
        "params": cfg.params(),
        "flops": cfg.flops(),
        "flavor": flavor,
        "num_classes": num_classes,
        "phi": v.phi,
        "flops_factor": v.flops_factor,
    }


def selected_variants(names, all_: bool, phi: float | None) -> list[Variant]:
    if phi is not None:
        if names or all_:
            raise click.UsageError("--phi builds one custom variant; give no NAME and no --all with it")
        return [compound(phi)]
    if all_ and names:
        raise click.UsageError("give NAME... or --all, not both")
    if all_:
        return list(VARIANTS.values())
    return [get_variant(n) for n in dict.fromkeys(names)]


@click.group(cls=ZooGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="zoo")
def cli():
    """Build, verify and pull the dense EfficientNet model zoo as reproducible ONNX artifacts.

    \b
    Examples:
      zoo list                      # the B0-B7 scaling table
      zoo build --all               # export, verify and write artifacts/manifest.json
      zoo info artifacts/dense_b0/model.onnx
    """


@cli.command("list")
@shape_options
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array instead of a table.")
def list_cmd(flavor, num_classes, input_dim, phi, as_json):
    """List the variants with their shape, parameters and FLOPs.

    \b
    Examples:
      zoo list
      zoo list --flavor edifice --num-classes 100
      zoo list --phi 1.5 --json
    """
    variants = [compound(phi)] if phi is not None else list(VARIANTS.values())
    rows = [variant_row(v, flavor, num_classes, input_dim) for v in variants]
    if as_json:
        emit_json(rows)
        return
    for r in rows:
        r["mflops"] = r["flops"] / 1e6
    click.echo(table(rows, [("name", "name"), ("width", "width"), ("depth", "depth"), ("resolution", "resolution"),
                            ("input_dim", "input_dim"), ("dropout", "dropout"), ("blocks", "blocks"),
                            ("params", "params"), ("mflops", "MFLOPs/sample")]))


@cli.command("show")
@click.argument("name", required=False)
@shape_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def show_cmd(name, flavor, num_classes, input_dim, phi, as_json):
    """Show one variant's stages.

    \b
    Examples:
      zoo show dense_b3
      zoo show dense_b0 --flavor edifice
      zoo show --phi 2
    """
    if (name is None) == (phi is None):
        raise click.UsageError("give a variant NAME or --phi (one of them)")
    v = compound(phi) if phi is not None else get_variant(name)
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


def register_commands() -> None:
    """Commands live in their own modules; they import the helpers above, so they come last."""
    from .cli_bench import bench_cmd, report_cmd
    from .cli_build import build_cmd, info_cmd
    from .cli_hub import COMMANDS as hub_commands
    from .cli_verify import verify_cmd

    for command in (build_cmd, verify_cmd, bench_cmd, report_cmd, info_cmd, *hub_commands):
        cli.add_command(command)


register_commands()


def main() -> None:  # console-script entry point
    cli(prog_name="zoo")


if __name__ == "__main__":
    sys.exit(main())
