"""``zoo export hf|triton`` and ``zoo publish --to oci://...``: the publishing formats of
:mod:`zoo.formats`, as thin commands. Each reads a build (or a mirror) whose files it checks first."""

from __future__ import annotations

from pathlib import Path

import click

from .. import hub
from .common import ZooGroup, emit_json, json_option, progress, size_cell, table
from ..spec import FILE_PRECISIONS

ARTIFACTS_HELP = "Build output (or a zoo mirror) to export (manifest.json at its root)."


def _artifacts(f):
    return click.option("--artifacts", type=click.Path(file_okay=False, path_type=Path),
                        default=Path(hub.DEFAULT_SOURCE), show_default=True, help=ARTIFACTS_HELP)(f)


def _files_table(rows: list[dict], to) -> None:
    click.echo(table([dict(r, size=size_cell(r["bytes"]), sha=r["sha256"][:12]) for r in rows],
                     [("model", "model"), ("path", "file"), ("size", "size"), ("sha", "sha256"), ("status", "status")]))
    new = sum(r["status"] == "written" for r in rows)
    click.echo(f"wrote {new} file(s), {len(rows) - new} unchanged, to {to}")


@click.group("export", cls=ZooGroup)
def export_group():
    """Write the built models in another ecosystem's layout (Hugging Face, Triton).

    \b
    Examples:
      zoo export hf dense_b0 --to hf-repos --repo-id me/dense_b0   # then: hf upload me/dense_b0 hf-repos/dense_b0
      zoo export triton --to model_repository --precision fp32,int8
    """


@export_group.command("hf")
@click.argument("names", nargs=-1)
@click.option("--to", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder to write; each model goes to TO/NAME (a Hugging Face model repository).")
@_artifacts
@click.option("--repo-id", metavar="ORG/REPO", default=None,
              help="The Hub repository named in the model card: one id for one model, or a pattern with {name} "
                   "for several (--repo-id 'me/{name}': me/dense_b0, me/dense_b1, ...).")
@json_option
def hf_cmd(names, to, artifacts, repo_id, as_json):
    """A Hugging Face model repository folder per model, that is also a zoo mirror.

    onnx/model.onnx, onnx/model_quantized.onnx (int8), onnx/model_fp16.onnx, onnx/model_q4.onnx (int4),
    onnx/model_int8.onnx (int8_static), external data as FILE.onnx_data; config.json, model.safetensors
    (trained builds), the test data, a model card README.md and manifest.json (every file by its
    Hub name, so zoo pull verifies a download from the Hub).

    Needs the publish extra (huggingface_hub), checked before any model is read.

    \b
    Examples:
      zoo export hf dense_b0 --to hf-repos --repo-id me/dense_b0
      zoo export hf --to hf-repos --repo-id 'me/{name}'     # every model, each its own repository
      hf upload me/dense_b0 hf-repos/dense_b0
      zoo pull dense_b0 --from https://huggingface.co/me/dense_b0/resolve/COMMIT/
    """
    from ..formats.hf import export_hf

    rows = export_hf(artifacts, to, names or None, repo_id=repo_id, progress=progress)
    if as_json:
        emit_json({"to": str(to), "files": rows})
    else:
        _files_table(rows, to)


@export_group.command("triton")
@click.argument("names", nargs=-1)
@click.option("--to", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Triton model repository folder to write (one model per NAME and precision).")
@_artifacts
@click.option("--precision", "precisions", default=None, metavar="P,...",
              help=f"Comma list of {', '.join(FILE_PRECISIONS)} [default: every precision built].")
@click.option("--max-batch-size", type=click.IntRange(min=1), default=64, show_default=True,
              help="Triton's max_batch_size (dynamic batching up to this many rows).")
@json_option
def triton_cmd(names, to, artifacts, precisions, max_batch_size, as_json):
    """A Triton Inference Server model repository: NAME_PRECISION/config.pbtxt (onnxruntime backend,
    dynamic batching, labels.txt when the model has labels) and NAME_PRECISION/VERSION/model.onnx.
    A precision asked for that a model was not built with is left out and named on stderr (and under
    "skipped" with --json); one that no file of a model has is an error.

    \b
    Examples:
      zoo export triton --to model_repository
      zoo export triton dense_b0 --to model_repository --precision fp32,int8 --max-batch-size 128
      tritonserver --model-repository=$PWD/model_repository
    """
    from ..formats.triton import export_triton

    skipped: list[dict] = []
    rows = export_triton(artifacts, to, names or None, precisions=precisions, max_batch_size=max_batch_size,
                         progress=progress, skipped=skipped)
    if skipped:  # asked for and not built: said once, so a partial repository is no surprise
        by_precision: dict[str, list[str]] = {}
        for s in skipped:
            by_precision.setdefault(s["precision"], []).append(s["model"])
        progress("note: not exported, not built: " + "; ".join(f"{p} of {', '.join(ms)}" for p, ms in by_precision.items())
                 + f" (build it with `zoo build NAME --precision fp32,{next(iter(by_precision))}`)")
    if as_json:
        emit_json({"to": str(to), "files": rows, "skipped": skipped})
    else:
        _files_table(rows, to)


def publish_oci(names, to: str, artifacts, as_json: bool) -> None:
    """``zoo publish --to oci://HOST[:PORT]/REPO``: each model to REPO/NAME, tagged with its version."""
    from ..formats.oci import push

    rows = push(artifacts, to, names or None, progress=progress)
    if as_json:
        emit_json({"to": to, "models": rows})
        return
    click.echo(table(rows, [("model", "model"), ("version", "version"), ("layers", "layers"), ("tag", "tag"),
                            ("digest", "digest")]))
