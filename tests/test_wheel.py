"""The installed wheel, not the editable checkout: the light client works from it alone.

.ci/run builds the wheel once (``python -m build --wheel``) and names it in ``$ZOO_WHEEL``; without
it (a developer's run) the session fixture builds one. The wheel is installed with its core
dependencies only, into a fresh virtual environment without the system's site-packages, and run
from a folder outside the checkout, so nothing can come from the repository or from the builder's
toolchain (torch is not even installed there).
"""

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import ROOT

DIST = "dense_zoo"
# Files that are data, not modules, and that the installed package needs: the manifest schema
# (every manifest read is validated against it) and the Node.js scripts of zoo verify --runtimes node,web.
DATA_FILES = ("zoo/schema/manifest.schema.json", "zoo/verify/node/verify.mjs", "zoo/verify/node/predict.mjs",
              "zoo/verify/node/package.json", "zoo/verify/node/package-lock.json")


@pytest.fixture(scope="session")
def wheel(tmp_path_factory) -> Path:
    given = os.environ.get("ZOO_WHEEL")
    if given:
        return Path(given)
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run([sys.executable, "-m", "build", "--wheel", "--outdir", str(out), str(ROOT)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    (whl,) = out.glob(f"{DIST}-*.whl")
    return whl


@pytest.fixture(scope="session")
def installed(wheel, tmp_path_factory) -> Path:
    """A venv with the wheel and its core dependencies (pinned by constraints.txt), nothing else."""
    venv = tmp_path_factory.mktemp("wheel-venv") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    # This environment's pip installs into the new one (no pip of its own to bootstrap).
    proc = subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "-q",
                           "--no-compile", "--disable-pip-version-check", "-c", str(ROOT / "constraints.txt"),
                           str(wheel)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return venv


def test_the_wheel_holds_the_schema_and_the_node_scripts(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert set(DATA_FILES) <= names
    meta = next(n for n in names if n.endswith(".dist-info/METADATA"))
    text = zipfile.ZipFile(wheel).read(meta).decode()
    assert "Name: dense-zoo" in text.splitlines()  # never the unrelated `zoo` of the package index
    # The license as an SPDX expression with its text (PEP 639), not the deprecated TOML table.
    assert "License-Expression: Apache-2.0" in text.splitlines() and "License-File: LICENSE" in text.splitlines()
    assert meta.replace("METADATA", "licenses/LICENSE") in names
    assert "Requires-Dist: torch" not in text.split("Provides-Extra: build")[0]  # torch only in the build extra


def test_the_installed_wheel_pulls_and_lists_models_without_torch(installed, small_build, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{installed / 'bin'}{os.pathsep}{env.get('PATH', '')}"

    def zoo(*args):
        proc = subprocess.run([str(installed / "bin" / "zoo"), *args], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    models = json.loads(zoo("models", "--from", str(small_build), "--json"))
    assert [m["name"] for m in models] == ["dense_b0"]
    pulled = json.loads(zoo("pull", "dense_b0", "--from", str(small_build), "--cache-dir", str(tmp_path / "c"),
                            "--json"))
    assert [p["status"] for p in pulled] == ["downloaded"]
    assert (tmp_path / "c" / "models" / "dense_b0" / "dense_b0" / "model.onnx").is_file()
    # The pull validated the manifest against the schema read from the package; the Node.js scripts
    # are where zoo.verify.js looks for them.
    probe = ("import importlib.util, json, zoo, zoo.hub, zoo.verify.js as js, zoo.builder.manifest as mf; "
             "print(json.dumps({'zoo': zoo.__file__, 'torch': importlib.util.find_spec('torch') is not None, "
             "'node': (js.NODE_DIR / 'verify.mjs').is_file(), 'schema': bool(mf.schema()['$defs'])}))")
    proc = subprocess.run([str(installed / "bin" / "python"), "-c", probe], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert Path(got["zoo"]).is_relative_to(installed)  # the installed copy, not the checkout
    assert got["torch"] is False and got["node"] is True and got["schema"] is True
