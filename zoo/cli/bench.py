"""``zoo bench`` and ``zoo report``."""

from __future__ import annotations

from pathlib import Path

import click

from .common import (artifacts_option, batch_sizes_option, emit_json, json_option, min_agreement_option, names_or_all,
                     no_record_option, precision_option, progress, providers_option, quant_budget_option, table)


def _short(provider: str | None) -> str:
    return (provider or "-").replace("ExecutionProvider", "")


@click.command("bench")
@click.argument("names", nargs=-1)
@click.option("--all", "all_", is_flag=True, help="Every model in the manifest.")
@artifacts_option
@precision_option(None, help="Comma list of fp32, int8, fp16 [default: every precision each model was built with].")
@providers_option
@batch_sizes_option("1,32,256")
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
@no_record_option
@json_option
@click.option("--peers", is_flag=True,
              help="Every way to run each model, in one interleaved run: ONNX Runtime on each file (and on an "
                   "int4 weight-only file made here), PyTorch eager, torch.compile, OpenVINO f32 and default "
                   "precision, tract (x faster than ONNX Runtime fp32).")
@click.option("--recommend", is_flag=True,
              help="--peers plus static int8 and accuracy on the reference task; writes the fastest passing "
                   "(runtime, file, settings) per batch size into the manifest as `recommended`, and the "
                   "static int8 and int4 files beside the model (each from the accuracy-driven quantisation "
                   "search, or the build's searched file).")
@click.option("--data", "data_file", type=click.Path(dir_okay=False), default=None,
              help="A .npz from `zoo data` (x, y, x_test, y_test): the training split calibrates static int8, "
                   "the test split checks accuracy [default: the build's regenerable data set].")
@min_agreement_option
@quant_budget_option
def bench_cmd(names, all_, artifacts, precisions, providers, batch_sizes, threads, warmup, runs, time_budget,
              no_torch, roofline, no_record, as_json, peers, recommend, data_file, min_agreement, quant_budget):
    """Measure latencies of built artifacts and record them in the manifest.

    Per model file, provider and batch size: session creation time, untimed warm-up runs, then
    timed runs until --runs or --time-budget is reached; p50/p90/p99/mean ms, throughput,
    GFLOP/s, and PyTorch eager on the same inputs and threads (x faster than PyTorch = PyTorch p50 / ONNX Runtime p50; above 1 is faster).

    \b
    Examples:
      zoo bench --all
      zoo bench dense_b0 dense_b3 --precision fp32,int8 --batch-sizes 1,64
      zoo bench --all --roofline --threads 2 --json > bench.json
      zoo bench dense_b7 --providers cuda --precision fp16
      zoo bench dense_b5 dense_b7 --peers --batch-sizes 1,256 --threads 2
      zoo bench dense_b7 --recommend --data mnist1d_688.npz --json > peers.json
      zoo bench dense_b5 dense_b7 --recommend --min-agreement 0.97 --quant-budget 900 --batch-sizes 1,256
    """
    if peers or recommend:
        return _peers(names, all_, artifacts, batch_sizes, threads, runs, time_budget, no_torch, roofline,
                      recommend and not no_record, recommend, data_file, as_json, min_agreement, quant_budget)
    from ..bench.latency import LatencyOptions
    from ..bench.roofline import measure_machine, roofline_row
    from ..builder.benchmarks import bench_artifacts

    names_or_all(names, all_)
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
                          options=options, save=not no_record, progress=progress)
    rows = [dict(rec, model=name) for name, recs in out["results"].items() for rec in recs]
    roof = []
    if machine is not None:
        for r in rows:
            entry = out["entries"].get(r["model"])
            f = next(f for f in entry["files"] if f["role"] == "model" and f["precision"] == r["precision"])
            roof.append(roofline_row(r, flops=entry["flops"], weight_bytes=f["bytes"], machine=machine))
    if as_json:
        payload = {"manifest": out["manifest"], "recorded": not no_record, "records": rows}
        if machine is not None:
            payload["roofline"] = {"machine": machine.to_dict(), "rows": roof}
        emit_json(payload)
        return
    click.echo(table([dict(r, provider=_short(r["provider"])) for r in rows],
                     [("model", "model"), ("precision", "precision"), ("provider", "provider"),
                      ("batch_size", "batch"), ("threads", "threads"), ("p50_ms", "p50 ms"), ("p90_ms", "p90 ms"),
                      ("p99_ms", "p99 ms"), ("runs", "runs"), ("throughput_sps", "samples/s"),
                      ("gflops_per_s", "GFLOP/s"), ("torch_p50_ms", "torch p50 ms"),
                      ("speedup_vs_torch", "x faster than torch")]))
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
    if not no_record:
        click.echo(f"latencies recorded in {out['manifest']}")


