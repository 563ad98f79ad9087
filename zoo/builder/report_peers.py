"""The peers part of ``zoo report``: per model and batch size, every contender's p50, speed-up over
ONNX Runtime fp32 (above 1 is faster), accuracy verdict, and the recommendation; and a chart of the speed-ups."""

from __future__ import annotations

from pathlib import Path

from .charts import save_png

PEERS_CHART_NAME = "peers.png"


def _f(v, fmt: str = "{:.3g}") -> str:
    return "–" if v is None else fmt.format(v)


def peers_lines(manifest: dict, chart: str | None = None) -> list[str]:
    models = [m for m in manifest["models"] if m.get("peers")]
    if not models:
        return []
    lines = ["", "## Peers and recommendation (zoo bench --recommend)", "",
             ("Ratio to ONNX Runtime fp32 on model.onnx, measured interleaved in one run (below 1 is faster); "
              "accuracy: top-1 on the reference task's test split and the gate's verdict."), ""]
    for m in models:
        rec = m.get("recommended") or {}
        lines += [f"### {m['model']}", "",
                  (f"{rec.get('machine', '?')}, {rec.get('threads', '?')} thread(s), load average "
                   f"{_f(rec.get('load_avg_1m'), '{:.1f}')} at the time."), "",
                  "| batch | contender | precision | p50 ms | x faster than ORT fp32 | % of limit | top-1 | agreement | accuracy |",
                  "|---:|---|---|---:|---:|---:|---:|---:|---|"]
        best = {(r["batch_size"], r["backend"]) for r in rec.get("by_batch") or []}
        for r in sorted(m["peers"], key=lambda r: (r["batch_size"], r.get("p50_ms") or float("inf"))):
            acc = r.get("accuracy") or {}
            star = " **(recommended)**" if (r["batch_size"], r["backend"]) in best else ""
            if r["verdict"] != "measured":
                lines.append(f"| {r['batch_size']} | {r['backend']} | {r['precision']} | – | – | – | – | – | "
                             f"unavailable: {r.get('reason')} |")
                continue
            roof = r.get("frac_roofline")
            lines.append(f"| {r['batch_size']} | {r['backend']}{star} | {r['precision']} | {_f(r['p50_ms'])} | "
                         f"{_f(r.get('speedup_vs_ort_fp32'), '{:.2f}x')} | {_f(roof * 100 if roof else None, '{:.0f}')} | "
                         f"{_f(acc.get('top1'), '{:.2%}')} | {_f(acc.get('agreement'), '{:.2%}')} | "
                         f"{acc.get('verdict') or '–'} |")
        lines.append("")
    if chart:
        lines += [f"![speed-up over ONNX Runtime fp32 per contender]({chart})"]
    return lines


def write_peers_chart(manifest: dict, path: str | Path) -> Path | None:
    """One panel per (model, batch): a bar per measured contender, its speed-up over ORT fp32."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(m["model"], b, [r for r in m["peers"] if r["batch_size"] == b and r["verdict"] == "measured"
                               and r.get("speedup_vs_ort_fp32") is not None])
              for m in manifest["models"] if m.get("peers") for b in sorted({r["batch_size"] for r in m["peers"]})]
    panels = [p for p in panels if p[2]]
    if not panels:
        return None
    fig, axes = plt.subplots(len(panels), 1, figsize=(7, 1.2 + 0.35 * max(len(p[2]) for p in panels) * len(panels)),
                             squeeze=False)
    for ax, (name, batch, recs) in zip(axes[:, 0], panels):
        recs = sorted(recs, key=lambda r: -r["speedup_vs_ort_fp32"])
        colors = ["tab:green" if (r.get("accuracy") or {}).get("verdict") == "pass" else
                  "tab:red" if (r.get("accuracy") or {}).get("verdict") == "fail" else "tab:gray" for r in recs]
        ax.barh([f"{r['backend']} ({r['precision']})" for r in recs], [r["speedup_vs_ort_fp32"] for r in recs],
                color=colors)
        ax.axvline(1.0, color="black", lw=0.8)
        ax.set_xscale("log")
        ax.set_title(f"{name}, batch {batch} (green: accuracy passes, red: fails, grey: not checked)", fontsize=9)
        ax.tick_params(labelsize=8)
    axes[-1, 0].set_xlabel("x faster than ONNX Runtime fp32 (log; above 1 is faster)")
    fig.tight_layout()
    return save_png(fig, path)
