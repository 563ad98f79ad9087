"""zoo study: plans, records, resume, the process pool against Ray, the report, and bad input."""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import time

import pytest
from click.testing import CliRunner
from conftest import ROOT, zoo_cmd

from zoo.cli import cli
from zoo.study import plans
from zoo.study.report import compare
from zoo.study.trials import BASE_SHAPE, Budget, Shape, Trial, check_record

# The miniature study: B0, depth@2x and width@2x, one seed, one epoch over 300 samples: 3 trials.
MINI = ["study", "scaling", "--strategies", "depth,width", "--multipliers", "2", "--seeds", "1",
        "--epochs", "1", "--samples", "300", "--workers", "2"]


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def records(out) -> dict[str, bytes]:
    return {p.stem: p.read_bytes() for p in sorted((out / "trials").glob("*.json"))}


def one_line_error(result) -> str:
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and result.stderr.rstrip().splitlines()[-1] == errors[0], result.stderr
    return errors[0]


# --- plans (pure Python) ---------------------------------------------------------------------

def test_scaling_points_sit_at_their_flops_multiplier():
    points = plans.scaling_points(multipliers=(2.0, 4.0))
    assert points[0].label == "baseline" and points[0].shape == BASE_SHAPE
    by = {p.label: p for p in points}
    for s in ("depth", "width", "compound"):
        for m in (2.0, 4.0):
            assert abs(math.log(plans.flops_ratio(by[f"{s}@{m:g}x"].shape) / m)) < math.log(1.1), (s, m)
    assert by["depth@2x"].shape.width == 1.0 and by["depth@2x"].shape.depth > 1.4
    assert by["width@4x"].shape.depth == 1.0 and by["width@4x"].shape.width > 1.9
    c = by["compound@2x"]
    assert c.coefficients == plans.PAPER_COEFFICIENTS and c.shape.depth > 1 and c.shape.width > 1
    assert c.shape.input_dim > 256
    # resolution only widens the stem: more input features, almost no FLOPs
    r = by["resolution@4x"].shape
    assert r.input_dim == 512 and r.depth == r.width == 1.0 and plans.flops_ratio(r) < 1.01


def test_grid_candidates_are_within_ten_percent_of_two_and_include_the_reference():
    cands = plans.grid_candidates()
    assert len(cands) >= 10
    assert all(abs(plans.product(*t) - 2) <= 0.2 + 1e-12 and min(t) >= 1 for t in cands)
    points = plans.grid_points()
    assert [p.strategy for p in points[:2]] == ["baseline", "reference"]
    assert points[1].coefficients == (1.2, 1.1, 1.15) and points[1].shape.depth == 1.2
    trials = plans.trials_for(points, 2, Budget(1, 300))
    assert len(trials) == 2 * len({p.shape for p in points}) and len({t.id for t in trials}) == len(trials)


@pytest.mark.parametrize("call,words", [
    (lambda: plans.grid_candidates((1.0,), (1.0,), (1.0, 1.05)), "within 10% of 2"),
    (lambda: plans.grid_candidates((0.9,), (1.2,), (1.2,)), "alpha must be a number >= 1"),
    (lambda: plans.scaling_points(multipliers=(0.5,)), "multiplier must be a number > 1"),
    (lambda: plans.scaling_points(strategies=("height",)), "unknown strategy 'height'"),
    (lambda: plans.trials_for([plans.baseline()], 0, Budget(1, 300)), "seeds must be a positive integer"),
    (lambda: Budget(0, 300), "epochs must be a positive integer"),
])
def test_bad_plans_are_value_errors(call, words):
    with pytest.raises(ValueError, match=words):
        call()


def _row(label, values):
    import statistics

    return {"label": label, "top1_mean": statistics.fmean(values),
            "top1_std": statistics.stdev(values) if len(values) > 1 else None}


def test_a_difference_smaller_than_the_spread_is_a_tie():
    a, b = _row("a", [0.60, 0.64]), _row("b", [0.61, 0.62])  # diff 0.5 points, spread 2.8 points
    assert compare(a, b)["verdict"] == "tie"
    c = _row("c", [0.70, 0.71])
    assert compare(c, a)["verdict"] == "better" and compare(a, c)["verdict"] == "worse"
    assert compare(c, a)["diff_points"] == pytest.approx(8.5)
    assert compare(_row("d", [0.7]), _row("e", [0.5]))["verdict"] == "untested"


def test_check_record_refuses_damaged_or_foreign_records():
    trial = Trial(BASE_SHAPE, 0, Budget(1, 300))
    assert check_record([]) == "not a JSON object"
    assert check_record({"schema": "zoo.study.trial/1"}) == "field 'trial' missing or not dict"
    other = Trial(Shape(1.5, 1.0, 224), 0, Budget(1, 300))
    assert trial.id != other.id and trial.id == "d1-w1-r224-s0-e1-n300"
    assert Trial.from_dict(other.to_dict()) == other


# --- CLI: bad input --------------------------------------------------------------------------

