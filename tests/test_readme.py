"""README.md's shell blocks run, in order, after its quick start; the documentation's links resolve.

The rule (tests/docs_blocks.py): every ```sh block runs, in one bash session, in a folder holding
what the quick start leaves (``artifacts/``), except a block right after a line
``<!-- readme-test: skip: REASON -->`` (installs and CI; the reason is said there). The quick
start's ``zoo build --all`` is one of those: the session's ``quickstart_build`` builds dense_b0 in
its place (the same defaults, so the same bytes), which keeps it to a minute. docs/*.md's blocks
run the same way in tests/test_docs_blocks.py.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from conftest import ROOT
from docs_blocks import FENCE, clean_env, quickstart_artifacts, run_script, shell_blocks

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_the_readme_says_which_blocks_it_runs():
    blocks = shell_blocks(ROOT / "README.md")
    assert [reason is None for _, reason in blocks].count(True) >= 1
    skipped = [code for code, reason in blocks if reason]
    assert all(re.search(r"pip install|\.ci/run", code) for code in skipped), skipped  # installs and CI only


def test_the_readme_blocks_run_in_order_after_the_quick_start(quickstart_build, tmp_path):
    env = clean_env(tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    quickstart_artifacts(work, quickstart_build)
    shutil.copy(ROOT / "artifacts" / "SHA256SUMS", work / "artifacts" / "SHA256SUMS")
    script = "\n".join(code for code, reason in shell_blocks(ROOT / "README.md") if reason is None)
    proc = run_script(script, work, env)
    assert proc.returncode == 0, f"{script}\n---\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    assert (work / "mirror" / "manifest.json").is_file() and (tmp_path / "cache").is_dir()
    assert re.search(r"^\[\d+ \d+\]$", proc.stdout.strip().splitlines()[-1])  # the Python example's classes


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
