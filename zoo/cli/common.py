"""What every command shares: the error contract, output helpers and option decorators.

The contract (README, "CLI contract"): success exits 0; a failed job (``ZooError``) exits 1; bad
input (Click's usage errors and the zoo's own ``InputError``) exits 2; something explicitly asked
for and not available here (``ProviderUnavailableError``, a missing optional package) exits 3; an
unexpected exception is a bug and exits 4; Ctrl-C (SIGINT) exits 130 with the line
``Error: zoo COMMAND: interrupted``. Every failure is exactly one line on stderr,
``Error: zoo COMMAND: message``; never a traceback, never the usage block.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import click

from ..errors import EXIT_FAILED, EXIT_INPUT, EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_UNAVAILABLE, InputError, ZooError
from ..jsonio import dumps
from ..model.config import FLAVORS, variant_config
from ..model.scaling import PAPER_COEFFICIENTS, VARIANTS, Variant, compound, get_variant
from ..versions import install_hint
from ..spec import PRECISIONS, RUNTIMES, parse_precisions, parse_runtimes, resolve_provider
from ..units import human_bytes

_COMMAND = "zoo.command"  # ctx.meta key: the full path of the command being run ("zoo cache clear")
# Where a missing package comes from: the builder's toolchain, or ONNX Runtime (cpu or gpu, never both).
INSTALL_HINTS = {**dict.fromkeys(("torch", "onnxscript", "onnx_ir", "safetensors", "mnist1d"), install_hint("build")),
                 **dict.fromkeys(("oras", "huggingface_hub", "tritonclient"), install_hint("publish")),
                 **dict.fromkeys(("model_signing", "cryptography", "securesystemslib"), install_hint("sign")),
                 "onnxruntime": install_hint("cpu") + ", or the gpu extra for onnxruntime-gpu"}


class CliError(click.ClickException):
    """One line, ``Error: ...``, and an exit status (Click's UsageError would print the usage too)."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(one_line(message))
        self.exit_code = exit_code


def one_line(text: str) -> str:
    return "; ".join(line.strip() for line in str(text).splitlines() if line.strip()) or "(no message)"


def cli_error(e: BaseException, where: str) -> CliError:
    """The exit status and line of an exception raised by a command (see the module docstring)."""
    if isinstance(e, InputError):  # before ZooError: some errors are both (a missing manifest)
        return CliError(f"{where}: {e}", EXIT_INPUT)
    if isinstance(e, ZooError):
        return CliError(f"{where}: {e}", e.exit_code)
    if isinstance(e, ImportError):
        missing = (e.name or "").split(".")[0]
        hint = INSTALL_HINTS.get(missing, "install it")
        return CliError(f"{where}: needs the Python package {missing or e}, which is not installed ({hint})",
                        EXIT_UNAVAILABLE)
    if isinstance(e, OSError):
        what = f"{e.strerror or e}" + (f": {e.filename}" if e.filename else "")
        return CliError(f"{where}: {what}", EXIT_FAILED)
    return CliError(f"{where}: internal error: {type(e).__name__}: {e}", EXIT_INTERNAL)


class ZooGroup(click.Group):
    """The root group: maps every exception to the contract's one line and exit status."""

    def resolve_command(self, ctx, args):
        name, cmd, rest = super().resolve_command(ctx, args)
        if cmd is not None:
            ctx.meta[_COMMAND] = f"{ctx.command_path} {cmd.name}"
        return name, cmd, rest

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except KeyboardInterrupt:  # Ctrl-C: one line, exit 130 (Click would print a blank line and "Aborted")
            raise CliError(f"{ctx.meta.get(_COMMAND, ctx.command_path)}: interrupted", EXIT_INTERRUPTED) from None
        except Exception as e:
            raise cli_error(e, ctx.meta.get(_COMMAND, ctx.command_path)) from None

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:  # a caller that handles exceptions itself
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.exceptions.NoArgsIsHelpError as e:  # bare `zoo`: the help, as Click prints it
            e.show()
            sys.exit(e.exit_code)
        except click.UsageError as e:  # usage errors name the (sub)command they belong to
            where = e.ctx.command_path if e.ctx is not None else (prog_name or self.name)
            _fail(f"{where}: {e.format_message()}", EXIT_INPUT)
        except click.ClickException as e:
            _fail(e.format_message(), e.exit_code)
        except click.Abort:
            _fail("aborted", EXIT_FAILED)
        sys.exit(rv if isinstance(rv, int) else 0)


def _fail(message: str, code: int) -> None:
    if code == EXIT_INTERRUPTED:
        from .. import interrupt

        interrupt.saying()  # a second Ctrl-C must not cut the line; the watchdog then only exits
    click.echo(f"Error: {one_line(message)}", err=True)
    sys.exit(code)


def emit_json(obj) -> None:
    click.echo(dumps(obj))


def progress(msg: str) -> None:
    click.echo(msg, err=True)


class Right(str):
    """A table cell printed right-aligned, as numbers are: a size such as ``1.21 MB``."""


def size_cell(n: int | None) -> Right | None:
    """A size for a table column, in the unit that keeps it readable (never ``0.0000 MB``)."""
    return None if n is None else Right(human_bytes(n))


def table(rows: list[dict], columns: list[tuple[str, str]]) -> str:
    """A plain aligned text table; numbers (and :class:`Right` cells) right-aligned, and every float of
    a column printed with the same number of decimals (``159.00`` above ``249.69``, never ``159``)."""
    places = {k: _decimals([r.get(k) for r in rows]) for k, _ in columns}
    cells = [[h for _, h in columns]] + [[_fmt(r.get(k), places[k]) for k, _ in columns] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    numeric = [all(isinstance(r.get(k), (int, float, Right)) for r in rows if r.get(k) is not None) for k, _ in columns]
    lines = []
    for j, row in enumerate(cells):
        parts = [c.rjust(w) if numeric[i] and j else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))]
        lines.append("  ".join(parts).rstrip())
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def fit_table(rows: list[dict], columns: list[tuple[str, str]], keys: int = 1, width: int | None = None) -> str:
    """:func:`table`, wrapped to ``width`` characters (default: the terminal's, else 100): the columns
    after the first ``keys`` are split into as many tables as needed, each repeating the key columns."""
    import shutil

    width = width or shutil.get_terminal_size((100, 24)).columns
    head, rest = columns[:keys], columns[keys:]
    parts: list[list[tuple[str, str]]] = []
    for col in rest:
        if parts and len(table(rows, head + parts[-1] + [col]).splitlines()[1]) <= width:
            parts[-1].append(col)
        else:
            parts.append([col])
    return "\n\n".join(table(rows, head + p) for p in parts) if parts else table(rows, head)


