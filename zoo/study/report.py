"""A study's answer: per-point mean and spread over seeds, verdicts that call a difference smaller than
the seed-to-seed spread a tie, a Markdown report, PNG charts and a strict-JSON summary.

Spread is the sample standard deviation of the top-1 over seeds (``ddof=1``). Two points tie when
their means differ by less than the larger of their two spreads; with one seed there is no spread
and a difference is reported as "untested".
"""

from __future__ import annotations

import statistics
from pathlib import Path

from ..fsutil import atomic_path, atomic_write_bytes
from ..jsonio import dumps
from .plans import Point, flops_ratio
from .trials import BASE_SHAPE, Trial

REPORT = "report.md"
SUMMARY = "summary.json"
CHART = {"scaling": "scaling.png", "grid": "grid.png", "ablation": "ablation.png"}
# The ablation chart's marker and colour per strategy (B0 grey, its options blue, the baselines orange/red).
_ABLATION_STYLE = {"baseline": ("s", "tab:gray"), "se": ("o", "tab:blue"), "activation": ("D", "tab:blue"),
                   "resmlp": ("^", "tab:orange"), "mlp": ("v", "tab:red"), "progressive": ("P", "tab:green")}


def summarize(points: list[Point], trials: list[Trial], records: dict[str, dict]) -> list[dict]:
    """One row per point: shape, params, FLOPs, top-1 per seed, mean, spread, seeds, wall time."""
    rows = []
    for p in points:
        recs = [records[t.id] for t in trials if t.shape == p.shape]
        top1 = [r["top1"] for r in recs]
        rows.append({
            **p.to_dict(),
            "params": recs[0]["params"],
            "flops": recs[0]["flops"],
            "flops_ratio": flops_ratio(p.shape),
            "seeds": [r["seed"] for r in recs],
            "top1": top1,
            "top1_mean": statistics.fmean(top1),
            "top1_std": statistics.stdev(top1) if len(top1) > 1 else None,
            "wall_s": sum(r["wall_s"] for r in recs),
            "cpu_s": sum(r.get("cpu_s", 0.0) for r in recs),
        })
    return rows


def compare(a: dict, b: dict) -> dict:
    """``a`` against ``b``: the difference of means (points of top-1) and whether it is a tie."""
    diff = a["top1_mean"] - b["top1_mean"]
    spreads = [s for s in (a["top1_std"], b["top1_std"]) if s is not None]
    if len(spreads) < 2:
        verdict = "untested"
    elif abs(diff) < max(spreads):
        verdict = "tie"
    else:
        verdict = "better" if diff > 0 else "worse"
    return {"a": a["label"], "b": b["label"], "diff_points": 100 * diff,
            "spread_points": 100 * max(spreads) if spreads else None, "verdict": verdict}


def scaling_verdicts(rows: list[dict]) -> list[dict]:
    """At each multiplier: the best strategy, and compound against each single-dimension strategy."""
    out = []
    for m in sorted({r["multiplier"] for r in rows if r["strategy"] != "baseline"}):
        at = [r for r in rows if r["multiplier"] == m and r["strategy"] != "baseline"]
        best = max(at, key=lambda r: r["top1_mean"])
        comp = next((r for r in at if r["strategy"] == "compound"), None)
        out.append({"multiplier": m, "best": best["label"],
                    "compound_vs": [compare(comp, r) for r in at if r is not comp] if comp else [],
                    "best_vs": [compare(best, r) for r in at if r is not best]})
    return out


def grid_verdict(rows: list[dict]) -> dict:
    cands = [r for r in rows if r["strategy"] in ("candidate", "reference")]
    best = max(cands, key=lambda r: r["top1_mean"])
    ref = next(r for r in rows if r["strategy"] == "reference")
    return {"best": best["label"], "best_coefficients": best["coefficients"], "reference": ref["label"],
            "best_vs_reference": compare(best, ref),
            "ranking": [r["label"] for r in sorted(cands, key=lambda r: -r["top1_mean"])]}


def _pct(mean: float, std: float | None) -> str:
    return f"{100 * mean:.2f}" + (f" ± {100 * std:.2f}" if std is not None else "")


