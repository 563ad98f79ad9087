"""zoo publish / pull / models / cache: CliRunner for every command, subprocesses for what needs them
(two pulls at once, a pull killed half-way), and the end-to-end path build -> publish -> serve ->
pull -> zoo verify."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from hub_server import (  # noqa: F401 - fixtures
    MODEL,
    MODEL_PATH,
    TEST_IN,
    TEST_OUT,
    built,
    files_under,
    hub_env,
    mirror,
    server,
    serving,
    snapshot,
)

from zoo import hub
from zoo.builder import manifest as mf
from zoo.cli import cli
from zoo.fsutil import TMP_PREFIX, sha256_file


def run(*args, env=None):
    return CliRunner().invoke(cli, [str(a) for a in args], env=env, catch_exceptions=False)


def one_line_error(result) -> str:
    """The failure is one line on stderr, after any progress, and never a traceback."""
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and result.stderr.rstrip().splitlines()[-1] == errors[0], result.stderr
    return errors[0]


def sha(root: Path, path: str) -> str:
    return next(f["sha256"] for f in mf.load(root)["models"][0]["files"] if f["path"] == path)


@pytest.mark.parametrize("command", [["publish"], ["pull"], ["models"], ["cache"], ["cache", "list"],
                                     ["cache", "verify"], ["cache", "clear"]])
def test_every_command_has_help_with_examples(command):
    result = run(*command, "--help")
    assert result.exit_code == 0
    assert "Examples:" in result.output and f"zoo {' '.join(command)}" in result.output


def test_publish_then_models_and_pull_over_http(built, tmp_path):
    dest, cache = tmp_path / "mirror", tmp_path / "cache"
    result = run("publish", "--artifacts", built, "--to", dest)
    assert result.exit_code == 0, result.output
    assert "published 3 file(s), 0 unchanged" in result.stdout
    again = run("publish", "--artifacts", built, "--to", dest, "--json")
    assert {f["status"] for f in json.loads(again.stdout)["files"]} == {"unchanged"}

    with serving(dest) as srv:
        listing = run("models", "--from", srv.url)
        assert listing.exit_code == 0 and MODEL in listing.stdout and "fp32" in listing.stdout
        rows = json.loads(run("models", "--from", srv.url, "--json").stdout)
        assert [r["name"] for r in rows] == [MODEL]

        pulled = run("pull", MODEL, "--from", srv.url, "--cache-dir", cache, "--json")
        assert pulled.exit_code == 0, pulled.output
        (out,) = json.loads(pulled.stdout)
        assert out["status"] == "downloaded" and Path(out["path"]) == cache / "models" / MODEL / MODEL_PATH
        assert sha256_file(out["path"]) == sha(dest, MODEL_PATH)
        assert "fetching dense_b0/model.onnx" in pulled.stderr  # progress on stderr, JSON alone on stdout

        table = run("pull", MODEL, "--from", srv.url, "--cache-dir", cache)
        assert table.exit_code == 0 and "cached" in table.stdout and str(cache) in table.stdout
        assert srv.count(MODEL_PATH) == 1


def test_pull_all_with_test_data_from_a_folder(mirror, tmp_path):
    cache = tmp_path / "cache"
    result = run("pull", "--all", "--from", mirror, "--with-test-data", "--cache-dir", cache, "--json")
    assert result.exit_code == 0, result.output
    assert [r["name"] for r in json.loads(result.stdout)] == [MODEL]
    assert files_under(cache / "models" / MODEL) == sorted(["manifest.json", MODEL_PATH, TEST_IN, TEST_OUT])


def test_source_and_cache_come_from_the_environment(server, tmp_path):
    cache = tmp_path / "env-cache"
    result = run("pull", MODEL, env={"ZOO_SOURCE": server.url, "ZOO_CACHE": str(cache)})
    assert result.exit_code == 0, result.output
    assert (cache / "models" / MODEL / MODEL_PATH).is_file()
    listed = run("cache", "list", "--json", env={"ZOO_CACHE": str(cache)})
    assert [m["name"] for m in json.loads(listed.stdout)["models"]] == [MODEL]


def test_bad_input_exits_2(server, tmp_path):
    for args in (["pull"], ["pull", MODEL, "--all"], ["pull", MODEL, "--from", "ftp://example.invalid/"],
                 ["pull", MODEL, "--precision", "fp64"], ["publish", "--artifacts", tmp_path]):
        result = run(*args, "--cache-dir", tmp_path / "cache") if args[0] == "pull" else run(*args)
        assert result.exit_code == 2, (args, result.output)
        assert "Traceback" not in result.output
    assert not (tmp_path / "cache").exists()


def test_unknown_model_is_one_line_listing_the_offer_and_the_cache_is_unchanged(server, tmp_path):
    cache = tmp_path / "cache"
    run("pull", MODEL, "--from", server.url, "--cache-dir", cache)
    before = snapshot(cache)
    result = run("pull", "dense_b9", "--from", server.url, "--cache-dir", cache)
    assert result.exit_code == 2  # an unknown name is bad input
    assert "'dense_b9' is not offered" in one_line_error(result) and "it offers: dense_b0" in result.stderr
    assert snapshot(cache) == before


def test_unreachable_source_is_one_line(tmp_path, monkeypatch):
    with serving(tmp_path) as srv:
        url = srv.url
    result = run("pull", MODEL, "--from", url, "--cache-dir", tmp_path / "cache")
    assert result.exit_code == 1
    assert "connection refused" in one_line_error(result)
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize("raw, message", [(b"{oops", "not valid JSON"),
                                          (b'{"schema_version": 3, "models": []}', "unknown schema_version 3")])
def test_a_malformed_manifest_is_one_line(server, tmp_path, raw, message):
    server.overrides["manifest.json"] = raw
    result = run("pull", MODEL, "--from", server.url, "--cache-dir", tmp_path / "cache")
    assert result.exit_code == 1 and message in one_line_error(result)
    assert not (tmp_path / "cache").exists()


def test_a_tampered_download_is_one_line_and_leaves_the_cache_unchanged(server, tmp_path):
    cache = tmp_path / "cache"
    run("pull", MODEL, "--from", server.url, "--cache-dir", cache)
    before = snapshot(cache)
    server.set(TEST_IN, "tamper")
    result = run("pull", MODEL, "--with-test-data", "--from", server.url, "--cache-dir", cache)
    assert result.exit_code == 1 and "sha256" in one_line_error(result)
    assert snapshot(cache) == before


def test_offline_pull_uses_the_cache_or_fails_clearly_without_network(server, tmp_path):
    cache = tmp_path / "cache"
    run("pull", MODEL, "--from", server.url, "--cache-dir", cache)
    calls = server.count()
    ok = run("pull", MODEL, "--from", server.url, "--cache-dir", cache, env={"ZOO_OFFLINE": "1"})
    assert ok.exit_code == 0 and "cached" in ok.stdout
    models = run("models", "--from", server.url, "--cache-dir", cache, "--json", env={"ZOO_OFFLINE": "1"})
    assert models.exit_code == 0 and json.loads(models.stdout)[0]["name"] == MODEL
    missing = run("pull", MODEL, "--with-test-data", "--from", server.url, "--cache-dir", cache,
                  env={"ZOO_OFFLINE": "1"})
    assert missing.exit_code == 1 and "ZOO_OFFLINE=1" in one_line_error(missing)
    assert server.count() == calls


def test_cache_list_verify_clear(server, mirror, tmp_path):
    cache = tmp_path / "cache"
    empty = run("cache", "list", "--cache-dir", cache)
    assert empty.exit_code == 0 and "no models cached" in empty.stdout
    run("pull", MODEL, "--with-test-data", "--from", server.url, "--cache-dir", cache)
    listed = run("cache", "list", "--cache-dir", cache)
    assert listed.exit_code == 0 and MODEL in listed.stdout and "3 blob(s)" in listed.stdout

    verified = run("cache", "verify", "--cache-dir", cache)
    assert verified.exit_code == 0 and "all 6 cached file(s) verified" in verified.stdout
    (cache / "models" / MODEL / MODEL_PATH).write_bytes(b"bad")
    failed = run("cache", "verify", "--cache-dir", cache, "--json")
    assert failed.exit_code == 1 and json.loads(failed.stdout)["failures"] == 1
    assert "1 of 6 cached file(s) failed verification" in one_line_error(failed)
    # Pulling again repairs it.
    run("pull", MODEL, "--from", server.url, "--cache-dir", cache)
    assert run("cache", "verify", "--cache-dir", cache).exit_code == 0

    unknown = run("cache", "clear", "dense_b5", "--cache-dir", cache)
    assert unknown.exit_code == 2 and "not in the cache" in one_line_error(unknown)  # bad input
    cleared = run("cache", "clear", "--cache-dir", cache, "--json")
    assert cleared.exit_code == 0 and json.loads(cleared.stdout)["files"] == 8  # 3 blobs, 4 view, 1 source
    assert files_under(cache) == []


# --------------------------------------------------------------------------------------------------
# Separate processes


def zoo_process(*args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "from zoo.cli import main; main()", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ))


def test_two_processes_pulling_at_once_end_with_one_valid_file_downloaded_once(server, mirror, tmp_path):
    cache = tmp_path / "cache"
    server.set(MODEL_PATH, then="slow:2.5")  # the first download holds the lock for 2.5 s
    procs = [zoo_process("pull", MODEL, "--from", server.url, "--cache-dir", cache, "--json") for _ in range(2)]
    outs = [p.communicate(timeout=90) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert server.count(MODEL_PATH) == 1  # the second waited for the lock, then found the blob
    assert any("waiting for another zoo process" in err for _, err in outs)
    assert sorted(json.loads(out)[0]["status"] for out, _ in outs) == ["cached", "downloaded"]
    blobs = [p for p in (cache / "blobs").rglob("*") if p.is_file()]
    assert len(blobs) == 1 and sha256_file(blobs[0]) == sha(mirror, MODEL_PATH)
    assert sha256_file(cache / "models" / MODEL / MODEL_PATH) == sha(mirror, MODEL_PATH)
    assert list(cache.rglob(TMP_PREFIX + "*")) == []


def test_a_pull_killed_half_way_leaves_nothing_under_a_final_name(server, mirror, tmp_path):
    cache = tmp_path / "cache"
    server.set(MODEL_PATH, then="stall")  # half the body, then silence
    proc = zoo_process("pull", MODEL, "--from", server.url, "--cache-dir", cache)
    deadline = time.monotonic() + 60
    partial = []
    while time.monotonic() < deadline and not partial:
        partial = [p for p in cache.rglob(TMP_PREFIX + "*") if p.stat().st_size > 0]
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert partial, "the download never started"
    assert [p.name.startswith(TMP_PREFIX) for p in (cache / "blobs").rglob("*") if p.is_file()] == [True]
    assert not (cache / "models").exists()
    # The next pull is not disturbed by the leftover, and removes it.
    server.set(MODEL_PATH, then="ok")
    path = hub.load(MODEL, server.url, cache_dir=cache)
    assert sha256_file(path) == sha(mirror, MODEL_PATH)
    assert list(cache.rglob(TMP_PREFIX + "*")) == []


# --------------------------------------------------------------------------------------------------
# End to end


def test_build_publish_serve_pull_then_zoo_verify_passes_on_the_pulled_view(built, tmp_path):
    """`built` is the output of zoo.builder.pipeline.build (what `zoo build dense_b0 --input-dim 64 --no-verify`
    runs); the rest goes through the command line."""
    if "verify" not in cli.commands:
        pytest.fail("zoo verify is not available")
    dest, cache = tmp_path / "mirror", tmp_path / "empty-cache"
    assert run("publish", "--artifacts", built, "--to", dest).exit_code == 0
    with serving(dest) as srv:
        pulled = run("pull", MODEL, "--from", srv.url, "--with-test-data", "--cache-dir", cache, "--json")
    assert pulled.exit_code == 0, pulled.output
    view = Path(json.loads(pulled.stdout)[0]["view"])
    assert view == cache / "models" / MODEL
    result = run("verify", MODEL, "--artifacts", view, "--providers", "CPUExecutionProvider",
                 "--runtimes", "reference", "--batch-sizes", "1,7", "--json")
    assert result.exit_code == 0, result.output
    # zoo verify recorded its parity in the view's manifest; the cached files still verify.
    assert all(r["status"] == "ok" for r in hub.cache_verify(cache))


def test_an_unwritable_cache_or_mirror_is_one_line(server, built, tmp_path):
    (tmp_path / "a-file").write_text("not a folder")
    result = run("pull", MODEL, "--from", server.url, "--cache-dir", tmp_path / "a-file" / "cache")
    assert result.exit_code == 1 and "cannot pull into the cache" in one_line_error(result)
    result = run("publish", "--artifacts", built, "--to", tmp_path / "a-file" / "mirror")
    assert result.exit_code == 1 and "cannot publish" in one_line_error(result)
