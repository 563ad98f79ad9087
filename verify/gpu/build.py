"""The GPU check's models, built where it runs: fp32 by the zoo's exporter, fp16 from it.

Export is single-threaded Python, and the GPU machine has many cores: with ``jobs > 1`` each model
is built in a process of its own (spawned, so no CUDA state is forked). A worker returns bytes
only (the model files and the PyTorch state dict), never live tensors.
"""

from __future__ import annotations

import io
import json
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from ...builder.artifact import ModelRequest, request_for
from ...fsutil import atomic_write_bytes, atomic_write_json, sha256_bytes

CACHE_META = "meta.json"


@dataclass
class Built:
    name: str
    request: ModelRequest
    model: object  # the fp32 PyTorch model (eval mode, on the CPU)
    files: dict[str, bytes]  # precision -> self-contained model bytes
    flops: int
    params: int
    seconds: float
    timings_s: dict[str, float] = field(default_factory=dict)

    @property
    def input_dim(self) -> int:
        return self.request.effective_input_dim


def _cache_key(name: str, input_dim: int | None, precisions: tuple[str, ...]) -> dict:
    import torch

    from ... import __version__

    return {"name": name, "input_dim": input_dim, "precisions": list(precisions), "torch": torch.__version__,
            "zoo": __version__}


def _cache_folder(cache: str, name: str, input_dim: int | None) -> Path:
    return Path(cache) / f"{name}-{input_dim or 'default'}"


def _from_cache(folder: Path, key: dict) -> dict | None:
    """A model an earlier run of the check built on this machine (``--cache``), if it is the same."""
    try:
        meta = json.loads((folder / CACHE_META).read_text())
        if meta.get("key") != key:
            return None
        files = {p: (folder / f"{p}.onnx").read_bytes() for p in key["precisions"]}
        state = (folder / "state.pt").read_bytes()
    except (OSError, ValueError):
        return None
    if any(sha256_bytes(files[p]) != meta["sha256"].get(p) for p in files):
        return None
    return {**meta["info"], "files": files, "state": state, "seconds": 0.0, "cached": True}


def _to_cache(folder: Path, key: dict, d: dict) -> None:
    for p, data in d["files"].items():
        atomic_write_bytes(folder / f"{p}.onnx", data)
    atomic_write_bytes(folder / "state.pt", d["state"])
    info = {k: d[k] for k in ("name", "flops", "params", "timings_s")}
    atomic_write_json(folder / CACHE_META, {"key": key, "info": info,  # last: it vouches for the rest
                                            "sha256": {p: sha256_bytes(b) for p, b in d["files"].items()}})


def _build_bytes(name: str, input_dim: int | None, precisions: tuple[str, ...], cache: str | None = None) -> dict:
    """In a worker: everything about one model as picklable bytes and numbers (from ``cache`` when
    an earlier run left it there; into it otherwise)."""
    import torch

    folder = _cache_folder(cache, name, input_dim) if cache else None
    key = _cache_key(name, input_dim, precisions)
    if folder is not None and (hit := _from_cache(folder, key)) is not None:
        return hit

    from ...builder.artifact import make_artifact
    from ...exporters.variants import variant_bytes

    t = time.perf_counter()
    art = make_artifact(request_for(name, input_dim=input_dim))
    ref = art.model_ref
    if not isinstance(ref, (bytes, bytearray)):  # over 2 GiB: none of B0-B7 is
        raise ValueError(f"{name}: the model is over 2 GiB; the GPU check runs self-contained models only")
    timings = dict(art.timings_s)
    files = {}
    for p in precisions:
        t1 = time.perf_counter()
        files[p] = bytes(ref) if p == "fp32" else variant_bytes(bytes(ref), p)
        timings[p] = time.perf_counter() - t1
    buf = io.BytesIO()
    torch.save(art.model.state_dict(), buf)
    out = {"name": name, "files": files, "state": buf.getvalue(), "flops": art.flops, "params": art.params,
           "seconds": time.perf_counter() - t, "timings_s": timings, "cached": False}
    if folder is not None:
        _to_cache(folder, key, out)
    return out


def _unpack(d: dict, input_dim: int | None) -> Built:
    import torch

    from ...model import DenseEfficientNet, variant_config

    req = request_for(d["name"], input_dim=input_dim)
    model = DenseEfficientNet(variant_config(req.variant, req.num_classes, req.flavor, req.input_dim))
    model.load_state_dict(torch.load(io.BytesIO(d["state"]), weights_only=True))
    return Built(d["name"], req, model.eval(), d["files"], d["flops"], d["params"], d["seconds"], d["timings_s"])


def build_models(names: list[str], *, input_dim: int | None, precisions: tuple[str, ...] = ("fp32", "fp16"),
                 jobs: int = 1, cache: str | None = None, failed: list[str] | None = None,
                 progress: Callable[[str], None] = lambda m: None) -> Iterator[Built]:
    """Every model of ``names``, yielded as each is built: in order with one job; with more, the
    biggest are started first and each comes as it is done. A model whose build fails is named in
    ``failed`` (with why) and the others go on: a GPU window is too short to start again."""
    failed = [] if failed is None else failed
    for n in names:
        request_for(n, input_dim=input_dim)  # unknown names and bad widths fail before any work

    def fail(name: str, e: BaseException):
        failed.append(f"{name}: build failed: {type(e).__name__}: {str(e).strip()[:300]}")
        progress(failed[-1])

    todo = []
    for n in names:  # cached models are read here: no process is spawned (and torch imported) for them
        hit = _from_cache(_cache_folder(cache, n, input_dim), _cache_key(n, input_dim, precisions)) if cache else None
        if hit is None:
            todo.append(n)
            continue
        progress(_built_line(hit))
        yield _unpack(hit, input_dim)
    names = todo
    if not names:
        return
    if jobs <= 1 or len(names) == 1:
        for n in names:
            try:
                d = _build_bytes(n, input_dim, precisions, cache)
            except Exception as e:
                fail(n, e)
                continue
            progress(_built_line(d))
            yield _unpack(d, input_dim)
        return
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(jobs, len(names)), mp_context=ctx) as pool:
        futures = {pool.submit(_build_bytes, n, input_dim, precisions, cache): n for n in reversed(names)}
        for fut in as_completed(futures):
            try:
                d = fut.result()
            except Exception as e:
                fail(futures[fut], e)
                continue
            progress(_built_line(d))
            yield _unpack(d, input_dim)


def _built_line(d: dict) -> str:
    return f"{d['name']}: from the cache" if d.get("cached") else f"built {d['name']} in {d['seconds']:.1f} s"
