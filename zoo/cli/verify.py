"""``zoo verify``: re-verify built or downloaded artifacts against PyTorch, as a matrix."""

from __future__ import annotations

from pathlib import Path

import click

from ..builder import manifest as mf
from .common import emit_json, progress, table
from ..builder.verification import verify_models
from ..errors import ZooError

def _csv(value: str | None) -> list[str] | None:
    if value is None:
        return None
    items = [v.strip() for v in value.split(",") if v.strip()]
    if not items:
        raise click.BadParameter("give at least one value")
    return items


def _batch_sizes(ctx, param, value):
    if value is None:
        return None
    try:
        sizes = tuple(int(v) for v in _csv(value))
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got {value!r}") from None
    if any(b < 1 for b in sizes):
        raise click.BadParameter("batch sizes must be >= 1")
    return sizes


def matrix_rows(results: dict[str, list[dict]]) -> tuple[list[dict], list[tuple[str, str]]]:
    """Model x backend: worst max-abs error and verdict per cell."""
    columns: list[str] = []
    rows = []
    for name, recs in results.items():
        row = {"model": name}
        for r in recs:
            col = f"{r['precision']} {r['backend']}" + (" (cuda ref)" if r.get("reference") == "torch-cuda" else "")
            if col not in columns:
                columns.append(col)
            err = r.get("max_abs_error")
            row[col] = r["verdict"] if err is None else f"{r['verdict']} {err:.1e}"
        rows.append(row)
    return rows, [("model", "model")] + [(c, c) for c in columns]


@click.command("verify")
@click.argument("names", nargs=-1)
@click.option("--all", "all_", is_flag=True, help="Every model in the manifest.")
@click.option("--artifacts", type=click.Path(file_okay=False, path_type=Path), default=Path("artifacts"),
              show_default=True, help="Folder holding manifest.json and the model folders (a build or a pull).")
@click.option("--providers", default=None,
              help="Comma list of ONNX Runtime providers (default: CPU plus every available GPU provider).")
@click.option("--runtimes", default=None,
              help="Comma list of independent runtimes: reference, openvino, openvino:default, tract, node, web, c, cpp "
                   "(default: all installed or built).")
@click.option("--batch-sizes", callback=_batch_sizes, default=None, help="Comma list (default 1,2,7,64).")
@click.option("--no-record", is_flag=True, help="Do not write the parity records into the manifest.")
@click.option("--json", "as_json", is_flag=True, help="Print the parity records as JSON.")
def verify_cmd(names, all_, artifacts, providers, runtimes, batch_sizes, no_record, as_json):
    """Re-verify artifacts against PyTorch: every backend, batch size and input distribution.

    The PyTorch model is rebuilt from the manifest entry and its seed. A provider asked for and not
    available is reported as unavailable, never replaced by the CPU. Exit 1 on any failure.

    \b
    Examples:
      zoo verify --all
      zoo verify dense_b0 --runtimes openvino,tract --batch-sizes 1,7
      zoo verify --all --runtimes c,cpp
      zoo verify dense_b0 --providers CUDAExecutionProvider --json
    """
    if all_ and names:
        raise click.UsageError("give NAME... or --all, not both")
    manifest = mf.load(artifacts / mf.MANIFEST_NAME)
    available = [m["model"] for m in manifest["models"]]
    if all_:
        names = available
    elif not names:
        raise click.UsageError("name at least one model, or give --all")
    for n in names:
        if n not in available:
            raise click.UsageError(f"unknown model {n!r}; the manifest has: {', '.join(available) or 'none'}")
    results = verify_models(artifacts, list(dict.fromkeys(names)), providers=_csv(providers), runtimes=_csv(runtimes),
                            batch_sizes=batch_sizes, record=not no_record, progress=progress)
    if as_json:
        emit_json(results)
    else:
        rows, cols = matrix_rows(results)
        click.echo(table(rows, cols))
    failed = [(n, r) for n, recs in results.items() for r in recs if r["verdict"] == "fail"]
    for n, r in results.items():
        for rec in r:
            if rec["verdict"] == "unavailable":
                progress(f"{n}: {rec['backend']} unavailable: {rec['reason']}")
    if failed:
        n, r = failed[0]
        raise ZooError(f"{len(failed)} parity check(s) failed; first: {n} {r['backend']}: {r['reason']}")