def _peers(names, all_, artifacts, batch_sizes, threads, runs, time_budget, no_torch, roofline, save, recommend,
           data_file, as_json, min_agreement, quant_budget):
    from ..bench.latency import default_threads, faster_than
    from ..builder import manifest as mf
    from ..builder.recommend import bench_peers

    manifest = mf.load(artifacts / mf.MANIFEST_NAME)  # a missing manifest fails before the slow part
    if all_:
        names = [m["model"] for m in manifest["models"]]
    if not names:
        raise click.UsageError("name at least one model, or give --all")
    threads = threads or default_threads()
    roof = None
    if roofline:
        from ..bench.roofline import measure_roofline

        progress("measuring this machine: fp32 and bf16 GEMM peaks, memory read bandwidth ...")
        roof = measure_roofline(threads)
        progress(f"fp32 GEMM peak {roof.fp32_gflops:.1f} GFLOP/s, bf16 "
                 + (f"{roof.bf16_gflops:.1f} GFLOP/s" if roof.bf16_gflops else "not native here"))
    out = bench_peers(artifacts, list(names), data_file=data_file, batch_sizes=batch_sizes, threads=threads,
                      time_budget_s=time_budget, max_rounds=runs, roofline=roof, recommend_=recommend,
                      save=save, torch=not no_torch, min_agreement=min_agreement, quant_budget=quant_budget,
                      progress=progress)
    rows = [r for res in out["results"].values() for r in res["records"]]
    recs = {n: res["recommended"] for n, res in out["results"].items() if res["recommended"] is not None}
    if as_json:
        emit_json({"manifest": out["manifest"], "saved": save, "records": rows, "recommended": recs,
                   **({"roofline": {"fp32_gflops": roof.fp32_gflops, "bf16_gflops": roof.bf16_gflops}} if roof else {})})
        return
    click.echo(table([dict(r, top1=(r.get("accuracy") or {}).get("top1"), acc=(r.get("accuracy") or {}).get("verdict"),
                           agreement=(r.get("accuracy") or {}).get("agreement"),
                           pct_roof=100 * r["frac_roofline"] if "frac_roofline" in r else None) for r in rows],
                     [("model", "model"), ("batch_size", "batch"), ("backend", "contender"), ("precision", "precision"),
                      ("p50_ms", "p50 ms"), ("speedup_vs_ort_fp32", "x faster than ORT fp32"), ("compile_s", "compile s"),
                      ("pct_roof", "% of limit"), ("top1", "top-1"), ("agreement", "agreement"), ("acc", "accuracy"), ("reason", "unavailable")]))
    for name, by_batch in recs.items():
        for r in by_batch:
            click.echo(f"recommended {name} batch {r['batch_size']}: {r['backend']} {r['precision']} "
                       f"({r['file'] or 'PyTorch'}) p50 {r['p50_ms']:.3f} ms, {faster_than(r['speedup_vs_ort_fp32'], 'ORT fp32')}, "
                       f"top-1 {r['top1']:.2%}, agreement with PyTorch {r['agreement']:.2%}")
    if save:
        click.echo(f"recommendations recorded in {out['manifest']}")


@click.command("report")
@artifacts_option
@click.option("--to", "to", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder report.md and latency.png go to [default: the artifacts folder].")
@click.option("--no-chart", is_flag=True, help="Markdown only (the chart needs matplotlib: the report extra).")
@json_option
def report_cmd(artifacts, to, no_chart, as_json):
    """Write a Markdown report and a PNG chart of latency against parameters from the manifest.

    Per model: params, MFLOPs, file MB per precision, p50 latency per provider and batch size,
    speed-up over PyTorch, int8 speed-up over fp32, and the worst parity error.

    \b
    Examples:
      zoo report
      zoo report --artifacts /tmp/zoo --to docs/
      zoo report --no-chart --json
    """
    from ..builder import manifest as mf
    from ..builder.report import model_rows, write_report

    manifest = mf.load(artifacts / mf.MANIFEST_NAME)
    written = write_report(manifest, to or artifacts, chart=not no_chart)
    if as_json:
        emit_json(dict(written, summary=model_rows(manifest)))
        return
    if written["chart_skipped"]:
        progress(written["chart_skipped"])
    click.echo(f"wrote {written['markdown']}" + (f" and {written['chart']}" if written["chart"] else "")
               + (f" and {written['accuracy_chart']}" if written.get("accuracy_chart") else ""))
