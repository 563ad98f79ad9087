"""``zoo build`` and ``zoo info``."""

from __future__ import annotations

import re
from pathlib import Path

import click

from ..builder import manifest as mf
from ..errors import CalibrationError, ZooError
from ..exporters.spec import EXPORTERS, ExportSpec
from ..model.config import variant_config
from .bars import Bar
from ..spec import FILE_PRECISIONS, RECOMMEND_PRECISIONS
from .common import (artifacts_option, compound_variant, emit_json, json_option, min_agreement_option, precision_option,
                     progress, quant_budget_option, selected_variants, shape_options, size_cell, table)

# What --check takes from the manifest it checks against: giving any of these with it is an error.
# (--no-verify, --no-bench and --keep-going only skip or relax work that --check does not do.)
CHECK_IGNORES = ("artifacts", "opset", "seed", "flavor", "num_classes", "input_dim", "phi", "alpha", "beta", "gamma",
                 "exporter", "precisions", "external_data", "model_version", "license", "author", "labels", "opsets",
                 "ort", "profile", "quant_budget")


class ModelsProgress:
    """zoo build's progress: its lines, and on a terminal a bar over the models below them (the
    pipeline tags each line ``[i/n] NAME: ``; a model is done at its ``ok``/``FAILED`` line)."""

    TAG = re.compile(r"^\[(\d+)/\d+\] (\S+): (ok \(|FAILED)?")

    def __init__(self, total: int):
        self.bar = Bar(total, "zoo build", unit="model") if total > 1 else None

    def __call__(self, msg: str) -> None:
        if self.bar is None:
            return progress(msg)
        self.bar.note(msg)
        m = self.TAG.match(msg)
        if m:
            self.bar.moveto(int(m.group(1)) - (0 if m.group(3) else 1), desc=m.group(2))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


@click.command("build")
@click.argument("names", nargs=-1)
@click.option("--all", "all_", is_flag=True, help="Build every variant of the table (dense_b0 ... dense_b7).")
@artifacts_option(out_alias=True, help="Artifacts folder to write (manifest.json at its root).")
@click.option("--opset", type=int, default=18, show_default=True, help="ONNX opset to export to.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Weight and test-data seed.")
@shape_options
@click.option("--exporter", type=click.Choice(EXPORTERS), default="dynamo", show_default=True,
              help="torch.onnx exporter: dynamo (onnxscript) or the legacy torchscript one.")
@click.option("--check", "check_manifest", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Compare every rebuilt file's sha256 with MANIFEST (rebuilt with the options it records) or with a "
                   "sha256sum-style record such as artifacts/SHA256SUMS (rebuilt as asked). Writes nothing.")
@click.option("--no-verify", is_flag=True, help="Skip the parity matrix (the ONNX Runtime self-check still runs).")
@click.option("--external-data", is_flag=True,
              help="Write every model file's tensors to FILE.data beside it (role external_data in the manifest); "
                   "without it only a model over 2 GiB, which cannot be one file, is written that way.")
@precision_option("fp32", always_fp32=True, valid=FILE_PRECISIONS,
                  help="Comma list of fp32, int8, fp16, int8_static, int4: also write model.int8.onnx / "
                       "model.fp16.onnx / ..., each with parity and latency records (fp32 is always built). With a "
                       "training split (trained weights, --eval-data) int8, int8_static and int4 come from an "
                       "accuracy-driven search (see --quant-budget); int8_static and int4 need one.")
@click.option("--opsets", default=None, metavar="A,B,...",
              help="Also write the model at these older opsets (model.opsetN.onnx, role target), each with the lowest "
                   "IR version its opset allows, for older runtimes (onnxruntime 1.16 loads IR 9 at most); each is "
                   "verified like the default file. 14 at least.")
@click.option("--ort", "ort_format", is_flag=True,
              help="Also write ONNX Runtime's ORT format (model.ort + model.required_operators.config, for mobile and "
                   "minimal builds) with onnxruntime's converter, verified in ONNX Runtime.")
@click.option("--profile", is_flag=True,
              help="Also write NAME/profile.json (role profile): per runtime and version verified here, the file to "
                   "load, its sha256 and session settings; the Node, browser, C and C++ examples follow it.")
@click.option("--no-bench", is_flag=True, help="Skip the short latency run recorded for each model file.")
@click.option("--weights", type=click.Path(path_type=Path), default=None,
              help="A safetensors state dict (FILE) or a folder of NAME.safetensors (DIR, for several models), "
                   "e.g. from zoo train; default: seeded weights.")
@click.option("--eval-data", type=click.Path(path_type=Path), default=None,
              help="A .npz test split (x_test, y_test; zoo data) to measure top-1 on; default: the dataset named "
                   "by the NAME.train.json beside the weights, if any.")
@min_agreement_option
@quant_budget_option
@click.option("--keep-going", is_flag=True,
              help="After a failed model, go on and commit the models that passed (exit 1 all the same).")
@click.option("--model-version", type=click.IntRange(min=1), default=1, show_default=True,
              help="The release version written into every model file (ONNX model_version).")
