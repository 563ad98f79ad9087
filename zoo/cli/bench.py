"""``zoo bench`` and ``zoo report``."""

from __future__ import annotations

from pathlib import Path

import click

from .common import emit_json, progress, table


def _int_list(ctx, param, value):
    if value is None:
        return None
    try:
        items = tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got {value!r}") from None
    if not items or any(v < 1 for v in items):
        raise click.BadParameter(f"expected positive integers, got {value!r}")
    return tuple(dict.fromkeys(items))


def _precisions(ctx, param, value):
    if value is None:
        return None
    from ..spec import parse_precisions

    try:
        return parse_precisions(value, always_fp32=False)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None


def _providers(ctx, param, value):
    if value is None:
        return None
    from ..spec import resolve_provider

    try:
        return list(dict.fromkeys(resolve_provider(p) for p in value.split(",") if p.strip()))
    except ValueError as e:
        raise click.BadParameter(str(e)) from None


def _short(provider: str | None) -> str:
    return (provider or "-").replace("ExecutionProvider", "")


@click.command("bench")
@click.argument("names", nargs=-1)
@click.option("--all", "all_", is_flag=True, help="Every model in the manifest.")
@click.option("--artifacts", type=click.Path(file_okay=False, path_type=Path), default=Path("artifacts"),
              show_default=True, help="Artifacts folder (manifest.json at its root).")
@click.option("--precision", "precisions", callback=_precisions, default=None,
              help="Comma list of fp32, int8, fp16 [default: every precision each model was built with].")
@click.option("--providers", callback=_providers, default=None,
              help="Comma list: cpu, cuda, tensorrt [default: the CPU plus available GPU providers]. "
                   "One that is asked for and missing is an error, never replaced by the CPU.")