def _decimals(values: list) -> int | None:
    """Decimals for a column's floats: 2, or enough for 3 significant digits of its smallest non-zero
    magnitude (at most 6); None when the column has no floats."""
    floats = [abs(v) for v in values if isinstance(v, float) and v == v and abs(v) != float("inf")]
    if not floats:
        return None
    small = min((v for v in floats if v), default=1.0)
    return 2 if small >= 0.1 else min(6, 2 - int(math.floor(math.log10(small))))


def _fmt(v, places: int | None = 2) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.{2 if places is None else places}f}" if math.isfinite(v) else str(v)
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




def names_or_all(names, all_: bool, what: str = "model") -> None:
    """NAME... and --all exclude each other, and one of them is needed."""
    if all_ and names:
        raise click.UsageError("give NAME... or --all, not both")
    if not all_ and not names:
        raise click.UsageError(f"name at least one {what}, or give --all")


# Shared option decorators: one spelling, one parser and one help text per concept.
def _parsed(parse):
    """A Click callback: ``parse(value)``, with the zoo's InputError as Click's bad parameter (exit 2)."""

    def callback(ctx, param, value):
        if value is None:
            return None
        try:
            return parse(value)
        except InputError as e:
            raise click.BadParameter(str(e)) from None

    return callback


def _positive_ints(text: str) -> tuple[int, ...]:
    try:
        items = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise InputError(f"expected comma-separated integers, got {text!r}") from None
    if not items or any(v < 1 for v in items):
        raise InputError(f"expected positive integers, got {text!r}")
    return tuple(dict.fromkeys(items))


