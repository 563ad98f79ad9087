"""``python -m zoo.verify.gpu --out DIR [--models ...] [--provider cuda|cpu]``: see docs/gpu.md.

argparse, not Click: the GPU machine has only the toolchain installed.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ...errors import EXIT_FAILED, EXIT_INTERNAL, EXIT_UNAVAILABLE, InputError, ZooError
from .check import DEFAULT_MODELS, PRECISIONS, TIMING_BATCHES, CheckOptions, build_only, run_check

EXAMPLES = """examples:
  python -m zoo.verify.gpu --out gpu-out                       # B0-B7 on CUDA (the GPU machine)
  python -m zoo.verify.gpu --out /tmp/dry --provider cpu --models dense_b0 --input-dim 64 --compile eager
"""


def _ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m zoo.verify.gpu", epilog=EXAMPLES,
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 description="Build the zoo's models here, check their parity on ONNX Runtime's "
                                             "CUDA provider against PyTorch (CUDA and CPU), time them against "
                                             "PyTorch eager and torch.compile, and write the records.")
    ap.add_argument("--out", type=Path, default=None, help="folder for the records and summary.md (required)")
    ap.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS), metavar="NAME")
    ap.add_argument("--provider", default="cuda", choices=("cuda", "cpu"),
                    help="cuda (default); cpu is a dry run that says loudly that no GPU was used")
    ap.add_argument("--input-dim", type=int, default=None, help="narrower inputs (a quick dry run)")
    ap.add_argument("--precisions", default=",".join(PRECISIONS), help="fp32,fp16 (default)")
    ap.add_argument("--parity-batches", type=_ints, default=None, help="the matrix's batch sizes by default")
    ap.add_argument("--timing-batches", type=_ints, default=TIMING_BATCHES, help="default 1,256")
    ap.add_argument("--compile", default="inductor", metavar="BACKEND",
                    help="torch.compile backend: inductor (default), eager (cheap, for dry runs), none")
    ap.add_argument("--jobs", type=int, default=None, help="build processes (default: min(8, CPUs))")
    ap.add_argument("--cache", default=None, metavar="DIR",
                    help="keep built models here and reuse them (a later run on the same machine skips the build)")
    ap.add_argument("--build-only", action="store_true",
                    help="only build the models into --cache (needs no onnxruntime-gpu yet)")
    ap.add_argument("--time-limit-s", type=float, default=240.0,
                    help="after this many seconds, optional work (torch.compile, TensorRT) is skipped, saying so")
    return ap


def main(argv: list[str] | None = None) -> int:
    ap = parser()
    a = ap.parse_args(argv)
    if a.out is None and not a.build_only:
        ap.error("--out is required (except with --build-only)")
    try:
        from ...spec import parse_precisions

        precisions = tuple(p for p in parse_precisions(a.precisions) if p in PRECISIONS)
        if len(precisions) != len(a.precisions.split(",")):
            raise InputError(f"the GPU check runs fp32 and fp16 only, got {a.precisions!r}")
        opts = CheckOptions(out=a.out, models=tuple(a.models), provider=a.provider, input_dim=a.input_dim,
                            precisions=precisions, timing_batches=a.timing_batches,
                            compile_backend=None if a.compile == "none" else a.compile,
                            jobs=a.jobs or min(8, os.cpu_count() or 1), cache=a.cache,
                            time_limit_s=a.time_limit_s)
        if a.parity_batches:
            opts.parity_batches = a.parity_batches
        if a.build_only:
            build_only(opts)
            return 0
        result = run_check(opts)
    except (InputError, ZooError) as e:
        print(f"Error: zoo verify gpu: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("Error: zoo verify gpu: interrupted", file=sys.stderr)
        return EXIT_FAILED
    except Exception as e:  # a bug: one line, and the traceback only where asked for
        if os.environ.get("ZOO_DEBUG"):
            raise
        print(f"Error: zoo verify gpu: internal error: {type(e).__name__}: {e}", file=sys.stderr)
        return EXIT_INTERNAL
    if result["failed"]:
        print(f"Error: zoo verify gpu: {result['failed'][0]}", file=sys.stderr)
        return EXIT_FAILED
    if result["refused"]:
        print(f"Error: zoo verify gpu: refused (the session left the provider): {result['refused'][0]}",
              file=sys.stderr)
        return EXIT_UNAVAILABLE
    failed = [f"{n} {r['precision']} {r['backend']} vs {r['reference']}" for n, m in result["models"].items()
              for r in m["parity"] if r["verdict"] == "fail"]
    if failed:
        print(f"Error: zoo verify gpu: parity failed: {'; '.join(failed[:5])}", file=sys.stderr)
        return EXIT_FAILED
    return 0


if __name__ == "__main__":
    sys.exit(main())