def _table(rows: list[dict]) -> list[str]:
    lines = ["| point | depth | width | input_dim | params | MFLOPs | FLOPs x B0 | top-1 % (mean ± sd) | seeds |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        s = r["shape"]
        a = s.get("arch") or {}
        if a.get("body") not in (None, "mbconv"):  # a baseline: its own width and depth
            s = dict(s, depth=a["depth"], width=a["width"])
        lines.append(f"| {r['label']} | {s['depth']:g} | {s['width']:g} | {s['input_dim']} | {r['params']:,} | "
                     f"{r['flops'] / 1e6:.1f} | {r['flops_ratio']:.2f} | {_pct(r['top1_mean'], r['top1_std'])} | "
                     f"{len(r['seeds'])} |")
    return lines


def _verdict_line(c: dict) -> str:
    spread = f", spread {c['spread_points']:.2f}" if c["spread_points"] is not None else ""
    word = {"tie": "tie", "untested": "untested (1 seed)", "better": "better", "worse": "worse"}[c["verdict"]]
    return f"{c['a']} vs {c['b']}: {c['diff_points']:+.2f} points{spread} -> **{word}**"


def markdown(kind: str, rows: list[dict], verdicts, setting: dict) -> str:
    title = {"scaling": "Scaling study: depth, width, resolution and compound scaling at equal FLOPs",
             "grid": "Grid search for alpha, beta, gamma at phi = 1",
             "ablation": "Ablation study: squeeze-excitation, SiLU, baselines at equal FLOPs, progressive training"}[kind]
    b = setting["budget"]
    lines = [f"# {title}", "",
             (f"Every trial: MNIST-1D ({b['samples']:,} samples, 80 % train, data seed {b['data_seed']}) at its own "
             f"input_dim, `zoo train`'s recipe for {b['epochs']} epoch(s), dropout {setting['dropout']:g}, one thread; "
             f"{setting['seeds']} seed(s) per point; {setting['trials']} trial(s), "
             f"{setting['train_hours']:.2f} hours of trials ({setting['cpu_hours']:.2f} CPU-hours). "
             f"FLOPs are analytic (matrix multiplies per sample); "
             f"B0 has {BASE_SHAPE.flops() / 1e6:.2f} MFLOPs. A difference smaller than the larger seed-to-seed "
             f"standard deviation is a tie."), ""]
    lines += _table(rows) + [""]
    if kind == "scaling":
        lines.append("Resolution only widens the stem of a dense network, so resolution-only points cost almost no "
                     "FLOPs: they are scaled by sqrt(multiplier) (the paper's share) and charted at their real FLOPs.")
        lines.append("")
        for v in verdicts:
            lines.append(f"- **{v['multiplier']:g}x**: best {v['best']}; "
                         + "; ".join(_verdict_line(c) for c in v["compound_vs"] or v["best_vs"]))
    elif kind == "ablation":
        from .ablation import claim_lines

        lines += claim_lines(verdicts, _verdict_line)
    else:
        c = verdicts["best_vs_reference"]
        a, bb, g = verdicts["best_coefficients"]
        lines += [(f"Best triple: **alpha={a:g}, beta={bb:g}, gamma={g:g}** ({verdicts['best']}); "
                   f"{_verdict_line(c)} (the reference is the table's 1.2, 1.1, 1.15)."), "",
                  ("In a dense network gamma buys almost no FLOPs, so candidates at the same alpha*beta**2*gamma**2 "
                   "differ in real FLOPs (column FLOPs x B0); compare them with that in mind."), "",
                  f"Rebuild the family from it: `zoo list --phi 1 --alpha {a:g} --beta {bb:g} --gamma {g:g}`."]
    lines += ["", f"![{kind}]({CHART[kind]})", ""]
    return "\n".join(lines)


def chart(kind: str, rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    err = [100 * (r["top1_std"] or 0.0) for r in rows]
    if kind == "scaling":
        base = next(r for r in rows if r["strategy"] == "baseline")
        for s in dict.fromkeys(r["strategy"] for r in rows if r["strategy"] != "baseline"):
            pts = [base] + sorted((r for r in rows if r["strategy"] == s), key=lambda r: r["flops_ratio"])
            ax.errorbar([r["flops_ratio"] for r in pts], [100 * r["top1_mean"] for r in pts],
                        yerr=[100 * (r["top1_std"] or 0.0) for r in pts], marker="o", capsize=3, label=s)
        ax.set_title("Top-1 against FLOPs, one line per scaling strategy (from B0)")
    else:
        for r, e in zip(rows, err):
            style = {"reference": ("*", "tab:red", 12), "baseline": ("s", "tab:gray", 7)}.get(r["strategy"],
                                                                                            ("o", "tab:blue", 6))
            if kind == "ablation":
                style = (*_ABLATION_STYLE.get(r["strategy"], ("o", "tab:blue")), 7)
            ax.errorbar(r["flops_ratio"], 100 * r["top1_mean"], yerr=e, marker=style[0], color=style[1],
                        markersize=style[2], capsize=3, linestyle="none")
            ax.annotate(r["label"], (r["flops_ratio"], 100 * r["top1_mean"]), fontsize=6, xytext=(3, 3),
                        textcoords="offset points")
        ax.set_title("Grid candidates at phi = 1 (red star: 1.2, 1.1, 1.15)" if kind == "grid" else
                     "B0 (grey), its options (blue), progressive (green), residual MLP / MLP (orange / red)")
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}x"))
    ax.set_xlabel("FLOPs relative to B0 (analytic, log scale)")
    ax.set_ylabel("test top-1 (%), mean ± sd over seeds")
    ax.grid(alpha=0.3)
    if kind == "scaling":
        ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def write(kind: str, points: list[Point], trials: list[Trial], records: dict[str, dict], out: str | Path,
          seeds: int) -> dict:
    """Write ``report.md``, the chart and ``summary.json`` under ``out``; returns the summary."""
    out = Path(out)
    rows = summarize(points, trials, records)
    if kind == "ablation":
        from .ablation import claim_verdicts

        verdicts = claim_verdicts(rows)
    else:
        verdicts = scaling_verdicts(rows) if kind == "scaling" else grid_verdict(rows)
    setting = {"budget": records[trials[0].id]["budget"], "seeds": seeds, "trials": len(trials),
               "dropout": records[trials[0].id]["config"]["dropout"],
               "recipe": records[trials[0].id]["recipe"],
               "train_hours": sum(records[t.id]["wall_s"] for t in trials) / 3600,
               "cpu_hours": sum(records[t.id].get("cpu_s", 0.0) for t in trials) / 3600}
    summary = {"study": kind, "setting": setting, "points": rows, "verdicts": verdicts,
               "files": {"report": REPORT, "chart": CHART[kind], "trials": "trials/"}}
    chart(kind, rows, out / CHART[kind])
    atomic_write_bytes(out / REPORT, markdown(kind, rows, verdicts, setting).encode())
    atomic_write_bytes(out / SUMMARY, (dumps(summary) + "\n").encode())
    return summary
