"""The accuracy part of ``zoo report``: top-1 per model and precision, a table and a chart of top-1
against FLOPs and against latency (one line per precision)."""

from __future__ import annotations

from pathlib import Path

from ..verify.records import ran_in
from .charts import save_png

PRECISIONS = ("fp32", "int8", "fp16", "bf16")  # bf16: fp32 files that OpenVINO's default ran in bf16
CHART_NAME = "accuracy.png"
ORT_CPU = "onnxruntime:CPUExecutionProvider:all"


def top1(entry: dict) -> dict[str, float]:
    """``{"torch": t, "fp32": ..., "int8": ..., "fp16": ..., "bf16": ...}`` on the whole test split, by
    the precision the numbers were computed in (:func:`zoo.verify.records.ran_in`): ONNX Runtime
    CPU's records where present, else the record over the most samples."""
    out: dict[str, float] = {}
    best: dict[str, dict] = {}
    for r in entry.get("accuracy", []):
        if r.get("top1") is None:
            continue
        key = "torch" if r["backend"] == "torch" else ran_in(r)
        cur = best.get(key)
        if cur is None or (r["backend"] == ORT_CPU) or (cur["backend"] != ORT_CPU and r["samples"] > cur["samples"]):
            best[key] = r
    for k, r in best.items():
        out[k] = r["top1"]
    return out


def lowest_agreement(entry: dict) -> dict[str, float]:
    """``{precision: lowest agreement with PyTorch's classes over every backend computing in it}``."""
    out: dict[str, float] = {}
    for r in entry.get("accuracy", []):
        if r["backend"] != "torch" and r.get("agreement") is not None:
            out[ran_in(r)] = min(out.get(ran_in(r), 1.0), r["agreement"])
    return out


def markdown_section(manifest: dict) -> list[str]:
    models = [m for m in manifest["models"] if m.get("accuracy")]
    if not models:
        return []
    shown = [p for p in PRECISIONS if p != "bf16" or any("bf16" in top1(m) for m in models)]
    lines = ["", "## Accuracy (top-1 on the test split)", "",
             ("PyTorch, and each precision on ONNX Runtime CPU; `agreement` is the lowest share of samples, over "
              "every backend computing in that precision, classified as PyTorch classifies them (the gate's "
              "floor is 95 % unless the build said otherwise). bf16: fp32 files that OpenVINO's default ran in "
              "bf16."), "",
             "| model | dataset | samples | PyTorch | " + " | ".join(f"{p} (agreement)" for p in shown) + " |",
             "| --- | --- | ---: | ---: | " + " | ".join("---:" for _ in shown) + " |"]
    for m in models:
        t = top1(m)
        recs = m["accuracy"]
        agree = lowest_agreement(m)
        cells = []
        for p in shown:
            cells.append("–" if p not in t else f"{t[p]:.2%}" + (f" ({agree[p]:.2%})" if p in agree else ""))
        torch_rec = next((r for r in recs if r["backend"] == "torch"), recs[0])
        lines.append(f"| {m['model']} | {torch_rec['dataset']} | {torch_rec['samples']:,} | "
                     f"{t.get('torch', float('nan')):.2%} | " + " | ".join(cells) + " |")
    return lines


def chart_points(manifest: dict, latency_of) -> dict[str, list[tuple[float, float, float | None]]]:
    """``{precision: [(MFLOPs, top1, p50 ms at batch 1 or None), ...]}`` sorted by FLOPs.
    ``latency_of(entry, precision)`` gives the p50 latency to plot (or None)."""
    out: dict[str, list] = {}
    for m in manifest["models"]:
        for p, v in top1(m).items():
            if p == "torch":
                continue
            out.setdefault(p, []).append((m["flops"] / 1e6, v, latency_of(m, p)))
    for pts in out.values():
        pts.sort()
    return out


def write_chart(manifest: dict, path: str | Path, latency_of) -> Path | None:
    """Two panels: top-1 against MFLOPs and against p50 latency; None when nothing to chart."""
    points = chart_points(manifest, latency_of)
    if not points:
        return None
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    colors = {"fp32": "tab:blue", "int8": "tab:orange", "fp16": "tab:green", "bf16": "tab:purple"}
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    for p in PRECISIONS:
        pts = points.get(p)
        if not pts:
            continue
        axes[0].plot([a for a, _, _ in pts], [100 * b for _, b, _ in pts], "o-", color=colors[p], label=p)
        lat = [(c, b) for _, b, c in pts if c is not None]
        if lat:
            axes[1].plot([c for c, _ in lat], [100 * b for _, b in lat], "o-", color=colors[p], label=p)
    axes[0].set_xlabel("MFLOPs per sample")
    axes[1].set_xlabel("p50 latency, batch 1, CPU (ms)")
    for ax in axes:
        ax.set_ylabel("test top-1 (%)")
        ax.grid(True, which="both", alpha=0.3)
        if ax.lines:
            ax.set_xscale("log")
            ax.legend(fontsize=8)
        else:  # a build with --no-bench has no latencies
            ax.text(0.5, 0.5, "no latency records (zoo bench)", ha="center", va="center", transform=ax.transAxes)
    fig.suptitle("Dense EfficientNet zoo: accuracy against FLOPs and latency")
    fig.tight_layout()
    return save_png(fig, path)
