"""The edifice flavor and a compound-scaled (--phi) variant through build -> verify -> pull -> verify."""

import json

from click.testing import CliRunner

import zoo
from zoo.builder import manifest as mf
from zoo.cli import cli
from zoo.fsutil import sha256_file


def run(*args):
    r = CliRunner().invoke(cli, [str(a) for a in args])
    assert r.exit_code == 0, r.output
    return r


def test_edifice_and_phi_build_verify_pull(tmp_path):
    out, cache = tmp_path / "zoo", tmp_path / "cache"
    run("build", "dense_b0", "--flavor", "edifice", "--input-dim", "32", "--no-verify", "--no-bench", "--artifacts", out)
    run("build", "--phi", "0.5", "--input-dim", "32", "--no-verify", "--no-bench", "--artifacts", out)
    manifest = mf.load(out)
    by_name = {m["model"]: m for m in manifest["models"]}
    assert set(by_name) == {"dense_b0", "dense_phi0.5"}
    assert by_name["dense_b0"]["flavor"] == "edifice"
    assert by_name["dense_b0"]["params"] == zoo.variant_config("dense_b0", flavor="edifice", input_dim=32).params()
    assert by_name["dense_phi0.5"]["flavor"] == "paper"
    assert by_name["dense_phi0.5"]["params"] == zoo.variant_config(zoo.compound(0.5), input_dim=32).params()

    # verify rebuilds each PyTorch model from its manifest entry (flavor, phi, input_dim, seed)
    r = run("verify", "--all", "--artifacts", out, "--runtimes", "reference,tract", "--batch-sizes", "1,7", "--json")
    records = json.loads(r.stdout)
    assert set(records) == set(by_name)
    for name, recs in records.items():
        assert {x["backend"] for x in recs} >= {"reference", "tract", "onnxruntime:CPUExecutionProvider:all"}
        assert all(x["verdict"] == "pass" for x in recs), (name, recs)
    recorded = {m["model"]: m["parity"] for m in mf.load(out)["models"]}
    assert {n: len(p) for n, p in recorded.items()} == {n: len(r) for n, r in records.items()}

    # pull both from the folder, with test data, and verify the pulled views
    pulled = json.loads(run("pull", "--all", "--from", out, "--with-test-data", "--cache-dir", cache, "--json").stdout)
    assert sorted(p["name"] for p in pulled) == sorted(by_name)
    for name, entry in by_name.items():
        view = cache / "models" / name
        assert sha256_file(view / entry["model_path"]) == entry["metadata"]["model_sha"]
        r = run("verify", name, "--artifacts", view, "--runtimes", "reference", "--batch-sizes", "2", "--no-record",
                "--json")
        assert all(x["verdict"] == "pass" for x in json.loads(r.stdout)[name])