def _providers(text: str) -> tuple[str, ...]:
    items = [p for p in text.split(",") if p.strip()]
    if not items:
        raise InputError("give at least one provider (cpu, cuda, tensorrt)")
    return tuple(dict.fromkeys(resolve_provider(p) for p in items))


def artifacts_option(f=None, *, out_alias: bool = False, help: str = "Artifacts folder (manifest.json at its root)."):
    """``--artifacts DIR`` everywhere; ``zoo build`` also accepts its old spelling ``--out``."""
    names = ("--artifacts", "--out", "artifacts") if out_alias else ("--artifacts", "artifacts")
    deco = click.option(*names, type=click.Path(file_okay=False, path_type=Path), default=Path("artifacts"),
                        show_default=True, help=help + (" (--out is an alias.)" if out_alias else ""))
    return deco if f is None else deco(f)


def providers_option(f):
    return click.option("--providers", callback=_parsed(_providers), default=None, metavar="P,...",
                        help="Comma list of ONNX Runtime providers: cpu, cuda, tensorrt (or full names) [default: "
                             "the CPU plus every available GPU provider]. One asked for and missing exits 3.")(f)


def runtimes_option(f):
    return click.option("--runtimes", callback=_parsed(parse_runtimes), default=None, metavar="R,...",
                        help=f"Comma list of independent runtimes: {', '.join(RUNTIMES)} [default: every installed "
                             "one]. One asked for and missing exits 3.")(f)


def batch_sizes_option(default: str | None = None, help: str = "Comma list of batch sizes."):
    return click.option("--batch-sizes", callback=_parsed(_positive_ints), default=default, metavar="N,...",
                        show_default=default is not None, help=help)


def precision_option(default: str | None = "fp32", always_fp32: bool = False, help: str | None = None,
                     valid: tuple[str, ...] = PRECISIONS):
    """``--precision`` is a comma list of fp32, int8, fp16 in every command that has it (``zoo pull``
    also takes the precisions zoo bench --recommend adds)."""
    return click.option("--precision", "precisions",
                        callback=_parsed(lambda t: parse_precisions(t, always_fp32, valid)),
                        default=default, show_default=default is not None, metavar="P,...",
                        help=help or f"Comma list of {', '.join(valid)}.")


def json_option(f):
    return click.option("--json", "as_json", is_flag=True,
                        help="Print JSON on stdout (shapes: README, CLI contract).")(f)


def min_agreement_option(f):
    """``--min-agreement``: the accuracy gate's floor on agreement with PyTorch's (fp32) classes."""
    from ..verify.accuracy import MIN_AGREEMENT

    return click.option("--min-agreement", type=click.FloatRange(0.0, 1.0), default=MIN_AGREEMENT, show_default=True,
                        metavar="FRACTION",
                        help="Accuracy gate: every file, in every runtime, must give PyTorch's class for at least "
                             "this share of the test samples (besides the top-1 rule).")(f)


def quant_budget_option(f):
    """``--quant-budget``: seconds the accuracy-driven quantisation search may spend per model and precision."""
    from ..spec import QUANT_BUDGET_S as DEFAULT_BUDGET_S

    return click.option("--quant-budget", type=click.FloatRange(min=0, min_open=True), default=DEFAULT_BUDGET_S,
                        show_default=True, metavar="SECONDS",
                        help="Seconds the accuracy-driven quantisation search may spend per model and precision "
                             "(int8, int8_static, int4 with a training split): it tries recipes cheapest first, then "
                             "falls the most sensitive layers back to fp32; the fixed recipe is always tried, and a "
                             "search cut short says so.")(f)


def no_record_option(f):
    return click.option("--no-record", is_flag=True, help="Leave the manifest as it is (print only).")(f)
