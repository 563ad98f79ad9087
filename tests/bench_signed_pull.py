"""What checking a signature adds to a pull: dense_b7 fp32 from a local mirror, signed vs unsigned.

Not a test (pytest does not collect it); the measurement of docs/releases.md, re-run with::

    python tests/bench_signed_pull.py [--artifacts DIR] [--rounds 5] [--model dense_b7]

Without --artifacts it builds the model first (fp32, no parity matrix, no benchmark). It publishes
the build twice (unsigned; signed with a fresh key), then pulls from each into a fresh cache,
interleaved round by round so both see the same machine, once from the folder and once over
HTTP on 127.0.0.1; the signed pull runs with ``trust=`` (the index's signature, expiry and
counter, the version manifest's sha256, the OpenSSF model signature, then every file's sha256).
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path


def serve(root: Path):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a: None
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, f"http://127.0.0.1:{srv.server_address[1]}/"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--artifacts", type=Path)
    ap.add_argument("--model", default="dense_b7")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    from zoo import hub

    work = Path(tempfile.mkdtemp(prefix="zoo-bench-sign-"))
    arts = args.artifacts
    if arts is None:
        arts = work / "build"
        subprocess.run([sys.executable, "-m", "zoo", "build", args.model, "--precision", "fp32", "--no-verify",
                        "--no-bench", "--artifacts", str(arts)], check=True)
    keys = hub.keygen(work / "zoo.key")
    hub.publish(arts, work / "plain", [args.model], license="Apache-2.0")
    hub.publish(arts, work / "signed", [args.model], license="Apache-2.0", sign_key=keys["private_key"])
    servers = {k: serve(work / k) for k in ("plain", "signed")}
    size = (arts / args.model / "model.onnx").stat().st_size
    times: dict[str, list[float]] = {}
    n = 0
    for _ in range(args.rounds):
        for how in ("folder", "http"):
            for kind in ("plain", "signed"):
                n += 1
                src = str(work / kind) if how == "folder" else servers[kind][1]
                t = time.perf_counter()
                res = hub.pull([args.model], src, "fp32", cache_dir=work / f"cache{n}",
                               trust=keys["public_key"] if kind == "signed" else None)
                times.setdefault(f"{how}/{kind}", []).append(time.perf_counter() - t)
                assert res[0].status == "downloaded"
    out = {"model": args.model, "model_bytes": size, "rounds": args.rounds,
           "median_s": {k: round(statistics.median(v), 4) for k, v in times.items()}}
    out["ratio_signed_over_plain"] = {how: round(out["median_s"][f"{how}/signed"] / out["median_s"][f"{how}/plain"], 3)
                                      for how in ("folder", "http")}
    print(json.dumps(out, indent=2))
    for srv, _ in servers.values():
        srv.shutdown()


if __name__ == "__main__":
    main()
