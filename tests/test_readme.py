"""README.md's shell blocks run, in order, after its quick start; the documentation's links resolve.

The rule for README.md: every ```sh block runs, in one bash session, in a folder holding what the
quick start leaves (``artifacts/``), except a block right after a line
``<!-- readme-test: skip: REASON -->`` (installs and CI; the reason is said there). The quick
start's ``zoo build --all`` is one of those: this test builds dense_b0 in its place (the same
defaults, so the same bytes), which keeps it to a minute.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from conftest import ROOT

FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.S | re.M)
SKIP = re.compile(r"<!-- readme-test: skip: (.+?) -->\s*$")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def shell_blocks(path: Path) -> list[tuple[str, str | None]]:
    """``[(code, skip reason or None)]`` of the file's ```sh blocks, in order."""
    text = path.read_text()
    out = []
    for m in FENCE.finditer(text):
        if m.group(1) not in ("sh", "bash"):
            continue
        before = text[:m.start()].rstrip("\n").rsplit("\n", 1)[-1]
        skip = SKIP.search(before)
        out.append((m.group(2), skip.group(1) if skip else None))
    return out


def test_the_readme_says_which_blocks_it_runs():
    blocks = shell_blocks(ROOT / "README.md")
    assert [reason is None for _, reason in blocks].count(True) >= 1
    skipped = [code for code, reason in blocks if reason]
    assert all(re.search(r"pip install|\.ci/run", code) for code in skipped), skipped  # installs and CI only


def test_the_readme_blocks_run_in_order_after_the_quick_start(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZOO_")}
    env.update(ZOO_CACHE=str(tmp_path / "cache"), HOME=str(tmp_path / "home"))
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(ROOT / "artifacts" / "SHA256SUMS", work / "SHA256SUMS.committed")
    # The quick start, for one model: the same defaults as `zoo build --all`.
    build = subprocess.run(["zoo", "build", "dense_b0", "--no-verify", "--no-bench"], cwd=work, env=env,
                           capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-3000:]
    shutil.copy(work / "SHA256SUMS.committed", work / "artifacts" / "SHA256SUMS")
    script = "\n".join(code for code, reason in shell_blocks(ROOT / "README.md") if reason is None)
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=work, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, f"{script}\n---\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    assert (work / "mirror" / "manifest.json").is_file() and (tmp_path / "cache").is_dir()
    assert re.search(r"^\[\d+ \d+\]$", proc.stdout.strip().splitlines()[-1])  # the Python example's classes

    # docs/reproducibility.md: checking the files already built holds after a default build too (the
    # committed SHA256SUMS also lists the int8 files, which only --precision fp32,int8 writes).
    (check,) = [ln.split("#")[0] for code, _ in shell_blocks(ROOT / "docs" / "reproducibility.md")
                for ln in code.splitlines() if "sha256sum -c" in ln]
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", check], cwd=work, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "dense_b0/model.onnx: OK" in proc.stdout


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = FENCE.sub("", path.read_text())
    return {_slug(m.group(1)) for m in re.finditer(r"^#{1,6} (.+)$", text, re.M)}


def test_no_dead_links_in_the_readme_and_the_docs():
    dead = []
    for doc in DOCS:
        for target in LINK.findall(FENCE.sub("", doc.read_text())):
            if re.match(r"^[a-z]+:", target):  # http(s), mailto: not checked offline
                continue
            file, _, anchor = target.partition("#")
            dest = (doc.parent / file).resolve() if file else doc
            if not dest.exists():
                dead.append(f"{doc.relative_to(ROOT)}: {target} (no such file)")
            elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
                dead.append(f"{doc.relative_to(ROOT)}: {target} (no such heading)")
    assert not dead, dead
    assert len(DOCS) >= 10
