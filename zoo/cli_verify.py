"""``zoo verify``: re-verify built or downloaded artifacts against PyTorch, as a matrix."""

from __future__ import annotations

from pathlib import Path

import click

from . import manifest as mf
from .cli import emit_json, progress, table
from .errors import ZooError

JS_RUNTIMES = ("node", "web")
C_RUNTIMES = ("c", "cpp")  # the C and C++ examples (make -C examples/c, make -C examples/cpp)


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


def verify_models(artifacts: Path, names: list[str], *, providers=None, runtimes=None, batch_sizes=None,
                  record: bool = True, progress=lambda m: None) -> dict[str, list[dict]]:
    """Run the parity matrix on every listed model file; returns records per model (and records
    them in the manifest unless ``record`` is false)."""
    from verify.matrix import MatrixOptions, run_matrix

    from .artifact import ModelRequest
    from .fsutil import sha256_file

    manifest_path = artifacts / mf.MANIFEST_NAME
    manifest = mf.load(manifest_path)
    py_runtimes = None if runtimes is None else [r for r in runtimes if r not in JS_RUNTIMES + C_RUNTIMES]
    js_runtimes = [r for r in JS_RUNTIMES if runtimes is None or r in runtimes]
    c_runtimes = [r for r in C_RUNTIMES if runtimes is None or r in runtimes]
    options = MatrixOptions(**({"batch_sizes": batch_sizes} if batch_sizes else {}), providers=providers,
                            runtimes=py_runtimes)
    options.resolve_backends()  # unknown runtime names fail here, before any work
    results: dict[str, list[dict]] = {}
    for i, name in enumerate(names, 1):
        tag = f"[{i}/{len(names)}] {name}"
        entry = mf.entry(manifest, name)
        req = ModelRequest.from_entry(entry)
        model = req.create()
        params = sum(p.numel() for p in model.parameters() if p.requires_grad)
        if params != entry["params"]:
            raise ZooError(f"{name}: rebuilt PyTorch model has {params} parameters, the manifest says {entry['params']}")
        records = []
        for f in [f for f in entry["files"] if f["role"] == "model"]:
            path = artifacts / f["path"]
            if not path.is_file():
                raise ZooError(f"{name}: {path} is missing (pull it, or build it)")
            if sha256_file(path) != f["sha256"]:
                raise ZooError(f"{name}: {path} does not match the manifest's sha256; refusing to verify it")
            progress(f"{tag}: {f['precision']} ...")
            records += run_matrix(model, path.read_bytes(), input_dim=req.effective_input_dim, seed=req.seed,
                                  input_name=req.spec.input_name, output_name=req.spec.output_name,
                                  precision=f["precision"], options=options,
                                  progress=lambda m, tag=tag: progress(f"{tag}: {m}"))
        results[name] = records
    if js_runtimes:
        for name, recs in _js_records(artifacts, names, js_runtimes, explicit=runtimes is not None).items():
            results[name] += recs
    if c_runtimes:
        for name, recs in _c_records(artifacts, names, c_runtimes, explicit=runtimes is not None).items():
            results[name] += recs
    if record:
        for name, recs in results.items():
            manifest = mf.upsert(manifest, merge_parity(mf.entry(manifest, name), recs))
        mf.save(manifest_path, manifest)
    return results


def _js_records(artifacts: Path, names, js_runtimes, explicit: bool) -> dict[str, list[dict]]:
    try:
        from verify import js
    except ImportError:
        return {}
    wanted = [r for r in js_runtimes if explicit or js.js_available(r) is None]
    if not wanted:
        return {}
    return js.run_js(artifacts, names=names, runtimes=tuple(wanted))


def _c_records(artifacts: Path, names, c_runtimes, explicit: bool) -> dict[str, list[dict]]:
    """The C / C++ examples' records: those asked for by name always (unavailable records say how
    to build them), by default only those that are built."""
    from verify import c

    wanted = [r for r in c_runtimes if explicit or c.c_available(r) is None]
    if not wanted:
        return {}
    return c.run_c(artifacts, names=names, runtimes=tuple(wanted))


def merge_parity(entry: dict, records: list[dict]) -> dict:
    """New records replace old ones of the same backend, precision and reference; others stay."""
    key = lambda r: (r["backend"], r["precision"], r.get("reference"))  # noqa: E731
    fresh = {key(r) for r in records}
    out = dict(entry)
    out["parity"] = [r for r in entry["parity"] if key(r) not in fresh] + records
    return out


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
