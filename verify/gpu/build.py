"""The GPU check's models, built where it runs: fp32 by the zoo's exporter, fp16 from it.

Export is single-threaded Python, and the GPU machine has many cores: with ``jobs > 1`` each model
is built in a process of its own (spawned, so no CUDA state is forked). A worker returns bytes
only (the model files and the PyTorch state dict), never live tensors.
"""

from __future__ import annotations

import io
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Callable, Iterator

from ...builder.artifact import ModelRequest, request_for


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


def _build_bytes(name: str, input_dim: int | None, precisions: tuple[str, ...]) -> dict:
    """In a worker: everything about one model as picklable bytes and numbers."""
    import torch

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
    return {"name": name, "files": files, "state": buf.getvalue(), "flops": art.flops, "params": art.params,
            "seconds": time.perf_counter() - t, "timings_s": timings}


def _unpack(d: dict, input_dim: int | None) -> Built:
    import torch

    from ...model import DenseEfficientNet, variant_config

    req = request_for(d["name"], input_dim=input_dim)
    model = DenseEfficientNet(variant_config(req.variant, req.num_classes, req.flavor, req.input_dim))
    model.load_state_dict(torch.load(io.BytesIO(d["state"]), weights_only=True))
    return Built(d["name"], req, model.eval(), d["files"], d["flops"], d["params"], d["seconds"], d["timings_s"])


def build_models(names: list[str], *, input_dim: int | None, precisions: tuple[str, ...] = ("fp32", "fp16"),
                 jobs: int = 1, progress: Callable[[str], None] = lambda m: None) -> Iterator[Built]:
    """Every model of ``names``, yielded as each is built: in order with one job; with more, the
    biggest are started first and each comes as it is done."""
    for n in names:
        request_for(n, input_dim=input_dim)  # unknown names and bad widths fail before any work
    if jobs <= 1 or len(names) == 1:
        for n in names:
            d = _build_bytes(n, input_dim, precisions)
            progress(f"built {n} in {d['seconds']:.1f} s")
            yield _unpack(d, input_dim)
        return
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(jobs, len(names)), mp_context=ctx) as pool:
        futures = [pool.submit(_build_bytes, n, input_dim, precisions) for n in reversed(names)]
        for fut in as_completed(futures):
            d = fut.result()
            progress(f"built {d['name']} in {d['seconds']:.1f} s")
            yield _unpack(d, input_dim)
