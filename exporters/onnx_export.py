"""Export a model to a single, reproducible ONNX file with a dynamic batch axis.

What varies between runs is stripped: the dynamo exporter writes stack traces (with absolute
paths), FX node dumps and class hierarchies into node ``metadata_props``; doc strings are cleared
too. Serialisation is deterministic, so the same model and toolchain give the same bytes.
"""

from __future__ import annotations

import ast
import contextlib
import copy
import io
import logging
import os
import warnings

import onnx
import torch
from torch import nn

from .. import interrupt, onnxio
from ..errors import ExportError
from ..modelinfo import DEFAULT_VERSION, ONNX_DOMAIN, doc_line
from ..model.repro import sqrt64

from .spec import ExportSpec

@torch.no_grad()
def fold_batchnorm(model: nn.Module) -> nn.Module:
    """A copy of ``model`` in eval mode with every ``Linear -> BatchNorm1d`` pair merged into the Linear.

    The BatchNorm becomes ``nn.Identity``; the arithmetic runs in float64 and is cast once, so the
    folded weights are the same bits on any machine.
    """
    model = copy.deepcopy(model).eval()
    for parent in model.modules():
        children = list(parent.named_children())
        for (_, lin), (bn_name, bn) in zip(children, children[1:]):
            if not (isinstance(lin, nn.Linear) and isinstance(bn, nn.BatchNorm1d)):
                continue
            scale = bn.weight.double() / sqrt64(bn.running_var.double() + bn.eps)
            bias = lin.bias.double() if lin.bias is not None else torch.zeros(lin.out_features, dtype=torch.float64)
            new_bias = (bias - bn.running_mean.double()) * scale + bn.bias.double()
            folded = nn.Linear(lin.in_features, lin.out_features, bias=True)
            folded.weight.copy_((lin.weight.double() * scale[:, None]).float())
            folded.bias.copy_(new_bias.float())
            setattr(parent, _name_of(parent, lin), folded)
            setattr(parent, bn_name, nn.Identity())
    return model


def _name_of(parent: nn.Module, child: nn.Module) -> str:
    return next(n for n, c in parent.named_children() if c is child)


