"""The shell blocks of a Markdown page, and the rule that says which of them a test runs.

Every ```sh (or ```bash) block runs, in order, in one bash session per page, except a block right
after a line ``<!-- readme-test: skip: REASON -->`` (blank lines may sit between the two): what
cannot run here (an install, CI itself, an upload to a hosted service, a GPU machine, hours of
training), with the reason said there. tests/test_readme.py runs README.md's blocks and
tests/test_docs_blocks.py those of docs/*.md.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.S | re.M)
SKIP = re.compile(r"<!-- readme-test: skip: (.+?) -->\s*$")
SHELLS = ("sh", "bash")


def shell_blocks(path: Path) -> list[tuple[str, str | None]]:
    """``[(code, skip reason or None)]`` of the file's ```sh blocks, in order."""
    text = path.read_text()
    out = []
    for m in FENCE.finditer(text):
        if m.group(1) not in SHELLS:
            continue
        before = text[:m.start()].rstrip("\n").rsplit("\n", 1)[-1]
        skip = SKIP.search(before)
        out.append((m.group(2), skip.group(1) if skip else None))
    return out


def clean_env(tmp: Path) -> dict[str, str]:
    """The environment a new user has: no ZOO_ settings, a private HOME and cache, no proxies for
    the servers the tests start on 127.0.0.1."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZOO_")}
    env.update(ZOO_CACHE=str(tmp / "cache"), HOME=str(tmp / "home"), NO_PROXY="127.0.0.1,localhost",
               no_proxy="127.0.0.1,localhost")
    return env


def quickstart_artifacts(dest: Path, built: Path) -> Path:
    """``dest/artifacts``: a copy of the session's quick-start build (conftest's ``quickstart_build``)."""
    shutil.copytree(built, dest / "artifacts", symlinks=True)
    return dest / "artifacts"


def run_script(script: str, cwd: Path, env: dict[str, str], timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)
