"""Every shell block of docs/*.md runs, page by page, as a reader would run it (issue 35).

The rule is README.md's (tests/docs_blocks.py): each ```sh block runs, in order, in one bash session
per page, in a folder holding what the quick start leaves (``artifacts/`` with dense_b0, built once
per session and shared with tests/test_readme.py) and, for the pages that say "from the repository
root", the checkout's ``examples/`` and ``verify/``; a block right after
``<!-- readme-test: skip: REASON -->`` is not run, and says why (an upload to a hosted service, a
GPU machine, hours of training, a server that runs until stopped). What a page needs is started
here on 127.0.0.1 (an OCI registry); what a page leaves for the reader to fill in (a registry's
host, a digest) is filled in from that setup, through PLACEHOLDERS, each of which must still occur
in its page.
"""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

import pytest

from conftest import ROOT
from docs_blocks import clean_env, quickstart_artifacts, run_script, shell_blocks

# Pages not run yet, each with the reason; the lead removes a page from here once it runs.
EXCLUDED: dict[str, str] = {}
PAGES = sorted(p.name for p in (ROOT / "docs").glob("*.md") if p.name not in EXCLUDED)
RUN = [name for name in PAGES if any(reason is None for _, reason in shell_blocks(ROOT / "docs" / name))]


def _script(page: str, placeholders: dict[str, str]) -> str:
    text = "\n".join(code for code, reason in shell_blocks(ROOT / "docs" / page) if reason is None)
    for old, new in placeholders.items():
        assert old in text, f"docs/{page} no longer has {old!r}: update PLACEHOLDERS in this test"
        text = text.replace(old, new)
    return text


@pytest.fixture
def page_work(quickstart_build, tmp_path):
    """A folder as a reader has it after the quick start: artifacts/, and the checkout's examples/
    (examples/node copied, so that its `npm ci` installs there; the rest linked, built by CI) and
    verify/ (its node_modules installed by CI)."""
    work = tmp_path / "work"
    work.mkdir()
    quickstart_artifacts(work, quickstart_build)
    (work / "examples").mkdir()
    for item in (ROOT / "examples").iterdir():
        if item.name == "node":
            (work / "examples" / "node").mkdir()
            for f in ("classify.mjs", "package.json", "package-lock.json"):
                shutil.copy(item / f, work / "examples" / "node" / f)
        else:
            (work / "examples" / item.name).symlink_to(item, target_is_directory=item.is_dir())
    (work / "verify").symlink_to(ROOT / "verify", target_is_directory=True)
    return work, clean_env(tmp_path)


def _run(page: str, work: Path, env: dict, placeholders: dict[str, str] | None = None):
    script = _script(page, placeholders or {})
    proc = run_script(script, work, env, timeout=900)
    assert proc.returncode == 0, f"docs/{page}:\n{script}\n---\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def test_every_page_is_run_or_excluded_by_name():
    assert all((ROOT / "docs" / name).is_file() for name in EXCLUDED), EXCLUDED  # no stale entries
    assert set(RUN) == {"languages.md", "publishing.md", "pulling.md", "releases.md", "reproducibility.md",
                        "study.md"}, RUN
    for name in PAGES:
        for code, reason in shell_blocks(ROOT / "docs" / name):
            assert reason is None or len(reason) > 20, (name, code)  # a skip says why


def test_languages(page_work):
    """Node.js, the web runtime, C and C++ on the quick start's dense_b0: the rows the page shows
    are what the programs print (the int8 rows aside: int8 kernels differ between CPUs)."""
    from zoo.verify import c, js

    missing = [r for r in ("node", "web") if js.js_available(r)] + [r for r in ("c", "cpp") if c.c_available(r)]
    if missing:
        pytest.fail(f"CI installs verify/node and builds the C examples (.ci/run); missing here: {missing}")
    work, env = page_work
    proc = _run("languages.md", work, env)
    shown = [ln.lstrip("# ").strip() for code, reason in shell_blocks(ROOT / "docs" / "languages.md")
             if reason is None and "int8" not in code for ln in code.splitlines() if re.match(r"# row \d+:", ln)]
    assert len(shown) >= 7 and all(row in proc.stdout for row in shown), (shown, proc.stdout[-3000:])
    assert "ONNX Runtime and PyTorch not re-run: only node,web asked for" in proc.stderr


@pytest.fixture
def registry(tmp_path):
    from oci_registry import Registry

    reg = Registry(tmp_path / "registry").start()
    try:
        yield reg
    finally:
        reg.stop()


