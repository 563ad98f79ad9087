"""Why do some checkpoints quantise worse than others: the thread count, or the checkpoint?

Not a test (pytest does not collect it); the measurement of docs/performance.md ("Two-thread
checkpoints"), re-run with::

    python tests/bench_thread_quant.py --model dense_b2 --seeds 0,1,2 --threads 1,2 --out DIR

It trains ``--model`` once per (seed, thread count) with ``zoo train``'s recipe (skipping what
``--out`` already holds), then measures every checkpoint with the **fixed** recipes the zoo had
before its search (dynamic int8 with the per-channel heuristic, static int8 with MinMax ranges):
agreement with the fp32 model's classes on the 8,000-sample test split, and what could explain it:

- ``margin``: how close the fp32 model's answers sit to a decision boundary, the median over the test
  split of the top-1 minus top-2 logit, and the share of samples whose gap is under 0.25;
- ``noise``: how far the quantised logits move, the median relative L2 change of a sample's logits
  (quantised minus fp32, over the fp32 logits' norm);
- ``sensitivity``: the sum, over the quantised layers, of the relative logit error with that layer
  alone rounded by the dynamic recipe (``zoo.exporters.quant_sensitivity.sensitivity``, 64 samples).

If the thread count mattered, the rows would split by thread count; if they split by seed as much,
two threads are another seed. Prints a Markdown table and writes ``DIR/results.json``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def train(model: str, seed: int, threads: int, out: Path) -> float:
    if (out / f"{model}.safetensors").exists():
        return json.loads((out / f"{model}.train.json").read_text()).get("wall_s", 0.0)
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "zoo", "train", model, "--seed", str(seed), "--threads", str(threads),
                    "--out", str(out), "--resume"], check=True)
    return time.perf_counter() - t


def logits(ref, x: np.ndarray, input_name: str) -> np.ndarray:
    import onnxruntime as ort

    from zoo import onnxio

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(onnxio.ort_source(ref), so, providers=["CPUExecutionProvider"])
    return np.concatenate([sess.run(None, {input_name: x[i:i + 512]})[0] for i in range(0, len(x), 512)])


def measure(model: str, ckpt: Path) -> dict:
    from zoo.builder.artifact import make_artifact, request_for
    from zoo.exporters import quant_search as qs
    from zoo.exporters.int8 import gemm_to_matmul, int8_nodes, per_channel_helps
    from zoo.exporters.int8_static import CALIBRATION_SAMPLES, calibration_inputs
    from zoo import onnxio

    art = make_artifact(request_for(model, weights=str(ckpt / f"{model}.safetensors")))
    ev, name = art.eval_set, art.request.spec.input_name
    x = np.ascontiguousarray(ev.x_test, dtype=np.float32)
    ref_logits = logits(art.model_ref, x, name)
    ref_cls = ref_logits.argmax(1)
    top2 = np.sort(ref_logits, axis=1)[:, -2:]
    gap = top2[:, 1] - top2[:, 0]
    prepared = gemm_to_matmul(onnxio.load(art.model_ref))
    heuristic = per_channel_helps(prepared, int8_nodes(prepared))
    dim = x.shape[1]
    cal = calibration_inputs(ev.x_train, dim, CALIBRATION_SAMPLES, model)
    row = {"fp32_top1": float((ref_cls == ev.y_test).mean()), "margin_median": float(np.median(gap)),
           "near_boundary": float((gap < 0.25).mean())}
    recipes = {"int8": qs.Recipe(per_channel=heuristic), "int8_static": qs.Recipe(calibration="minmax")}
    for precision, recipe in recipes.items():
        data = qs.make_file(precision, art.model_ref, recipe, [], cal_x=cal, input_name=name, what=model)
        q = logits(data, x, name)
        rel = np.linalg.norm(q - ref_logits, axis=1) / np.maximum(np.linalg.norm(ref_logits, axis=1), 1e-12)
        row[precision] = {"agreement": float((q.argmax(1) == ref_cls).mean()),
                          "top1": float((q.argmax(1) == ev.y_test).mean()), "noise_median": float(np.median(rel))}
    sens = qs.sensitivity(art.model_ref, "int8", recipes["int8"], cal[:qs.SENSITIVITY_SAMPLES], input_name=name)
    key = qs._rank_key(sens)
    row["sensitivity_sum"] = float(sum(r[key] for r in sens))
    row["sensitivity_top"] = [(r["layer"].rsplit("/", 1)[0], round(r[key], 4)) for r in sens[:3]]
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="dense_b2")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--measure-threads", type=int, default=1, help="PyTorch threads while measuring")
    args = ap.parse_args(argv)
    results = []
    for threads in [int(t) for t in args.threads.split(",")]:
        for seed in [int(s) for s in args.seeds.split(",")]:
            ckpt = args.out / f"t{threads}_s{seed}"
            ckpt.mkdir(parents=True, exist_ok=True)
            wall = train(args.model, seed, threads, ckpt)
            import torch

            torch.set_num_threads(args.measure_threads)
            row = {"threads": threads, "seed": seed, "train_s": round(wall, 1)} | measure(args.model, ckpt)
            results.append(row)
            print(json.dumps(row), flush=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=1))
    print(f"\n| threads | seed | PyTorch top-1 | margin (median) | share with gap < 0.25 | dynamic int8 agreement "
          f"(logit noise) | static MinMax agreement (noise) | sensitivity sum | worst layers |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in results:
        print(f"| {r['threads']} | {r['seed']} | {r['fp32_top1']:.2%} | {r['margin_median']:.3f} | "
              f"{r['near_boundary']:.2%} | {r['int8']['agreement']:.2%} ({r['int8']['noise_median']:.4f}) | "
              f"{r['int8_static']['agreement']:.2%} ({r['int8_static']['noise_median']:.4f}) | "
              f"{r['sensitivity_sum']:.3f} | {', '.join(f'{n} {v}' for n, v in r['sensitivity_top'])} |")
    agree = np.array([r["int8"]["agreement"] for r in results])
    for feat in ("margin_median", "near_boundary", "sensitivity_sum"):
        v = np.array([r[feat] for r in results])
        if len(results) > 2 and v.std() > 0:
            print(f"correlation of dynamic int8 agreement with {feat}: {np.corrcoef(v, agree)[0, 1]:+.2f}")
    noise = np.array([r["int8"]["noise_median"] for r in results])
    if len(results) > 2:
        print(f"correlation of dynamic int8 agreement with its logit noise: {np.corrcoef(noise, agree)[0, 1]:+.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