def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.mark.parametrize("args,code,words", [
    (["study", "grid", "--alphas", "1", "--betas", "1", "--gammas", "1,1.05"], 2, "within 10% of 2"),
    (["study", "grid", "--alphas", "1,x"], 2, "is not a comma list of numbers"),
    (["study", "scaling", "--multipliers", "-2"], 2, "multiplier must be a number > 1"),
    (["study", "scaling", "--strategies", "height"], 2, "unknown strategy 'height'"),
    (["study", "scaling", "--alpha", "0.9"], 2, "alpha must be a number >= 1"),
    (["list", "--phi", "-1", "--alpha", "1.3"], 2, "phi must be a number >= 0"),
    (["show", "--alpha", "1.3", "dense_b0"], 2, "give --phi with it"),
    (["study", "scaling", "--ray-address", "127.0.0.1:{port}"], 1, "cannot connect"),
    (["study", "grid", "--ray-address", "nowhere"], 2, "give host:port"),
])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, args, code, words):
    out = tmp_path / "out"
    args = [a.format(port=_closed_port()) for a in args] + (["--out", out] if args[0] == "study" else [])
    r = invoke(*args)
    assert r.exit_code == code, r.output
    assert words in one_line_error(r)
    assert not out.exists()


def test_list_and_show_take_the_compound_coefficients():
    r = invoke("list", "--phi", "1", "--alpha", "1.4", "--beta", "1.1", "--gamma", "1.1", "--json")
    assert r.exit_code == 0, r.output
    [row] = json.loads(r.output)
    assert (row["depth"], row["width"], row["resolution"]) == (1.4, 1.1, 246)
    assert row["flops_factor"] == pytest.approx(1.4 * 1.1**2 * 1.1**2)
    default = json.loads(invoke("show", "--phi", "1", "--json").output)
    assert (default["depth"], default["width"], default["resolution"]) == (1.2, 1.1, 258)


# --- the miniature study ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    out = tmp_path_factory.mktemp("study-pool")
    r = invoke(*MINI, "--out", out, "--json")
    assert r.exit_code == 0, r.output
    return out, json.loads(r.stdout)


def test_miniature_study_writes_valid_records_a_report_and_a_chart(mini):
    out, summary = mini
    recs = {k: json.loads(v) for k, v in records(out).items()}
    assert len(recs) == 3 and sorted(summary["ran"]) == sorted(recs) and summary["reused"] == []
    for tid, rec in recs.items():
        trial = Trial.from_dict(rec["trial"])
        assert trial.id == tid and check_record(rec, trial) is None
        assert rec["epochs"] == 1 and rec["budget"]["samples"] == 300 and rec["seed"] == 0
        assert rec["dataset"]["input_dim"] == trial.shape.input_dim and rec["dataset"]["train"] == 240
        assert rec["params"] > 3_000_000 and rec["flops"] == trial.shape.flops() and rec["wall_s"] > 0
        assert rec["toolchain"]["torch"]
    report = (out / "report.md").read_text()
    for label in ("baseline", "depth@2x", "width@2x"):
        assert f"| {label} |" in report
    assert (out / "scaling.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    json.loads((out / "summary.json").read_text(), parse_constant=lambda c: pytest.fail(f"non-strict JSON {c}"))
    assert {p["label"] for p in summary["points"]} == {"baseline", "depth@2x", "width@2x"}
    rec = next(iter(recs.values()))
    trial = Trial.from_dict(rec["trial"])
    assert check_record(dict(rec, top1=1.5), trial) == "top1 outside [0, 1] or history length != epochs"
    assert check_record(dict(rec, seed="0"), trial) == "field 'seed' missing or not int"
    assert check_record(rec, Trial(trial.shape, 1, trial.budget)) == "made for another trial"
    # run again: every trial is read back, nothing re-runs, no record is rewritten
    before = records(out)
    r = invoke(*MINI, "--out", out, "--json")
    again = json.loads(r.stdout)
    assert again["ran"] == [] and sorted(again["reused"]) == sorted(before) and records(out) == before


def test_a_killed_study_reruns_only_its_unfinished_trials(tmp_path):
    out = tmp_path / "killed"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(zoo_cmd(*MINI, "--out", str(out)), cwd=ROOT, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while not list((out / "trials").glob("*.json")) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the study and its workers: its own process group
        proc.wait()
    before = records(out)
    assert 1 <= len(before) < 3, before.keys()
    r = invoke(*MINI, "--out", out, "--json")
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    after = records(out)
    assert len(after) == 3 and sorted(summary["reused"]) == sorted(before)
    assert sorted(summary["ran"]) == sorted(set(after) - set(before))
    assert all(after[k] == v for k, v in before.items())  # finished records were read, not rewritten


def test_ray_gives_the_same_records_as_the_process_pool(mini, tmp_path):
    pool_out, _ = mini
    r = invoke(*MINI, "--out", tmp_path, "--ray-address", "local", "--json")
    assert r.exit_code == 0, r.output
    assert len(json.loads(r.stdout)["ran"]) == 3
    pool, ray = records(pool_out), records(tmp_path)
    assert sorted(pool) == sorted(ray)
    for tid in pool:
        a, b = json.loads(pool[tid]), json.loads(ray[tid])
        for key in ("trial", "config", "params", "flops", "epochs", "seed", "recipe", "dataset", "top1", "history"):
            assert a[key] == b[key], (tid, key)
