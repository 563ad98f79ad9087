"""The CLI skeleton: list, show, --version, --help examples, one-line errors with exit 2."""

import json

import pytest
from click.testing import CliRunner

import zoo
from zoo.cli import cli

runner = CliRunner()


def invoke(*args):
    return runner.invoke(cli, list(args), catch_exceptions=False)


def test_version():
    r = invoke("--version")
    assert r.exit_code == 0 and zoo.__version__ in r.output


def test_list_json_reports_the_table():
    r = invoke("list", "--json")
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)
    assert [row["name"] for row in rows] == list(zoo.VARIANTS)
    keys = {"name", "width", "depth", "resolution", "input_dim", "dropout", "stem_dim", "head_dim", "stages",
            "blocks", "params", "flops"}
    assert all(keys <= set(row) for row in rows)
    b0, b3 = rows[0], rows[3]
    assert b0["params"] == 3_845_670 and b0["input_dim"] == 256 and b0["blocks"] == 16
    assert b3["stem_dim"] == 40 and b3["head_dim"] == 1536 and b3["input_dim"] == 344
    assert [(s["dim"], s["repeats"]) for s in b3["stages"]] == [(24, 2), (32, 3), (48, 3), (96, 5), (136, 5), (232, 6), (384, 2)]
    assert set(b3["stages"][0]) == {"expand_ratio", "dim", "repeats"}
    assert all(row["flops"] == zoo.variant_config(row["name"]).flops() for row in rows)


def test_list_options_apply():
    rows = json.loads(invoke("list", "--json", "--flavor", "edifice").output)
    assert rows[0]["params"] == 9_434_206
    rows = json.loads(invoke("list", "--json", "--num-classes", "100", "--input-dim", "64").output)
    assert rows[0]["input_dim"] == 64
    assert rows[0]["params"] == zoo.variant_config("dense_b0", num_classes=100, input_dim=64).params()
    rows = json.loads(invoke("list", "--json", "--phi", "1").output)
    assert len(rows) == 1 and rows[0]["name"] == "dense_phi1" and rows[0]["depth"] == 1.2


def test_list_table_has_every_variant_and_column():
    r = invoke("list")
    assert r.exit_code == 0
    header = r.output.splitlines()[0]
    for col in ("name", "width", "depth", "resolution", "input_dim", "dropout", "blocks", "params", "MFLOPs"):
        assert col in header
    assert "3,845,670" in r.output and all(n in r.output for n in zoo.VARIANTS)


def test_show_prints_stages():
    r = invoke("show", "dense_b7")
    assert r.exit_code == 0
    assert "stem   64" in r.output and "head   2560" in r.output and "640" in r.output
    r = invoke("show", "--phi", "1.5")
    assert r.exit_code == 0 and "FLOPs factor" in r.output


@pytest.mark.parametrize(
    "args,words",
    [
        (["show", "dense_b9"], "unknown variant 'dense_b9'; valid names: dense_b0"),
        (["list", "--input-dim", "0"], "input_dim must be a positive integer"),
        (["list", "--phi", "-2"], "phi must be"),
        (["list", "--flavor", "resnet"], "resnet"),
        (["list", "--num-classes", "0"], "num_classes must be a positive integer"),
        (["show"], "give a variant NAME or --phi"),
        (["build", "dense_b9"], "unknown variant 'dense_b9'"),
        (["build", "dense_b0", "--opset", "3"], "opset 3 is not supported"),
        (["build"], "name at least one variant"),
    ],
)
def test_bad_input_is_one_clear_line_and_exit_2(args, words):
    r = runner.invoke(cli, args)
    assert r.exit_code == 2, r.output
    assert words in r.output
    assert "Traceback" not in r.output


def _commands(group, prefix=()):
    for name, cmd in group.commands.items():
        yield prefix + (name,), cmd
        if hasattr(cmd, "commands"):
            yield from _commands(cmd, prefix + (name,))


def test_every_command_has_help_with_an_example():
    names = [path for path, _ in _commands(cli)]
    assert {("list",), ("show",), ("build",), ("info",), ("verify",)} <= set(names)
    for path, _ in _commands(cli):
        r = invoke(*path, "--help")
        assert r.exit_code == 0
        assert "Example" in r.output and f"zoo {' '.join(path)}" in r.output, path


def test_build_names_the_runtimes_it_will_leave_out(monkeypatch, tmp_path):
    """A Node.js that cannot run is reported before the build, not silently left out of the manifest."""
    from zoo.builder.steps import runtime_reasons as _runtime_reasons

    monkeypatch.setenv("ZOO_NODE", "/nonexistent/node")
    reasons = _runtime_reasons()
    assert reasons["node"].startswith("Node.js not found") and reasons["web"].startswith("Node.js not found")
    # openvino, tract and the reference evaluator are installed by the test extras
    assert reasons["openvino"] is None and reasons["tract"] is None and reasons["reference"] is None

    # and the build says so on stderr before any work (here it then stops: --out is a file)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    res = CliRunner().invoke(cli, ["build", "dense_b0", "--artifacts", str(blocker / "zoo")])
    assert res.exit_code == 1 and "cannot write to" in res.stderr
    lines = res.stderr.splitlines()
    assert any(line.startswith("note: no parity on node: Node.js not found") for line in lines), lines
    assert any(line.startswith("note: no parity on web: ") for line in lines), lines
    assert not any("openvino" in line or "tract" in line for line in lines), lines

    # zoo verify without --runtimes names them too (here a manifest without models: nothing to verify) ...
    from zoo.builder import manifest as mf

    (tmp_path / "empty").mkdir()
    mf.save(tmp_path / "empty" / mf.MANIFEST_NAME, mf.empty_manifest())
    res = CliRunner().invoke(cli, ["verify", "--all", "--artifacts", str(tmp_path / "empty")])
    assert res.exit_code == 0, res.output
    lines = res.stderr.splitlines()
    assert any(line.startswith("note: no parity on node: Node.js not found") for line in lines), lines
    assert any(line.startswith("note: no parity on web: ") for line in lines), lines
    # ... but bad input is refused before any note (issue 32.15): there is no manifest
    res = CliRunner().invoke(cli, ["verify", "--all", "--artifacts", str(tmp_path / "none")])
    assert res.exit_code == 2 and not any(line.startswith("note:") for line in res.stderr.splitlines()), res.stderr
    # ... and not when --runtimes says which to use
    res = CliRunner().invoke(cli, ["verify", "--all", "--runtimes", "tract", "--artifacts", str(tmp_path / "none")])
    assert res.exit_code == 2 and "note: no parity" not in res.stderr


def test_a_table_prints_every_float_of_a_column_alike():
    """Sizes print evenly: 159.00 above 249.69, never 159; small values keep 3 significant digits."""
    from zoo.cli.common import table

    text = table([{"m": "a", "mb": 159.0, "ms": 0.0123}, {"m": "b", "mb": 249.69, "ms": 1.5}],
                 [("m", "model"), ("mb", "MB"), ("ms", "ms")])
    rows = [ln.split() for ln in text.splitlines()[2:]]
    assert rows == [["a", "159.00", "0.0123"], ["b", "249.69", "1.5000"]]
