"""The CLI contract, command by command (README, "CLI contract"): bad input exits 2, a failed job 1,
something named and unavailable 3, a bug 4; each failure is exactly one line on stderr,
``Error: zoo COMMAND: ...``, after any progress lines, and never a traceback or the usage block."""

import shutil

import onnxruntime as ort
import pytest
from click.testing import CliRunner

from zoo.cli import cli

CUDA = "CUDAExecutionProvider" in ort.get_available_providers()


def run(*args, env=None):
    return CliRunner().invoke(cli, [str(a) for a in args], env=env)


def one_line(r, code: int, command: str) -> str:
    """The result failed with ``code`` and one ``Error:`` line, the last on stderr."""
    assert r.exit_code == code, (r.exit_code, r.output)
    assert "Traceback" not in r.output, r.output
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    lines = r.stderr.splitlines()
    errors = [line for line in lines if line.startswith("Error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], r.stderr
    assert errors[0].startswith(f"Error: zoo {command}: "), errors[0]
    assert "Usage:" not in r.output and "Try 'zoo" not in r.output
    if code in (2, 3):  # refused before any work (a failed job may have printed its results)
        assert r.stdout == "", r.stdout
    return errors[0]


@pytest.fixture
def art(small_build, tmp_path):
    """A private copy of the small build (tests may tamper with it)."""
    out = tmp_path / "art"
    shutil.copytree(small_build, out)
    return out


def tamper(art):
    (art / "dense_b0" / "model.onnx").write_bytes(b"not the model")


# (command words, arguments after them, expected exit status, words of the error line)
def cases(art, tmp_path):
    missing = tmp_path / "nowhere"
    afile = tmp_path / "a-file"
    afile.write_text("x")
    return {
        "list": [(["--input-dim", "0"], 2, "input_dim must be a positive integer"),
                 (["--flavor", "resnet"], 2, "'resnet' is not one of")],
        "show": [(["dense_b9"], 2, "unknown variant 'dense_b9'"), ([], 2, "give a variant NAME or --phi"),
                 (["dense_b0", "--phi", "1"], 2, "give a variant NAME or --phi")],
        "build": [(["dense_b9"], 2, "unknown variant 'dense_b9'"), (["dense_b0", "--precision", "int4"], 2, "int4"),
                  (["dense_b0", "--opset", "3"], 2, "opset 3 is not supported"), ([], 2, "name at least one variant"),
                  (["dense_b0", "--check", missing / "m.json"], 2, "no manifest at"),
                  (["dense_b0", "--no-verify", "--artifacts", afile / "zoo"], 1, "cannot write to")],
        "verify": [(["dense_b9", "--artifacts", art], 2, "unknown model 'dense_b9'"),
                   (["--all", "--artifacts", missing], 2, "no manifest at"),
                   (["--all", "--artifacts", art, "--batch-sizes", "0"], 2, "expected positive integers"),
                   (["--all", "--artifacts", art, "--runtimes", "deno"], 2, "unknown runtime 'deno'"),
                   (["--all", "--artifacts", art, "--providers", "gpu9"], 2, "unknown execution provider 'gpu9'"),
                   (["--all", "--artifacts", art, "--precision", "fp8"], 2, "unknown precision 'fp8'"),
                   (["dense_b0", "--all", "--artifacts", art], 2, "not both")],
        "bench": [(["dense_b9", "--artifacts", art], 2, "'dense_b9' is not in the manifest"),
                  (["--all", "--artifacts", art, "--precision", "int8"], 2, "has no int8 file"),
                  (["--all", "--artifacts", missing], 2, "no manifest at"),
                  (["--all", "--artifacts", art, "--batch-sizes", "x"], 2, "comma-separated integers"),
                  ([], 2, "name at least one model")],
        "report": [(["--artifacts", missing], 2, "no manifest at"), (["--to", afile, "--artifacts", art], 2, "is a file")],
        "info": [([missing / "m.onnx"], 2, "does not exist"), ([afile], 1, "not a readable ONNX model")],
        "publish": [([], 2, "Missing option '--to'"), (["--artifacts", missing, "--to", tmp_path / "m"], 2, "does not exist"),
                    (["--artifacts", art, "--to", tmp_path / "m", "--license", "no such?"], 2, "SPDX"),
                    (["--artifacts", art, "--to", "oci://registry.invalid/Zoo"], 2, "is not oci://HOST")],
        "export hf": [([], 2, "Missing option '--to'"), (["--artifacts", missing, "--to", tmp_path / "h"], 2, "does not exist")],
        "export triton": [(["--artifacts", art, "--to", tmp_path / "t", "--precision", "fp8"], 2, "unknown precision 'fp8'"),
                          (["--artifacts", art, "--to", tmp_path / "t", "--max-batch-size", "0"], 2, "--max-batch-size")],
        "pull": [(["dense_b9", "--from", art, "--cache-dir", tmp_path / "c"], 2, "'dense_b9' is not offered"),
                 (["dense_b0", "--precision", "fp64", "--from", art], 2, "unknown precision 'fp64'"),
                 (["dense_b0", "--from", "ftp://example.invalid/"], 2, "unsupported source"),
                 ([], 2, "name at least one model"),
                 (["dense_b0@0", "--from", art, "--cache-dir", tmp_path / "c"], 2, "after '@'"),
                 (["--lock", missing / "zoo.lock"], 2, "does not exist"),
                 (["dense_b0", "--from", art, "--trust", missing / "k.pub"], 2, "does not exist")],
        "lock": [(["dense_b9", "--from", art, "--cache-dir", tmp_path / "c"], 2, "'dense_b9' is not offered"),
                 (["dense_b0@latest", "--from", art, "--cache-dir", tmp_path / "c"], 2, "after '@'")],
        "trust add": [([art, missing / "k.pub"], 2, "does not exist"), ([art, afile], 2, "not TUF root metadata")],
        "trust require": [(["--bogus"], 2, "No such option")],
        "rotate": [([], 2, "Missing option '--to'"),
                   (["--to", tmp_path, "--root-key", missing / "r.key"], 2, "no TUF metadata")],
        "trust list": [(["--bogus"], 2, "No such option")],
        "trust remove": [([art], 2, "nothing is trusted")],
        "keygen": [([], 2, "Missing option '--out'"), (["--out", missing / "k"], 2, "does not exist")],
        "models": [(["--from", "ftp://example.invalid/"], 2, "unsupported source"),
                   (["--from", missing], 2, "")],
        "cache list": [(["--cache-dir", afile], 2, "is a file")],
        "cache verify": [(["--cache-dir", afile], 2, "is a file")],
        "cache clear": [(["dense_b5", "--cache-dir", tmp_path / "c"], 2, "not in the cache")],
        "train": [(["dense_b9"], 2, "unknown variant 'dense_b9'"), ([], 2, "name at least one variant"),
                  (["dense_b0", "--epochs", "0", "--out", tmp_path / "t"], 2, "--epochs"),
                  (["dense_b0", "--out", afile], 2, "is a file")],
        "data mnist1d": [(["--out", tmp_path / "d.npz"], 2, "Missing option '--input-dim'"),
                         (["--input-dim", "4", "--out", tmp_path / "d.npz"], 2, "--input-dim"),
                         (["--input-dim", "64", "--samples", "10", "--out", tmp_path / "d.npz"], 2, "--samples")],
        "study scaling": [(["--strategies", "height", "--out", tmp_path / "s"], 2, "unknown strategy 'height'"),
                          (["--multipliers", "-2", "--out", tmp_path / "s"], 2, "multiplier must be a number > 1")],
        "study grid": [(["--alphas", "1", "--betas", "1", "--gammas", "1", "--out", tmp_path / "s"], 2, "within 10% of 2"),
                       (["--ray-address", "nowhere", "--out", tmp_path / "s"], 2, "give host:port")],
        "study ablation": [(["--claims", "nonsense", "--out", tmp_path / "s"], 2, "unknown claim 'nonsense'"),
                           (["--baseline-multipliers", "0", "--out", tmp_path / "s"], 2, "multiplier must be a number > 0"),
                           (["--grow-from", "100000", "--out", tmp_path / "s"], 2, "--grow-from")],
    }


def test_the_one_line_check_fails_on_a_traceback_or_an_escaped_exception():
    """The check above must be able to fail (issue 32.16: ``a and b or c`` was true whenever a
    command exited non-zero): a real command that prints a traceback before its error line, and
    one whose exception escapes, are both caught."""
    import sys

    import click

    @click.command("x")
    def prints_a_traceback():
        click.echo("Traceback (most recent call last):\n  File ...\nValueError: boom", err=True)
        click.echo("Error: zoo x: boom", err=True)
        sys.exit(1)

    @click.command("x")
    def raises():
        raise ValueError("boom")

    r = CliRunner().invoke(prints_a_traceback, [])
    assert r.exit_code == 1 and isinstance(r.exception, SystemExit)
    with pytest.raises(AssertionError, match="Traceback"):
        one_line(r, 1, "x")
    r = CliRunner().invoke(raises, [])
    assert r.exit_code == 1 and isinstance(r.exception, ValueError)
    with pytest.raises(AssertionError, match="ValueError"):
        one_line(r, 1, "x")


def _commands(group, prefix=()):
    for name, cmd in group.commands.items():
        if hasattr(cmd, "commands"):
            yield from _commands(cmd, prefix + (name,))
        else:
            yield " ".join(prefix + (name,))


def test_every_command_has_bad_input_cases(art, tmp_path):
    assert set(_commands(cli)) == set(cases(art, tmp_path)), "a command without contract cases"


def test_bad_input_is_one_line_and_exit_2(art, tmp_path):
    for command, rows in cases(art, tmp_path).items():
        for args, code, words in rows:
            r = run(*command.split(), *args)
            line = one_line(r, code, command)
            assert words in line, (command, args, line)


def test_failed_jobs_exit_1(art, small_build, tmp_path):
    # a pulled copy first, while the artifacts are intact
    cache = tmp_path / "cache"
    assert run("pull", "dense_b0", "--from", art, "--cache-dir", cache).exit_code == 0
    bad_manifest = tmp_path / "bad"
    bad_manifest.mkdir()
    (bad_manifest / "manifest.json").write_text("{oops")
    tamper(art)
    for command, args, words in [
        ("verify", ["dense_b0", "--artifacts", art, "--runtimes", "reference"], "does not match the manifest's sha256"),
        ("bench", ["dense_b0", "--artifacts", art, "--no-torch"], "differs from its manifest record"),
        ("report", ["--artifacts", bad_manifest, "--no-chart"], "not valid JSON"),
        ("publish", ["--artifacts", art, "--to", tmp_path / "mirror"], "nothing was published"),
        ("pull", ["dense_b0", "--from", art, "--cache-dir", tmp_path / "cache2"], "the manifest says"),
        ("models", ["--from", bad_manifest], "not valid JSON"),
        ("build", ["dense_b0", "--check", small_build / "manifest.json", "--input-dim", "64"], ""),
    ]:
        r = run(command, *args)
        if command == "build":  # --check with a shape option is refused as bad input, before any work
            one_line(r, 2, command)
            continue
        assert words in one_line(r, 1, command), (command, r.stderr)
    (cache / "models" / "dense_b0" / "dense_b0" / "model.onnx").write_bytes(b"bad")
    r = run("cache", "verify", "--cache-dir", cache)
    assert "failed verification" in one_line(r, 1, "cache verify")


@pytest.mark.skipif(CUDA, reason="this onnxruntime has CUDA: nothing is unavailable to ask for")
def test_a_provider_or_runtime_asked_for_and_missing_exits_3(art, tmp_path):
    r = run("verify", "dense_b0", "--artifacts", art, "--providers", "cuda", "--runtimes", "reference")
    assert "CUDAExecutionProvider" in one_line(r, 3, "verify")
    r = run("bench", "dense_b0", "--artifacts", art, "--providers", "tensorrt", "--no-torch")
    assert "TensorrtExecutionProvider" in one_line(r, 3, "bench")
    r = run("verify", "dense_b0", "--artifacts", art, "--runtimes", "node", env={"ZOO_NODE": "/nonexistent/node"})
    assert "Node.js not found" in one_line(r, 3, "verify")


def test_third_party_value_errors_are_internal_errors_not_bad_input(monkeypatch, art):
    import zoo.hub.inspect

    def broken(path, entry=None):
        raise ValueError("third-party bug")

    monkeypatch.setattr(zoo.hub.inspect, "describe", broken)
    r = run("info", art / "dense_b0" / "model.onnx")
    assert one_line(r, 4, "info") == "Error: zoo info: internal error: ValueError: third-party bug"


def test_a_missing_optional_package_exits_3_with_the_extra_to_install(monkeypatch, art):
    import builtins

    real = builtins.__import__

    def no_torch(name, *a, **k):
        if name == "torch" or name.startswith("torch."):
            raise ModuleNotFoundError("No module named 'torch'", name="torch")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_torch)
    for mod in [m for m in list(__import__("sys").modules) if m.startswith(("zoo.builder.verification",
                                                                              "zoo.verify.matrix"))]:
        monkeypatch.delitem(__import__("sys").modules, mod)
    r = run("verify", "dense_b0", "--artifacts", art)
    assert "'dense-zoo[build]'" in one_line(r, 3, "verify")
