"""What checking a signature adds to a pull: dense_b7 fp32 from a local mirror, signed vs unsigned.

Not a test (pytest does not collect it); the measurement of docs/releases.md, re-run with::

    python tests/bench_signed_pull.py [--artifacts DIR] [--rounds 5] [--model dense_b7]

Without --artifacts it builds the model first (fp32, no parity matrix, no benchmark). It publishes
the build twice (unsigned; signed with a fresh key), then pulls from each into a fresh cache,
interleaved round by round (alternating which goes first) so both see the same machine, once from the folder and once over
HTTP on 127.0.0.1; the trusted pull runs with ``trust=`` the mirror's root.json (python-tuf's
refresh: root, timestamp, snapshot, targets; the version manifest against its target hash; the
OpenSSF model signature against the targets key; then every file's sha256), each with a fresh
trust state (the config folder), so the whole TUF refresh is counted every time.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def serve(root: Path):
    handler = functools.partial(_Quiet, directory=str(root))
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, f"http://127.0.0.1:{srv.server_address[1]}/"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--artifacts", type=Path)
    ap.add_argument("--model", default="dense_b7")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    import os

    from zoo import hub
    from zoo.hub import metadata, plan, trust

    work = Path(tempfile.mkdtemp(prefix="zoo-bench-sign-"))
    arts = args.artifacts
    if arts is None:
        arts = work / "build"
        subprocess.run([sys.executable, "-m", "zoo", "build", args.model, "--precision", "fp32", "--no-verify",
                        "--no-bench", "--artifacts", str(arts)], check=True)
    (work / "keys").mkdir()
    keys = {k["role"]: k for k in hub.keygen_publisher(work / "keys")}
    hub.publish(arts, work / "plain", [args.model], license="Apache-2.0")
    hub.publish(arts, work / "signed", [args.model], license="Apache-2.0", root_keys=[keys["root"]["private_key"]],
                targets_keys=[keys["targets"]["private_key"]], online_key=keys["online"]["private_key"])
    root = str(work / "signed" / "metadata" / "1.root.json")
    servers = {k: serve(work / k) for k in ("plain", "signed")}
    size = (arts / args.model / "model.onnx").stat().st_size
    times: dict[str, list[float]] = {}
    n = 0
    for r in range(args.rounds):
        for how in ("folder", "http"):
            for kind in ("plain", "signed")[:: 1 if r % 2 == 0 else -1]:  # alternate who goes first
                n += 1
                src = str(work / kind) if how == "folder" else servers[kind][1]
                os.environ["ZOO_CONFIG"] = str(work / f"config{n}")  # no earlier trusted state
                t = time.perf_counter()
                res = hub.pull([args.model], src, "fp32", cache_dir=work / f"cache{n}",
                               trust=root if kind == "signed" else None)
                times.setdefault(f"{how}/{kind}", []).append(time.perf_counter() - t)
                assert res[0].status == "downloaded"
                shutil.rmtree(work / f"cache{n}")
        os.environ["ZOO_CONFIG"] = str(work / f"config-check{r}")
        t = time.perf_counter()  # the trust checks alone: TUF refresh, version manifest, model signature
        src = hub.resolve_source(servers["signed"][1])
        cat = metadata.open_catalogue(src, trust.anchor_for(src, root))
        plan.make(cat, [args.model])
        times.setdefault("http/trust_checks_only", []).append(time.perf_counter() - t)
    out = {"model": args.model, "model_bytes": size, "rounds": args.rounds,
           "median_s": {k: round(statistics.median(v), 4) for k, v in times.items()}}
    out["ratio_signed_over_plain"] = {how: round(out["median_s"][f"{how}/signed"] / out["median_s"][f"{how}/plain"], 3)
                                      for how in ("folder", "http")}
    print(json.dumps(out, indent=2))
    for srv, _ in servers.values():
        srv.shutdown()
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
