"""What every command shares: the error contract, output helpers and option decorators."""

from __future__ import annotations

import click

from ..errors import ZooError
from ..jsonio import dumps
from ..model.config import FLAVORS, variant_config
from ..model.scaling import VARIANTS, Variant, compound, get_variant
from ..study.plans import PAPER_COEFFICIENTS


class ZooGroup(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except ZooError as e:
            raise click.ClickException(str(e)) from None
        except ValueError as e:
            raise click.UsageError(str(e), ctx) from None


def emit_json(obj) -> None:
    click.echo(dumps(obj))


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
    for name, default in zip(("gamma", "beta", "alpha"), reversed(PAPER_COEFFICIENTS)):
        f = click.option(f"--{name}", type=float, default=None,
                         help=f"With --phi: the compound coefficient {name} (default {default}; zoo study grid finds one).")(f)
    f = click.option("--phi", type=float, default=None,
                     help="Compound-scaled custom variant: depth alpha**phi, width beta**phi, resolution 224*gamma**phi.")(f)
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


def compound_variant(phi: float | None, alpha: float | None, beta: float | None, gamma: float | None) -> Variant | None:
    """``--phi`` with its optional ``--alpha/--beta/--gamma`` (the table's coefficients by default)."""
    given = {k: v for k, v in (("alpha", alpha), ("beta", beta), ("gamma", gamma)) if v is not None}
    if phi is None:
        if given:
            raise click.UsageError(f"--{next(iter(given))} shapes a compound-scaled variant: give --phi with it")
        return None
    return compound(phi, **dict(zip(("alpha", "beta", "gamma"), PAPER_COEFFICIENTS)) | given)


def selected_variants(names, all_: bool, custom: Variant | None) -> list[Variant]:
    if custom is not None:
        if names or all_:
            raise click.UsageError("--phi builds one custom variant; give no NAME and no --all with it")
        return [custom]
    if all_ and names:
        raise click.UsageError("give NAME... or --all, not both")
    if all_:
        return list(VARIANTS.values())
    return [get_variant(n) for n in dict.fromkeys(names)]


