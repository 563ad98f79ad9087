"""docs/languages.md, run as a user runs it after the README's quick start (`zoo build --all` into
artifacts/): every example command of the page (Node, C, C++, the browser page) runs from a
repository layout whose artifacts/dense_b0 is what the quick start writes, and prints exactly
the sample output shown under it.

Only dense_b0 is built (full size, fp32 and int8, as `zoo build dense_b0 --precision fp32,int8` does),
and its files are checked against the committed artifacts/SHA256SUMS first: the same bytes as in
a full `zoo build --all --precision fp32,int8`, so the outputs are the user's.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from zoo.builder.artifact import request_for
from zoo.builder.pipeline import build
from zoo.builder.steps import precision_extra
from zoo.verify import c, js

from tamper import sha256_file
from test_browser import ORT_DIST, Chromium, chromium_executable, serve
from test_c import make

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "languages.md"
PROGRAMS = ("node examples/node/classify.mjs", "examples/c/classify", "examples/cpp/classify")


def sh_blocks(text: str) -> list[list[str]]:
    """The ```sh blocks of a Markdown page, backslash continuations joined."""
    blocks = re.findall(r"^```sh\n(.*?)^```", text, flags=re.M | re.S)
    return [block.replace("\\\n", " ").splitlines() for block in blocks]


def documented_runs() -> list[tuple[str, list[str]]]:
    """(command, the `# ` lines shown under it) for every example command of the page."""
    runs = []
    for lines in sh_blocks(DOC.read_text()):
        for i, line in enumerate(lines):
            if line.startswith(PROGRAMS):
                shown = []
                for after in lines[i + 1:]:
                    if not after.startswith("# "):
                        break
                    shown.append(after[2:])
                runs.append((re.sub(r"\s+", " ", line.split("  #")[0]).strip(), shown))
    return runs


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """A repository after the quick start: artifacts/dense_b0 built, the examples built / installed."""
    for example in ("c", "cpp"):
        make(example)
        assert c.c_available(example) is None, c.c_available(example)
    js_missing = js.js_available("node")
    assert js_missing is None, js_missing
    repo = tmp_path_factory.mktemp("repo")
    # `zoo build dense_b0 --precision fp32,int8`, in process and without the parity matrix (the bytes are the same)
    (result,) = build([request_for("dense_b0")], repo / "artifacts", extras=[precision_extra(("fp32", "int8"), verify=False)])
    assert result.status == "ok", result.error
    recorded = {}
    for line in (ROOT / "artifacts" / "SHA256SUMS").read_text().splitlines():
        if line and not line.startswith("#"):
            digest, path = line.split()
            recorded[path] = digest
    for path in ("dense_b0/model.onnx", "dense_b0/model.int8.onnx", "dense_b0/test_data_set_0/input_0.pb",
                 "dense_b0/test_data_set_0/output_0.pb"):
        assert sha256_file(repo / "artifacts" / path) == recorded[path], path
    (repo / "examples" / "node").mkdir(parents=True)
    shutil.copy(ROOT / "examples" / "node" / "classify.mjs", repo / "examples" / "node")
    (repo / "examples" / "node" / "node_modules").symlink_to(js.NODE_DIR / "node_modules")  # as `npm ci` would
    for example in ("c", "cpp"):
        (repo / "examples" / example).symlink_to(ROOT / "examples" / example)
    (repo / "examples" / "browser").mkdir()
    shutil.copy(ROOT / "examples" / "browser" / "index.html", repo / "examples" / "browser")
    (repo / "examples" / "browser" / "ort").symlink_to(ORT_DIST)  # the page's `cp -r .../dist examples/browser/ort`
    return repo


def test_the_page_shows_runs_of_every_example():
    runs = documented_runs()
    assert sum(cmd.startswith("node ") for cmd, _ in runs) >= 2 and sum("examples/c/" in cmd for cmd, _ in runs) >= 3
    assert all(shown for _, shown in runs), runs  # each with its output
    assert any("--sha256" in cmd for cmd, _ in runs if cmd.startswith("node "))
    assert any("--sha256" in cmd for cmd, _ in runs if "examples/c/" in cmd)


@pytest.mark.parametrize("index", range(len(documented_runs())))
def test_each_documented_command_prints_what_the_page_shows(repo, index):
    command, shown = documented_runs()[index]
    commands = [command]
    if command.startswith("examples/c/"):  # "make -C examples/c  # and/or: make -C examples/cpp": the same
        commands.append(command.replace("examples/c/", "examples/cpp/", 1))
    for cmd in commands:
        proc = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, cwd=repo, timeout=120,
                              env={"PATH": f"{Path(js.node_executable()).parent}:/usr/bin:/bin"})
        assert proc.returncode == 0 and proc.stderr == "", (cmd, proc.stderr)
        expected = shown if "examples/cpp/" not in cmd else [s.replace("C API", "C++ API") for s in shown]
        assert proc.stdout.splitlines() == expected, cmd


def test_the_browser_page_shows_what_the_page_shows(repo, tmp_path):
    block = next(lines for lines in sh_blocks(DOC.read_text()) if any("examples/browser/index.html" in x for x in lines))
    opened = next(x for x in block if x.startswith("# open "))
    url = opened.split()[2]
    status = next(x for x in block if x.startswith("# Status: "))
    assert url.startswith("http://127.0.0.1:8000/examples/browser/index.html?") and "sha256=" in url
    chrome = Chromium(chromium_executable(), tmp_path / "profile", tmp_path / "chromium.log")
    try:
        chrome.call("Browser.getVersion", timeout=60)
        with serve({"/": repo}) as (base, _):  # `python3 -m http.server` from the repository root
            dom = chrome.open(url.replace("http://127.0.0.1:8000", base))
    finally:
        chrome.close()
    assert f"Status: {dom['text']} {dom['summary']}" == status[2:], dom


def test_the_tolerances_the_page_quotes_are_the_verifiers():
    text = re.sub(r"\s+", " ", DOC.read_text())
    assert f"`node verify/node/verify.mjs ARTIFACTS {' '.join(js.tolerance_args())}`" in text