def test_publishing(page_work, registry):
    """The Hugging Face export (one model, then a {name} pattern), an OCI registry on 127.0.0.1 (push,
    pull by tag, pull by the digest the registry gives), and the Triton export of a build without
    int8, which says what it left out."""
    work, env = page_work
    digest = (f"$(python3 -c \"import urllib.request as u; print(u.urlopen(u.Request('http://{registry.host}"
              "/v2/zoo/dense_b0/manifests/1', method='HEAD', headers={'Accept': "
              "'application/vnd.oci.image.manifest.v1+json'})).headers['Docker-Content-Digest'])\")")
    proc = _run("publishing.md", work, env, {"registry.example.com": registry.host, "sha256:...": digest})
    card = (work / "hf-repos" / "dense_b0" / "README.md").read_text()
    assert "https://huggingface.co/me/dense_b0/resolve/COMMIT/" in card
    assert (work / "hf-repos" / "dense_b0" / "onnx" / "model.onnx").read_bytes() == \
        (work / "artifacts" / "dense_b0" / "model.onnx").read_bytes()
    assert sorted(p.name for p in (work / "model_repository").iterdir()) == ["dense_b0_fp32"]
    assert "note: not exported, not built: int8 of dense_b0" in proc.stderr
    assert (Path(env["ZOO_CACHE"]) / "models" / "dense_b0").is_dir()  # pulled from the registry


def test_reproducibility(page_work):
    work, env = page_work
    shutil.copy(ROOT / "artifacts" / "SHA256SUMS", work / "artifacts" / "SHA256SUMS")
    proc = _run("reproducibility.md", work, env)
    assert "all 4 file(s) match" in proc.stdout  # fp32, int8 and the test data, rebuilt in memory
    assert "dense_b0/model.onnx: OK" in proc.stdout  # the files already built


def test_releases(page_work):
    """Versions, then keys and roles (a signed publish adopting the unsigned version 1, renewal with
    the online key alone), a trusted pull, and a rotation the trusting client follows."""
    work, env = page_work
    env = dict(env, ZOO_CONFIG=str(work / "config"))
    proc = _run("releases.md", work, env)
    assert "dense_b0: version 1 checked against the artifacts folder; signing it" in proc.stderr
    assert (work / "mirror" / "metadata" / "2.root.json").is_file()
    assert "verified" in proc.stdout


def test_pulling(page_work, tmp_path):
    """Pins, a lockfile, trust by root metadata and by root key, the policy, and the upstream
    model_signing check, against a signed mirror of the quick start's build served on 127.0.0.1."""
    from hub_server import serving

    from zoo import hub

    work, env = page_work
    env = dict(env, ZOO_CONFIG=str(work / "config"))
    keys = tmp_path / "keys"
    keys.mkdir()
    made = {k["role"]: k for k in hub.keygen_publisher(keys)}
    mirror = tmp_path / "mirror"
    hub.publish(work / "artifacts", mirror, root_keys=[made["root"]["private_key"]],
                targets_keys=[made["targets"]["private_key"]], online_key=made["online"]["private_key"],
                license="Apache-2.0")
    shutil.copy(mirror / "metadata" / "1.root.json", work / "root.json")
    shutil.copy(made["root"]["public_key"], work / "root.key.pub")
    shutil.copy(made["targets"]["public_key"], work / "targets.key.pub")
    digest = hub.list_versions(mirror)["dense_b0"][0]["digest"]
    with serving(mirror) as srv:
        proc = _run("pulling.md", work, env, {"https://example.org/zoo/": srv.url,
                                              "https://mirror2.example.org/zoo/": srv.url,
                                              "sha256:4f0c...e1": digest, "MIRROR": str(mirror),
                                              "~/.cache/zoo": env["ZOO_CACHE"]})
    assert "Verification succeeded" in proc.stdout + proc.stderr
    assert (work / "zoo.lock").is_file()


def test_study(page_work):
    work, env = page_work
    proc = _run("study.md", work, env)
    assert "dense_phi2_a1.4_b1.1_g1.1" in proc.stdout  # the variant those coefficients give


def test_the_gpu_pages_dry_run_is_the_one_the_gpu_test_runs():
    """docs/gpu.md's dry run is skipped here because tests/test_gpu_check.py runs it: with the same
    options (that test adds --jobs 1)."""
    from test_gpu_check import DRY_ARGS

    (code,) = [code for code, _ in shell_blocks(ROOT / "docs" / "gpu.md") if "--out /tmp/dry" in code]
    words = shlex.split(code.replace("\\\n", " "))
    assert words[:3] == ["python", "-m", "zoo.verify.gpu"]
    opts = words[3:]
    del opts[opts.index("--out"):opts.index("--out") + 2]
    pairs = dict(zip(DRY_ARGS[::2], DRY_ARGS[1::2]))
    assert dict(zip(opts[::2], opts[1::2])).items() <= pairs.items(), (opts, DRY_ARGS)
