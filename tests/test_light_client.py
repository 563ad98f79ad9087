"""The light client: pulling and listing models loads neither torch nor onnxscript."""

import json
import subprocess
import sys

from conftest import ROOT

HEAVY = ("torch", "onnxscript", "onnx_ir")

SCRIPT = r"""
import json, sys
import zoo.hub
from zoo.cli import cli

def run(*args):
    try:
        cli.main(list(args), prog_name="zoo")
    except SystemExit as e:
        if e.code not in (0, None):
            raise
run("pull", "--help")
run("models", "--from", sys.argv[1], "--json")
run("cache", "list", "--cache-dir", sys.argv[2])
run("pull", "dense_b0", "--from", sys.argv[1], "--cache-dir", sys.argv[2], "--json")
run("cache", "verify", "--cache-dir", sys.argv[2])
run("info", sys.argv[1] + "/dense_b0/model.onnx")
run("list")
print(json.dumps({m: m in sys.modules for m in %r}))
""" % (HEAVY,)


def test_pull_models_cache_and_info_load_no_torch(small_build, tmp_path):
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(small_build), str(tmp_path / "cache")], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    loaded = json.loads(proc.stdout.strip().splitlines()[-1])
    assert loaded == {m: False for m in HEAVY}
    assert (tmp_path / "cache" / "models" / "dense_b0" / "dense_b0" / "model.onnx").is_file()


def test_import_zoo_hub_loads_no_torch():
    code = "import sys, zoo.hub, zoo.spec, zoo.errors; print([m for m in %r if m in sys.modules])" % (HEAVY,)
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
