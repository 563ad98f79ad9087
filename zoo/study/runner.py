"""Run a study's trials as independent jobs: a local process pool (``workers``) or a Ray cluster.

Finished trials are read back from ``OUT/trials/ID.json`` and not re-run. Each record is written by
the driver, atomically, the moment its trial finishes, so a study killed at any point loses at most
the trials in flight; under the process pool these continue from their last finished epoch (the
checkpoint ``zoo train`` writes, kept under ``OUT/work/ID``).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from pathlib import Path

from ..errors import InputError, ZooError
from ..fsutil import atomic_write_bytes
from ..jsonio import dumps
from .cluster import connect_ray, quiet_stdout, ray_initialized
from .trials import TRIALS_DIR, WORK_DIR, Trial, read_record, record_path, run_trial

Progress = Callable[[str], None]


def pending(trials: list[Trial], out: Path, progress: Progress = lambda m: None) -> tuple[dict, list[Trial]]:
    """``(records of finished trials by id, trials still to run)``."""
    done, todo = {}, []
    for t in trials:
        rec, why = read_record(out, t)
        if rec is not None:
            done[t.id] = rec
        else:
            if why:
                progress(f"re-running {t.id}: {why}")
            todo.append(t)
    return done, todo


def run_trials(trials: list[Trial], out: str | os.PathLike, *, workers: int = 2, ray_address: str | None = None,
               progress: Progress = lambda m: None) -> dict:
    """Run every unfinished trial; returns ``{"records": {id: record}, "ran": [ids], "reused": [ids]}``."""
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise InputError(f"workers must be a positive integer, got {workers!r}")
    out = Path(out)
    if ray_address is not None:
        owned = not ray_initialized()
        ray = connect_ray(ray_address, workers)  # checked before anything is written
    (out / TRIALS_DIR).mkdir(parents=True, exist_ok=True)
    records, todo = pending(trials, out, progress)
    reused = list(records)
    if reused:
        progress(f"{len(reused)} of {len(trials)} trial(s) already finished under {out / TRIALS_DIR}: read back")
    ran: list[str] = []
    t0 = time.perf_counter()

    def finished(rec: dict) -> None:
        trial = Trial.from_dict(rec["trial"])
        atomic_write_bytes(record_path(out, trial), (dumps(rec) + "\n").encode())  # strict JSON
        records[trial.id] = rec
        ran.append(trial.id)
        progress(f"[{len(ran)}/{len(todo)}] {trial.id}: top-1 {rec['top1']:.4f} in {rec['wall_s']:.1f} s "
                 f"({time.perf_counter() - t0:.0f} s elapsed)")

    try:
        if todo:
            where = f"Ray at {ray_address}" if ray_address is not None else f"{min(workers, len(todo))} local worker(s)"
            progress(f"running {len(todo)} trial(s) on {where}")
            if ray_address is not None:
                with quiet_stdout():  # stdout is --json's
                    _run_ray(ray, todo, finished)
            else:
                _run_pool(todo, out / WORK_DIR, workers, finished)
    finally:
        if ray_address is not None and owned:
            ray.shutdown()
    return {"records": {t.id: records[t.id] for t in trials}, "ran": ran, "reused": reused}


def _run_pool(todo: list[Trial], work: Path, workers: int, finished) -> None:
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from multiprocessing import get_context

    # spawn: a fresh interpreter per worker (forking a process that holds torch's thread pools is unsafe)
    pool = ProcessPoolExecutor(max_workers=min(workers, len(todo)), mp_context=get_context("spawn"))
    try:
        futures = {pool.submit(run_trial, t.to_dict(), str(work)): t for t in todo}
        while futures:
            done, _ = wait(futures, return_when=FIRST_COMPLETED)
            for f in done:
                trial = futures.pop(f)
                try:
                    rec = f.result()
                except Exception as e:  # noqa: BLE001 - a failed trial fails the study, in one line
                    raise ZooError(f"trial {trial.id} failed: {type(e).__name__}: {str(e)[:300]}") from None
                finished(rec)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    with contextlib.suppress(OSError):
        work.rmdir()  # empty once every trial has finished


def _run_ray(ray, todo: list[Trial], finished) -> None:
    """One Ray task per trial (1 CPU each); a trial that fails fails the study, in one line."""
    task = ray.remote(num_cpus=1, max_retries=0)(run_trial)
    try:
        refs = {task.remote(t.to_dict(), None): t for t in todo}  # no shared disk assumed: temp work dirs
        while refs:
            done, _ = ray.wait(list(refs), num_returns=1)
            trial = refs.pop(done[0])
            try:
                rec = ray.get(done[0])
            except Exception as e:  # noqa: BLE001
                raise ZooError(f"trial {trial.id} failed on Ray: {type(e).__name__}: {str(e).splitlines()[0][:300]}") \
                    from None
            finished(rec)
    finally:
        for r in refs:
            ray.cancel(r, force=True)
