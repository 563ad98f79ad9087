"""Ray: joining a cluster (``--ray-address``), and training the family on it (``zoo train --ray-address``).

Training on Ray is one task per *epoch* of a variant: the task gets the variant's last checkpoint
(bytes, through Ray's object store: no shared disk is assumed), trains one epoch with
:func:`zoo.model.train.train` -- the local recipe, resumed from that checkpoint -- and returns the
new checkpoint, or after the last epoch the weights and the record. The driver writes every file
into ``--out`` itself, atomically, exactly as local training names them, so ``--resume`` and
``zoo build --weights`` see no difference. A task whose worker dies (a killed process, a lost
node) is submitted again from the last checkpoint: the variant loses at most the epoch in flight.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from urllib.parse import urlsplit

from ..errors import InputError, ProviderUnavailableError, ZooError
from ..versions import install_hint
from ..fsutil import atomic_write_bytes

RAY_LOCAL = "local"  # --ray-address local: start a Ray instance on this machine (what CI runs)
RAY_PROBE_S = 5.0
MAX_RESUBMITS = 3  # per variant: worker deaths survived before the run gives up


def ray_initialized() -> bool:
    try:
        import ray
    except ImportError:
        return False
    return ray.is_initialized()


def probe(address: str) -> None:
    """Fail fast, in one line, when nothing listens at ``host:port`` (``ray.init`` would retry for a minute)."""
    parts = urlsplit(address if "://" in address else f"ray://{address}")
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        host = port = None
    if not host or not port:
        raise InputError(f"--ray-address {address!r}: give host:port, ray://host:port, auto or {RAY_LOCAL}")
    try:
        socket.create_connection((host, port), timeout=RAY_PROBE_S).close()
    except OSError as e:
        raise ZooError(f"--ray-address {address}: cannot connect ({e.strerror or e}); is a Ray head running there "
                       f"(ray start --head)?") from None


def connect_ray(address: str, workers: int = 1):
    """The ``ray`` module, joined to ``address`` (or to the caller's own Ray session, left running)."""
    try:
        import ray
    except ImportError:
        raise ProviderUnavailableError(f"--ray-address needs the ray package: {install_hint('study')}") from None
    import logging

    if address != RAY_LOCAL and address != "auto":
        probe(address)
    if ray.is_initialized():  # the caller's own Ray session: used, and left running
        return ray
    opts = {"include_dashboard": False, "logging_level": logging.ERROR, "log_to_driver": False}
    try:
        if address == RAY_LOCAL:
            ray.init(num_cpus=workers, **opts)
        else:
            ray.init(address=address, **opts)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise ZooError(f"--ray-address {address}: cannot join the Ray cluster: {str(e).splitlines()[0][:200]}") from None
    return ray


# --- the family on a cluster ------------------------------------------------------------------

_DATA: dict = {}  # per Ray worker process: a variant's next epoch usually lands on the same worker


def _dataset(params):
    from ..model import data as ds

    if params not in _DATA:
        _DATA.clear()
        _DATA[params] = ds.generate(params)
    return _DATA[params]


def train_epoch(name: str, recipe: dict, samples: int, data_seed: int, threads: int, checkpoint: bytes | None) -> dict:
    """One Ray task: the next epoch of ``name`` from ``checkpoint`` (None: the first).

    Returns ``{"checkpoint": bytes, "epoch": n}`` or, after the last epoch,
    ``{"weights": bytes, "record": bytes}`` -- the files local training writes."""
    import torch

    from ..model import data as ds
    from ..model.config import resolve_variant
    from ..model.train import Recipe, paths, read_checkpoint_meta, train

    torch.set_num_threads(threads)
    variant = resolve_variant(name)
    work = Path(tempfile.mkdtemp(prefix="zoo-ray-train-"))
    try:
        p = paths(work, variant.name)
        done = 0
        if checkpoint is not None:
            p["checkpoint"].write_bytes(checkpoint)
            done = read_checkpoint_meta(p["checkpoint"])["epoch"]
        rec = train(variant, work, Recipe(**recipe), samples=samples, data_seed=data_seed, resume=True,
                    stop_after=done + 1, data=_dataset(ds.DatasetParams(variant.input_dim, samples, data_seed)))
        if rec is None:
            return {"checkpoint": p["checkpoint"].read_bytes(), "epoch": done + 1}
        return {"weights": p["weights"].read_bytes(), "record": p["record"].read_bytes()}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def train_on_ray(names: list[str], out: str | Path, recipe, *, samples: int, data_seed: int, resume: bool,
                 address: str, threads: int = 1, progress: Callable[[str], None] = lambda m: None) -> list[dict]:
    """Train ``names`` on the Ray cluster at ``address``, every variant's epochs in turn and the
    variants side by side (``threads`` CPUs each); returns the records, in the order of ``names``."""
    from ..model.train import paths

    out = Path(out)
    start: dict[str, bytes | None] = {}
    for name in names:  # the checks local training makes, before anything runs
        ckpt = paths(out, name)["checkpoint"]
        if ckpt.exists() and not resume:
            raise InputError(f"{ckpt} exists: an interrupted run; continue it with --resume, or remove it")
        start[name] = ckpt.read_bytes() if ckpt.exists() else None
    with quiet_stdout():
        return _train_on_ray(names, out, recipe, start, samples=samples, data_seed=data_seed, address=address,
                             threads=threads, progress=progress)


@contextlib.contextmanager
def quiet_stdout():
    """Ray's driver prints cluster events (``(raylet) A worker died ...``) on stdout, which belongs to
    ``--json``: while Ray runs, they go to stderr with the progress lines."""
    with contextlib.redirect_stdout(sys.stderr):
        yield


def _train_on_ray(names, out: Path, recipe, start: dict, *, samples, data_seed, address, threads, progress):
    from ..model.train import paths, read_checkpoint_meta

    owned = not ray_initialized()
    ray = connect_ray(address)
    out.mkdir(parents=True, exist_ok=True)
    task = ray.remote(num_cpus=threads, max_retries=0)(train_epoch)
    r = asdict(recipe)
    records: dict[str, dict] = {}
    lost = dict.fromkeys(names, 0)
    t0 = time.perf_counter()

    def submit(name: str, checkpoint: bytes | None, epoch: int):
        # the task's name is its worker's process title: `ray::train dense_b3 epoch 2` in ps and Ray's dashboard
        return task.options(name=f"train {name} epoch {epoch}").remote(name, r, samples, data_seed, threads, checkpoint)

    refs = {}
    try:
        for name in names:
            done = read_checkpoint_meta(paths(out, name)["checkpoint"])["epoch"] if start[name] is not None else 0
            if done:
                progress(f"{name}: resuming after epoch {done}")
            refs[submit(name, start[name], done + 1)] = name
        progress(f"training {len(names)} variant(s) on Ray at {address}, {threads} thread(s) each")
        while refs:
            [ref], _ = ray.wait(list(refs), num_returns=1)
            name = refs.pop(ref)
            p = paths(out, name)
            try:
                res = ray.get(ref)
            except ray.exceptions.RayTaskError as e:  # the training itself failed: its own error, in one line
                cause = getattr(e, "cause", None)
                if isinstance(cause, ZooError):
                    raise type(cause)(f"{name}: {cause}") from None
                raise ZooError(f"{name} failed on Ray: {str(e).splitlines()[0][:300]}") from None
            except ray.exceptions.RayError as e:  # the worker or its node died: again from the last checkpoint
                lost[name] += 1
                if lost[name] > MAX_RESUBMITS:
                    raise ZooError(f"{name}: lost {lost[name]} Ray workers in a row ({type(e).__name__}); the "
                                   f"checkpoint in {out} is kept: run again with --resume") from None
                ckpt = p["checkpoint"].read_bytes() if p["checkpoint"].exists() else None
                epoch = read_checkpoint_meta(p["checkpoint"])["epoch"] if ckpt is not None else 0
                progress(f"{name}: its Ray worker died ({type(e).__name__}); resuming after epoch {epoch}")
                refs[submit(name, ckpt, epoch + 1)] = name
                continue
            if "checkpoint" in res:
                atomic_write_bytes(p["checkpoint"], res["checkpoint"])
                h = read_checkpoint_meta(p["checkpoint"])["history"][-1]
                progress(f"{name} epoch {res['epoch']}/{recipe.epochs}: loss {h['loss']:.3f}, test top-1 "
                         f"{h['test_top1']:.2%}, {h['wall_s']:.0f}s ({time.perf_counter() - t0:.0f}s elapsed)")
                refs[submit(name, res["checkpoint"], res["epoch"] + 1)] = name
                continue
            atomic_write_bytes(p["weights"], res["weights"])  # weights, record, then the checkpoint goes: as locally
            atomic_write_bytes(p["record"], res["record"])
            p["checkpoint"].unlink(missing_ok=True)
            records[name] = json.loads(res["record"])
            progress(f"{name}: done, test top-1 {records[name]['final_top1']:.2%} "
                     f"({time.perf_counter() - t0:.0f}s elapsed)")
    finally:
        for ref in refs:
            ray.cancel(ref, force=True)
        if owned:
            ray.shutdown()
    return [records[n] for n in names]