@click.option("--license", "license_", metavar="SPDX", default=None,
              help="SPDX license id written into every model file (model_license); none unless given.")
@click.option("--author", metavar="NAME", default=None, help="Who made the model (model_author); none unless given.")
@click.option("--labels", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Class labels: a JSON array or one label per line, one per class (written into the model files).")
@json_option
@click.pass_context
def build_cmd(ctx, names, all_, artifacts, opset, seed, flavor, num_classes, input_dim, phi, alpha, beta, gamma, exporter,
              check_manifest,
              no_verify, external_data, precisions, opsets, ort_format, profile, no_bench, weights, eval_data, min_agreement,
              quant_budget, keep_going, model_version, license_, author, labels, as_json):
    """Export variants to ONNX, verify them, and write artifacts plus manifest.json.

    Every file is staged under a temporary name and renamed into place only when every model has
    passed; a failed or interrupted build leaves the previous artifacts and manifest as they were.
    A second build into the same folder waits for the first (it says so on stderr). --check takes
    every option from the manifest, so it refuses the options it would otherwise ignore.

    \b
    Examples:
      zoo build --all
      zoo build dense_b0 dense_b1 --artifacts /tmp/zoo --seed 1
      zoo build --phi 1.5 --flavor edifice
      zoo build --phi 1 --alpha 1.4 --beta 1.1 --gamma 1.1
      zoo build --all --precision fp32,int8,fp16
      zoo build dense_b0 --opsets 15,17 --ort --profile
      zoo build dense_b0 --external-data --artifacts /tmp/zoo-ext
      zoo build --all --check artifacts/manifest.json
      zoo build --all --precision fp32,int8 --check artifacts/SHA256SUMS
      zoo build --all --weights checkpoints --precision fp32,int8,fp16
      zoo build dense_b0 --weights my_b0.safetensors --eval-data mnist1d_256.npz
      zoo build --all --license Apache-2.0 --author "Jane Doe" --labels labels.txt --model-version 2
      zoo build dense_b7 --weights checkpoints --precision fp32,int8 --min-agreement 0.9
      zoo build dense_b5 --weights checkpoints --precision fp32,int8,int4 --min-agreement 0.97 --quant-budget 900
    """
    from ..builder import steps
    from ..builder.artifact import ModelRequest
    from ..builder.pipeline import build, check_against, load_reference
    from ..verify.c import RUNTIMES as C_RUNTIMES
    from ..verify.js import RUNTIMES as JS_RUNTIMES

    if not names and not all_ and phi is None:
        raise click.UsageError("name at least one variant, or give --all or --phi")
    reference = None
    if check_manifest is not None:
        reference = load_reference(check_manifest)
        # A manifest records the options each model was built with; a sha256 record does not, so
        # with a record the shape options say what to rebuild. Neither writes anything.
        record = "sha256sums" in reference
        ignored = ("artifacts",) if record else CHECK_IGNORES
        given = [p for p in ctx.command.params if p.name in ignored
                 and ctx.get_parameter_source(p.name) != click.core.ParameterSource.DEFAULT]
        if given:
            why = "compares in memory and writes nothing" if record else "rebuilds with the options recorded in the manifest"
            raise click.UsageError(f"--check {why}; it does not take {', '.join(p.opts[0] for p in given)}")
    from ..exporters.targets import parse_opsets

    target_opsets = parse_opsets(opsets)
    for o in target_opsets:  # those PyTorch's exporter makes must be opsets it supports (ExportSpec says which)
        if o > opset or (exporter == "torchscript" and o != opset):
            ExportSpec(opset=o, exporter=exporter)
    if (target_opsets or ort_format) and external_data:
        raise click.BadParameter("targets are single files; they cannot be built with --external-data",
                                 param_hint="--opsets/--ort")
    variants = selected_variants(names, all_, compound_variant(phi, alpha, beta, gamma))
    spec = ExportSpec(opset=opset, exporter=exporter, external_data=external_data)
    if weights is not None and len(variants) > 1 and not weights.is_dir():
        raise click.BadParameter(f"{weights} is not a folder; several models need --weights DIR with NAME.safetensors",
                                 param_hint="--weights")
    from ..model.weights import weights_for
    from ..modelinfo import ModelInfo, read_labels

    info = ModelInfo(version=model_version, author=author, license=license_,
                     labels=read_labels(labels) if labels is not None else None)
    info.check_classes(num_classes)
    requests = [ModelRequest(variant=v, seed=seed, num_classes=num_classes, input_dim=input_dim, flavor=flavor,
                             spec=spec, weights=None if weights is None else str(weights_for(v.name, weights)),
                             eval_data=None if eval_data is None else str(eval_data), info=info) for v in variants]
    # Validate every option, weights and evaluation set before any slow work (a --check against a
    # manifest rebuilds with the manifest's shape options: the weights are checked against those).
    from_manifest = reference is not None and "sha256sums" not in reference
    for r in requests:
        variant_config(r.variant, r.num_classes, r.flavor, r.input_dim)
        if r.weights is not None and not from_manifest:
            from ..model.weights import read_bytes

            r.create(read_bytes(r.weights))
        evals = r.eval_set()
        needs = [p for p in precisions if p in RECOMMEND_PRECISIONS]
        if needs and (evals is None or evals.x_train is None) and reference is None:
            raise CalibrationError(f"{r.name}: {needs[0]} needs the reference task's training split to calibrate "
                                   "and judge its quantisation search; build from trained weights with their "
                                   ".train.json, or give --eval-data FILE.npz from `zoo data`")

    if reference is not None:
        rows = check_against(requests, reference, progress, precisions)  # with the same --weights / --eval-data
        bad = [r for r in rows if not r["match"]]
        if as_json:
            emit_json({"manifest": str(check_manifest), "files": rows, "mismatches": len(bad)})
        else:
            click.echo(table([dict(r, expected=(r["expected"] or "-")[:12], actual=(r["actual"] or "-")[:12],
                                   match="yes" if r["match"] else "NO") for r in rows],
                             [("model", "model"), ("path", "file"), ("expected", "expected"), ("actual", "actual"),
                              ("match", "match"), ("note", "note")]))
        if bad:
            raise ZooError(f"{len(bad)} of {len(rows)} file(s) differ from {check_manifest}")
        if not as_json:
            click.echo(f"all {len(rows)} file(s) match {check_manifest}")
        return

    js_runtimes: list[str] = []
    c_runtimes: list[str] = []
    if not no_verify:
        # Said before the build, so a manifest with fewer parity records than usual is no surprise.
        reasons = steps.runtime_reasons()
        for name, why in reasons.items():
            if why:
                progress(f"note: no parity on {name}: {why}")
        js_runtimes = [r for r in JS_RUNTIMES if reasons[r] is None]
        c_runtimes = [r for r in C_RUNTIMES if reasons[r] is None]
    verifier = None if no_verify else steps.default_verifier()
    extras = steps.default_extras(precisions, bench=not no_bench, verify=not no_verify, js_runtimes=js_runtimes,
                                  c_runtimes=c_runtimes, min_agreement=min_agreement, opsets=target_opsets,
                                  ort=ort_format, profile=profile, quant_budget=quant_budget)
    show = ModelsProgress(len(requests))
    try:
        results = build(requests, artifacts, verifier=verifier, extras=extras, progress=show, keep_going=keep_going)
    finally:
        show.close()
    summary = [r.summary() for r in results]
    if as_json:
        emit_json({"artifacts": str(artifacts), "manifest": str(artifacts / mf.MANIFEST_NAME), "models": summary})
    else:
        click.echo(table([dict(s, size=size_cell(s["file_bytes"] or None),
                               sha256=(s["sha256"] or "-")[:12], seconds=sum(s["timings_s"].values()))
                          for s in summary],
                         [("name", "name"), ("params", "params"), ("size", "file"), ("sha256", "sha256"),
                          ("seconds", "seconds"), ("status", "status")]))
    failed = [r for r in results if r.status != "ok"]
    if failed:
        kept = "the others were written" if keep_going else "nothing was written"
        raise ZooError(f"{len(failed)} model(s) failed ({', '.join(r.name for r in failed)}); {kept}: "
                       f"{failed[0].error}")


@click.command("info")
@click.argument("model")
@artifacts_option(help="With a model NAME: the artifacts folder to look in first (then the download cache).")
@json_option
def info_cmd(model, artifacts, as_json):
    """Inspect an .onnx file, or a model by name: inputs, outputs, opset, zoo metadata, size, sha256, parameters.

    A NAME (no such file) is the fp32 model of that name in the artifacts folder's manifest, else
    in the download cache.

    \b
    Examples:
      zoo info artifacts/dense_b0/model.onnx
      zoo info dense_b0
      zoo info model.onnx --json
    """
    from ..hub.inspect import describe, resolve

    path, entry = resolve(model, artifacts)
    info = describe(path, entry)
    if as_json:
        emit_json(info)
        return
    click.echo(f"{path}")
    click.echo(f"  size       {info['file_bytes']:,} bytes\n  sha256     {info['sha256']}")
    click.echo(f"  ir_version {info['ir_version']}   opset {info['opset']}   producer {info['producer']}")
    click.echo(f"  params     {info['params']:,} (from initializers)   nodes {info['nodes']}")
    if info["params_note"]:
        click.echo(f"             {info['params_pytorch']:,} in the PyTorch model (the manifest's count): "
                   "BatchNorm folded into the layer before it at export")
    if info.get("domain") or info.get("doc_string"):
        click.echo(f"  domain     {info.get('domain') or '-'}   model_version {info.get('model_version')}")
        click.echo(f"  doc        {info.get('doc_string') or '-'}")
    for kind in ("inputs", "outputs"):
        for p in info[kind]:
            click.echo(f"  {kind[:-1]:<6} {p['name']}: {p['type']} {p['shape']}")
    for k, v in info["metadata"].items():
        click.echo(f"  {k} = {v}")
    for x in info["external_data"]:
        size = f"{x['bytes']:,} bytes" if x["present"] else "missing"
        click.echo(f"  external   {x['location']} ({size})")
    for rt, versions in info["verified_on"].items():
        click.echo(f"  verified   {rt} {', '.join(versions)}")