@contextlib.contextmanager
def quiet(*logger_names: str):
    """Silence the named loggers ("" is the root), warnings and stdout: the exporters and the
    quantiser print progress and advice of their own; the zoo reports progress itself."""
    loggers = [logging.getLogger(n) for n in logger_names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _export_dynamo(model: nn.Module, example: torch.Tensor, spec: ExportSpec) -> onnx.ModelProto:
    batch = torch.export.Dim(spec.batch_axis, min=1)
    program = torch.onnx.export(
        model,
        (example,),
        dynamo=True,
        input_names=[spec.input_name],
        output_names=[spec.output_name],
        dynamic_shapes=({0: batch},),
        opset_version=spec.opset,
        external_data=False,
        optimize=spec.optimize,
        verbose=False,
        report=False,
    )
    return program.model_proto


def _export_torchscript(model: nn.Module, example: torch.Tensor, spec: ExportSpec) -> onnx.ModelProto:
    buf = io.BytesIO()
    torch.onnx.export(
        model,
        (example,),
        buf,
        dynamo=False,
        input_names=[spec.input_name],
        output_names=[spec.output_name],
        dynamic_axes=spec.dynamic_axes,
        opset_version=spec.opset,
        do_constant_folding=spec.optimize,
    )
    return onnx.load_from_string(buf.getvalue())


def export_model(
    model: nn.Module, input_dim: int, spec: ExportSpec = ExportSpec(), metadata: dict[str, str] | None = None,
    model_version: int = DEFAULT_VERSION,
) -> onnx.ModelProto:
    """Export ``model`` (``[batch, input_dim]`` in) to a checked, reproducible ``ModelProto``.

    It carries ONNX's standard fields (zoo.modelinfo): ``domain``, ``model_version``, a one-line
    ``doc_string`` made from ``metadata``, and ``metadata`` as ``metadata_props``."""
    model = fold_batchnorm(model) if spec.fold_batchnorm else copy.deepcopy(model).eval()
    example = torch.zeros(spec.export_batch, input_dim)
    exporter = _export_dynamo if spec.exporter == "dynamo" else _export_torchscript
    try:
        with quiet("torch.onnx", "torch.export", "torch._dynamo", "onnxscript"):
            proto = exporter(model, example, spec)
    except Exception as e:  # the exporters raise many types; the zoo reports one
        interrupt.check()  # a Ctrl-C the exporter reported as a failed capture
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ExportError(f"{spec.exporter} export failed: {first}") from e
    interrupt.check()  # or swallowed, trying its next capture strategy, which then succeeded
    _make_reproducible(proto, spec, metadata or {})
    proto.domain = ONNX_DOMAIN
    proto.model_version = int(model_version)
    proto.doc_string = doc_line(metadata or {}, "fp32")
    try:
        onnxio.check(proto)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        raise ExportError(f"exported model fails onnx.checker: {str(e).splitlines()[0]}") from e
    return proto


def _make_reproducible(proto: onnx.ModelProto, spec: ExportSpec, metadata: dict[str, str]) -> None:
    name_nodes_by_module(proto.graph)  # before the metadata it reads is stripped
    free_intermediate_batch(proto.graph)
    proto.ir_version = spec.ir_version
    proto.doc_string = ""
    proto.graph.doc_string = ""
    proto.graph.name = "dense_efficientnet"
    for graph in _graphs(proto.graph):
        for node in graph.node:
            del node.metadata_props[:]
            node.doc_string = ""
        for vi in list(graph.input) + list(graph.output) + list(graph.value_info):
            vi.doc_string = ""
            del vi.metadata_props[:]
        for init in graph.initializer:
            init.doc_string = ""
            del init.metadata_props[:]
        del graph.metadata_props[:]
    for func in proto.functions:
        for node in func.node:
            del node.metadata_props[:]
            node.doc_string = ""
        del func.metadata_props[:]
    del proto.metadata_props[:]
    for key in sorted(metadata):
        proto.metadata_props.add(key=key, value=str(metadata[key]))
    # The torchscript exporter names the batch axis itself in some places; make it the spec's.
    for vi in list(proto.graph.input) + list(proto.graph.output):
        dims = vi.type.tensor_type.shape.dim
        if dims and dims[0].dim_param:
            dims[0].dim_param = spec.batch_axis


NAME_SCOPES = "pkg.torch.onnx.name_scopes"


def name_nodes_by_module(graph: onnx.GraphProto) -> None:
    """Name each node ``<module path>/<OpType>`` (``stem.0/Gemm``, ``blocks.3.se.reduce/Gemm``,
    ``blocks.3/Add``), ``_1``, ``_2`` ... after repeats, so a model opened in Netron shows the
    architecture. The path is the innermost module of the dynamo exporter's name scopes (module
    paths only: no file names, nothing run-specific). Nodes without scopes (the torchscript
    exporter already writes scoped names) keep their names."""
    seen: dict[str, int] = {}
    for node in graph.node:
        meta = {p.key: p.value for p in node.metadata_props}
        base = node.name
        if NAME_SCOPES in meta:
            try:
                scopes = ast.literal_eval(meta[NAME_SCOPES])
            except (ValueError, SyntaxError):
                scopes = []
            modules = [s for s in scopes[:-1] if s]  # the last scope is the aten op's own name
            base = f"{modules[-1]}/{node.op_type}" if modules else node.op_type
        n = seen.get(base, 0)
        seen[base] = n + 1
        node.name = base if n == 0 else f"{base}_{n}"


def free_intermediate_batch(graph: onnx.GraphProto) -> None:
    """Drop the batch symbol from intermediate ``value_info``: left there, it pins the name ``batch``
    and a runtime that is told another name or a fixed size (tract's ``set_input_fact``, OpenVINO's
    ``reshape``) refuses the model. Shapes still infer from the input; the other dims stay."""
    for vi in graph.value_info:
        for dim in vi.type.tensor_type.shape.dim:
            if dim.dim_param:
                dim.ClearField("dim_param")


def _graphs(graph: onnx.GraphProto):
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from _graphs(attr.g)
            for g in attr.graphs:
                yield from _graphs(g)


def serialize(proto: onnx.ModelProto, what: str = "model") -> bytes:
    """Deterministic bytes of a self-contained model (map fields in a fixed order); a model that
    needs external data is laid out by :func:`zoo.onnxio.model_files` instead."""
    if onnxio.needs_external(proto):
        limit = f"{onnxio.INLINE_LIMIT / 2**30:g} GiB"
        raise ExportError(f"{what} reaches protobuf's {limit} limit: it can only be written with external data, "
                          "which the precision variants do not support yet")
    return proto.SerializeToString(deterministic=True)


def seal(proto: onnx.ModelProto, meta: dict[str, str], what: str) -> bytes:
    """A derived model's bytes (a precision variant, a target): ``meta`` as its metadata, in key
    order for reproducible bytes, checked by onnx.checker (``what`` names it in the error)."""
    del proto.metadata_props[:]
    for key in sorted(meta):
        proto.metadata_props.add(key=key, value=meta[key])
    try:
        onnxio.check(proto)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        raise ExportError(f"{what} fails onnx.checker: {str(e).splitlines()[0]}") from e
    return serialize(proto, f"the {what}")


os.environ.setdefault("TORCH_ONNX_EXPERIMENTAL_RUNTIME_TYPE_CHECK", "0")
