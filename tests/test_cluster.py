"""zoo train --ray-address: the family trained as Ray tasks on a real local cluster (a head and a
worker node started by `ray start`, each with one CPU), against the same variants trained locally."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from conftest import ROOT, zoo_cmd

from zoo.fsutil import sha256_file
from zoo.model.train import Recipe, read_checkpoint_meta, train

# Two small variants, two epochs over 600 samples: the second epoch lasts long enough to kill its worker.
ARGS = ["train", "dense_b0", "dense_b1", "--epochs", "2", "--samples", "600"]
# A cluster of our own: no usage reports, and no token authentication from a ~/.ray/auth_token that
# another Ray user of this home may have left (the worker node would not be let in).
ENV = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH_")} | {
    "PYTHONPATH": str(ROOT), "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
READY = "Ray runtime started"


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _ray_start(args: list[str], log: Path) -> subprocess.Popen:
    """`ray start ... --block` as our own child (its own process group); returns once the node runs."""
    p = subprocess.Popen([sys.executable, "-m", "ray.scripts.scripts", "start", *args, "--block"], env=ENV,
                         stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 120
    while READY not in log.read_text():
        assert p.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
        time.sleep(0.2)
    return p


def _node_ports() -> list[str]:
    """Every port a node would otherwise take from a fixed default (so that other Ray sessions on
    this machine do not collide with ours)."""
    names = ["--node-manager-port", "--object-manager-port", "--dashboard-agent-listen-port",
             "--dashboard-agent-grpc-port", "--metrics-export-port", "--runtime-env-agent-port"]
    return [a for n, p in zip(names, _free_ports(len(names))) for a in (n, str(p))]


@pytest.fixture(scope="module")
def ray_cluster():
    temp = Path(tempfile.mkdtemp(prefix="zr", dir="/tmp"))  # short: Ray's socket paths live under it
    port, client, dashboard = _free_ports(3)
    common = ["--node-ip-address", "127.0.0.1", "--num-cpus", "1", "--disable-usage-stats"]
    procs = []
    try:
        procs.append(_ray_start(["--head", "--port", str(port), "--ray-client-server-port", str(client),
                                 "--include-dashboard", "false", "--dashboard-port", str(dashboard), "--temp-dir", str(temp), *common, *_node_ports()],
                                temp / "head.log"))
        procs.append(_ray_start(["--address", f"127.0.0.1:{port}", *common, *_node_ports()], temp / "worker.log"))
        yield {"address": f"127.0.0.1:{port}", "procs": procs}
    finally:
        tree = [c for p in procs for c in _descendants(p.pid)]
        for p in procs:
            with _gone():
                os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with _gone():
                    os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        for pid in tree:  # anything of ours that outlived its `ray start`, by pid
            with _gone():
                os.kill(pid, signal.SIGKILL)
        import shutil

        shutil.rmtree(temp, ignore_errors=True)


class _gone:
    """Ignore a process that has already exited."""

    def __enter__(self):
        return self

    def __exit__(self, kind, value, tb):
        return kind is not None and issubclass(kind, (ProcessLookupError, FileNotFoundError))


def _processes() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line), from /proc (Linux; psutil is not a dependency)."""
    out = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
                ppid = int(stat[stat.rindex(")") + 2:].split()[1])
                out[int(d.name)] = (ppid, (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
            except (OSError, ValueError):
                continue
    return out


def _descendants(pid: int) -> list[int]:
    procs, found, todo = _processes(), [], [pid]
    while todo:
        parent = todo.pop()
        kids = [p for p, (pp, _) in procs.items() if pp == parent]
        found += kids
        todo += kids
    return found


def _task_process(cluster, title: str) -> int | None:
    """The pid of the cluster's worker process running the task named ``title`` (its process title)."""
    procs = _processes()
    for pid in (c for proc in cluster["procs"] for c in _descendants(proc.pid)):
        if pid in procs and procs[pid][1].strip() == f"ray::{title}":
            return pid
    return None


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    out = tmp_path_factory.mktemp("local")
    r = subprocess.run(zoo_cmd(*ARGS, "--threads", "1", "--out", str(out), "--json"), cwd=ROOT, env=ENV,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    return out, {m["model"]: m for m in json.loads(r.stdout)["models"]}


def test_ray_training_survives_a_killed_worker_and_matches_local_training(ray_cluster, local, tmp_path):
    out = tmp_path / "ray"
    err = tmp_path / "stderr"
    proc = subprocess.Popen(zoo_cmd(*ARGS, "--out", str(out), "--ray-address", ray_cluster["address"], "--json"),
                            cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=err.open("w"), text=True)
    ckpt, victim, before = out / "dense_b0.ckpt.safetensors", None, None
    deadline = time.monotonic() + 300
    while victim is None and proc.poll() is None and time.monotonic() < deadline:
        victim = _task_process(ray_cluster, "train dense_b0 epoch 2")  # submitted once epoch 1 is on disk
        if victim is None:
            time.sleep(0.02)
    assert victim is not None, err.read_text()
    os.kill(victim, signal.SIGKILL)  # mid-epoch: the worker process dies, its node lives
    before = read_checkpoint_meta(ckpt)
    stdout, _ = proc.communicate(timeout=600)
    stderr = err.read_text()
    assert proc.returncode == 0, stderr
    assert before["epoch"] == 1 and "dense_b0: its Ray worker died" in stderr
    assert "resuming after epoch 1" in stderr
    records = {m["model"]: m for m in json.loads(stdout)["models"]}
    # resumed from its last epoch: epoch 1 was not trained again (the same record of it, to the wall time)
    assert records["dense_b0"]["history"][0] == before["history"][0]
    _, local_records = local
    for name, rec in records.items():
        # one thread in both, on the same machine: the same bits
        assert rec["threads"] == local_records[name]["threads"] == 1
        assert rec["weights"]["sha256"] == local_records[name]["weights"]["sha256"] == sha256_file(
            out / f"{name}.safetensors")
        assert [h["loss"] for h in rec["history"]] == [h["loss"] for h in local_records[name]["history"]]
        assert json.loads((out / f"{name}.train.json").read_text()) == rec
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in local[0].iterdir())  # no checkpoint left


def test_ray_resume_continues_a_local_checkpoint(ray_cluster, tmp_path):
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        full = train("dense_b0", tmp_path / "full", Recipe(epochs=2), samples=300)
        assert train("dense_b0", tmp_path / "ray", Recipe(epochs=2), samples=300, stop_after=1) is None
    finally:
        torch.set_num_threads(threads)
    args = ["train", "dense_b0", "--epochs", "2", "--samples", "300", "--out", str(tmp_path / "ray"),
            "--ray-address", ray_cluster["address"]]
    r = subprocess.run(zoo_cmd(*args), cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1].startswith("Error: zoo train:")
    assert "an interrupted run; continue it with --resume" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run(zoo_cmd(*args, "--resume", "--json"), cwd=ROOT, env=ENV, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    assert "dense_b0: resuming after epoch 1" in r.stderr
    [rec] = json.loads(r.stdout)["models"]
    assert rec["weights"]["sha256"] == full["weights"]["sha256"]  # one thread each: the uninterrupted run's bits
    assert [h["loss"] for h in rec["history"]] == [h["loss"] for h in full["history"]]


def test_an_unreachable_ray_address_is_one_line(tmp_path):
    [port] = _free_ports(1)
    r = subprocess.run(zoo_cmd("train", "dense_b0", "--out", str(tmp_path / "x"), "--ray-address", f"127.0.0.1:{port}"),
                       cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "cannot connect" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "x").exists()