@click.option("--batch-sizes", callback=_int_list, default="1,32,256", show_default=True,
              help="Comma list of batch sizes.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="Intra-op threads for ONNX Runtime and PyTorch alike [default: physical cores].")
@click.option("--warmup", type=click.IntRange(min=0), default=5, show_default=True, help="Untimed runs first.")
@click.option("--runs", type=click.IntRange(min=1), default=200, show_default=True,
              help="At most this many timed runs per measurement ...")
@click.option("--time-budget", type=click.FloatRange(min=0, min_open=True), default=3.0, show_default=True,
              help="... and at most this many seconds of them (per side, provider, precision and batch).")
@click.option("--no-torch", is_flag=True, help="Skip the PyTorch eager measurement beside each one.")
@click.option("--roofline", is_flag=True,
              help="First measure this machine's fp32 GEMM peak and memory read bandwidth, then print the "
                   "fraction of the limit each artifact reaches.")
@click.option("--no-save", is_flag=True, help="Measure and print only; leave the manifest as it is.")
@click.option("--json", "as_json", is_flag=True, help="Print the records (and roofline) as JSON on stdout.")
def bench_cmd(names, all_, artifacts, precisions, providers, batch_sizes, threads, warmup, runs, time_budget,
              no_torch, roofline, no_save, as_json):
    """Measure latencies of built artifacts and record them in the manifest.

    Per model file, provider and batch size: session creation time, untimed warm-up runs, then
    timed runs until --runs or --time-budget is reached; p50/p90/p99/mean ms, throughput,
    GFLOP/s, and PyTorch eager on the same inputs and threads (ratio = ONNX Runtime / PyTorch).

    \b
    Examples:
      zoo bench --all
      zoo bench dense_b0 dense_b3 --precision fp32,int8 --batch-sizes 1,64
      zoo bench --all --roofline --threads 2 --json > bench.json
      zoo bench dense_b7 --providers cuda --precision fp16
    """
    from ..bench.latency import LatencyOptions
    from ..bench.roofline import measure_machine, roofline_row
    from ..builder.benchmarks import bench_artifacts

    if not names and not all_:
        raise click.UsageError("name at least one model, or give --all")
    if names and all_:
        raise click.UsageError("give NAME... or --all, not both")
    options = LatencyOptions(batch_sizes=batch_sizes, warmup_runs=warmup, max_runs=runs, time_budget_s=time_budget,
                             threads=threads, torch=not no_torch)
    machine = None
    if roofline:
        from ..builder import manifest as mf

        mf.load(artifacts / mf.MANIFEST_NAME)  # a missing manifest fails before the slow part
        progress("measuring this machine: fp32 GEMM peak and memory read bandwidth ...")
        machine = measure_machine(options.resolved_threads)
        progress(f"fp32 GEMM peak {machine.gemm['gflops']:.1f} GFLOP/s ({machine.gemm['library']}, "
                 f"n={machine.gemm['n']}), DRAM read {machine.dram_gbs:.1f} GB/s, {machine.threads} thread(s)")
    out = bench_artifacts(artifacts, None if all_ else list(names), precisions=precisions, providers=providers,
                          options=options, save=not no_save, progress=progress)
    rows = [dict(rec, model=name) for name, recs in out["results"].items() for rec in recs]
    roof = []
    if machine is not None:
        for r in rows:
            entry = out["entries"].get(r["model"])
            f = next(f for f in entry["files"] if f["role"] == "model" and f["precision"] == r["precision"])
            roof.append(roofline_row(r, flops=entry["flops"], weight_bytes=f["bytes"], machine=machine))
    if as_json:
        payload = {"manifest": out["manifest"], "saved": not no_save, "records": rows}
        if machine is not None:
            payload["roofline"] = {"machine": machine.to_dict(), "rows": roof}
        emit_json(payload)
        return
    click.echo(table([dict(r, provider=_short(r["provider"])) for r in rows],
                     [("model", "model"), ("precision", "precision"), ("provider", "provider"),
                      ("batch_size", "batch"), ("threads", "threads"), ("p50_ms", "p50 ms"), ("p90_ms", "p90 ms"),
                      ("p99_ms", "p99 ms"), ("runs", "runs"), ("throughput_sps", "samples/s"),
                      ("gflops_per_s", "GFLOP/s"), ("torch_p50_ms", "torch p50 ms"),
                      ("ratio_vs_torch", "ort/torch")]))
    if roof:
        click.echo("")
        click.echo(f"roofline: fp32 GEMM peak {machine.gemm['gflops']:.1f} GFLOP/s, DRAM read "
                   f"{machine.dram_gbs:.1f} GB/s; read bandwidth measured at each file's size")
        click.echo(table([dict(r, provider=_short(r["provider"]), pct_peak=100 * r["frac_gemm_peak"],
                               pct_bw=100 * r["frac_read_bw"], pct_roof=100 * r["frac_roofline"]) for r in roof],
                         [("model", "model"), ("precision", "precision"), ("provider", "provider"),
                          ("batch_size", "batch"), ("p50_ms", "p50 ms"), ("gflops_per_s", "GFLOP/s"),
                          ("pct_peak", "% GEMM peak"), ("weights_gb_per_s", "weights GB/s"),
                          ("read_bw_gb_per_s", "read GB/s"), ("pct_bw", "% read bw"), ("bound", "bound"),
                          ("pct_roof", "% of limit")]))
    if not no_save:
        click.echo(f"latencies recorded in {out['manifest']}")


@click.command("report")
@click.option("--artifacts", type=click.Path(file_okay=False, path_type=Path), default=Path("artifacts"),
              show_default=True, help="Artifacts folder (manifest.json at its root).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where report.md and latency.png go [default: the artifacts folder].")
@click.option("--no-chart", is_flag=True, help="Markdown only (the chart needs matplotlib: pip install 'zoo[report]').")
@click.option("--json", "as_json", is_flag=True, help="Print what was written, and the per-model summary, as JSON.")
def report_cmd(artifacts, out, no_chart, as_json):
    """Write a Markdown report and a PNG chart of latency against parameters from the manifest.

    Per model: params, MFLOPs, file MB per precision, p50 latency per provider and batch size,
    speed-up over PyTorch, int8 speed-up over fp32, and the worst parity error.

    \b
    Examples:
      zoo report
      zoo report --artifacts /tmp/zoo --out docs/
      zoo report --no-chart --json
    """
    from ..builder import manifest as mf
    from ..builder.report import model_rows, write_report

    manifest = mf.load(artifacts / mf.MANIFEST_NAME)
    written = write_report(manifest, out or artifacts, chart=not no_chart)
    if as_json:
        emit_json(dict(written, summary=model_rows(manifest)))
        return
    if written["chart_skipped"]:
        progress(written["chart_skipped"])
    click.echo(f"wrote {written['markdown']}" + (f" and {written['chart']}" if written["chart"] else "")
               + (f" and {written['accuracy_chart']}" if written.get("accuracy_chart") else ""))
