"""A publish is serialised under concurrency and all-or-nothing under kill -9 (issue 32, items 10-11).

Real ``zoo publish`` processes: two started together into one mirror, and one killed with SIGKILL
at each of its writes in turn (a wrapper counts the publisher's atomic writes and copies and kills
its own process at the Nth: no hook in the zoo). After each kill the mirror serves what it served
before or the new version, verified, and the next publish completes it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hub_server import MODEL, MODEL_PATH, built, hub_env  # noqa: F401
from test_releases import keys, retrained  # noqa: F401 - session fixtures

from zoo import hub

WRAPPER = textwrap.dedent("""
    import os, signal, sys
    from zoo.hub import paths
    n = [0]
    stop = int(os.environ["KILL_AT"])
    def counted(fn):
        def wrapper(*a, **kw):
            n[0] += 1
            if n[0] == stop:
                os.kill(os.getpid(), signal.SIGKILL)
            return fn(*a, **kw)
        return wrapper
    paths.Dir.write_atomic = counted(paths.Dir.write_atomic)
    paths.copy_verified = counted(paths.copy_verified)
    import zoo.hub.publication, zoo.hub.publish
    zoo.hub.publication.copy_verified = paths.copy_verified
    zoo.hub.publish.copy_verified = paths.copy_verified
    from zoo.cli import main
    sys.argv = ["zoo", *sys.argv[1:]]
    try:
        main()
    finally:
        print(f"WRITES {n[0]}", file=sys.stderr)
""")


def publish_proc(args, env, kill_at=0):
    return subprocess.run([sys.executable, "-c", WRAPPER, "publish", *map(str, args)], capture_output=True,
                          text=True, env=dict(env, KILL_AT=str(kill_at)), timeout=120)


@pytest.fixture
def env(tmp_path):
    e = {k: v for k, v in os.environ.items() if not k.startswith("ZOO_")}
    e.update(ZOO_CONFIG=str(tmp_path / "config"), HOME=str(tmp_path / "home"))
    return e


def versions(mirror: Path) -> list[tuple[int, str]]:
    rows = hub.list_versions(mirror)[MODEL]
    return [(v["version"], v["digest"]) for v in rows]


def test_two_concurrent_publishes_are_serialised_and_neither_build_is_lost(built, retrained, keys, env, tmp_path):
    for attempt in range(2):
        mirror = tmp_path / f"mirror{attempt}"
        procs = [subprocess.Popen([sys.executable, "-c", WRAPPER, "publish", "--artifacts", str(art), "--to",
                                   str(mirror), "--sign-key", keys["a"]["private_key"], "--json"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  env=dict(env, KILL_AT="0"))
                 for art in (built, retrained)]
        outs = [p.communicate(timeout=120) for p in procs]
        assert [p.returncode for p in procs] == [0, 0], outs
        claimed = sorted({r["version"] for out, _ in outs for r in json.loads(out)["files"] if r.get("new_version")})
        assert claimed == [1, 2]  # each claims its own version: none overwritten, none lost
        got = versions(mirror)
        assert [v for v, _ in got] == [1, 2] and got[0][1] != got[1][1]
        for v in (1, 2):
            res = hub.pull([f"{MODEL}@{v}"], mirror, cache_dir=tmp_path / f"c{attempt}", trust=keys["a"]["public_key"])
            assert res[0].trust == "verified"


def test_a_publish_killed_at_any_write_leaves_the_mirror_as_it_was_or_completable(built, retrained, keys, env,
                                                                                  tmp_path):
    base = tmp_path / "base"
    hub.publish(built, base, sign_key=keys["a"]["private_key"], license="MIT")
    args = ["--artifacts", retrained, "--sign-key", keys["a"]["private_key"], "--license", "MIT"]
    probe = tmp_path / "probe"
    shutil.copytree(base, probe)
    res = publish_proc([*args, "--to", probe], env)
    assert res.returncode == 0, res.stderr
    total = int(res.stderr.rsplit("WRITES ", 1)[1].split()[0])
    assert total >= 8  # blobs, the version manifest, its signature, metadata, the latest files, the manifest
    clean = versions(probe)
    old_model = (base / MODEL_PATH).read_bytes()
    new_model = (retrained / MODEL_PATH).read_bytes()
    for k in range(1, total + 1):
        mirror = tmp_path / f"killed{k}"
        shutil.copytree(base, mirror)
        res = publish_proc([*args, "--to", mirror], env, kill_at=k)
        assert res.returncode == -signal.SIGKILL, (k, res.stderr)
        # Meanwhile a trusted client sees the old release or the new one, whole.
        got = hub.pull([MODEL], mirror, cache_dir=tmp_path / f"c{k}", trust=keys["a"]["public_key"])[0]
        assert got.path.read_bytes() in (old_model, new_model), k
        # The next publish completes it: the same versions as a publish never killed.
        res = publish_proc([*args, "--to", mirror], env)
        assert res.returncode == 0, (k, res.stderr)
        assert versions(mirror) == clean, k
        assert (mirror / MODEL_PATH).read_bytes() == new_model
        assert not list(mirror.rglob(".zoo-tmp-*")), k
        shutil.rmtree(mirror)
