"""One model's artifacts, made in memory: the ONNX bytes, the test data, the manifest entry."""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from .. import onnxio
from ..exporters.onnx_export import export_model
from ..exporters.ports import io_ports
from ..exporters.spec import ExportSpec
from ..fsutil import sha256_bytes
from ..model import DenseEfficientNet, create, variant_config
from ..model.data import EvalSet, eval_set, record_path
from ..model.reference import forward64
from ..model.repro import stream, to_float32
from ..model.scaling import PAPER_COEFFICIENTS, Variant, compound, get_variant
from ..model.weights import load_weights_bytes, read_bytes
from ..modelinfo import ModelInfo
from ..spec import EXTERNAL_ROLE
from ..versions import toolchain_versions

FAMILY = "dense_efficientnet"
TEST_BATCH = 3  # differs from the export batch (2), so a frozen batch axis is caught
TEST_SET = "test_data_set_0"
WEIGHTS_FILE = "weights.safetensors"
TRAIN_RECORD_FILE = "train.json"
WEIGHT_ROLES = {WEIGHTS_FILE: "weights", TRAIN_RECORD_FILE: "train_record"}


@dataclass(frozen=True)
class ModelRequest:
    """What to build: a table row (or a compound-scaled one) and the options that shape it."""

    variant: Variant
    seed: int = 0
    num_classes: int = 10
    input_dim: int | None = None
    flavor: str = "paper"
    spec: ExportSpec = field(default_factory=ExportSpec)
    weights: str | None = None  # a safetensors file (else seeded weights)
    eval_data: str | None = None  # a .npz test split (else the one named by the weights' .train.json)
    info: ModelInfo = field(default_factory=ModelInfo)  # version, author, license, labels (zoo.modelinfo)

    @property
    def name(self) -> str:
        return self.variant.name

    @property
    def effective_input_dim(self) -> int:
        return self.input_dim if self.input_dim is not None else self.variant.input_dim

    def create(self, weights: bytes | None = None) -> DenseEfficientNet:
        """The seeded model, or with ``weights`` (a safetensors file's bytes) that state dict's."""
        if weights is None:
            return create(self.variant, self.num_classes, self.seed, self.flavor, self.input_dim)
        model = DenseEfficientNet(variant_config(self.variant, self.num_classes, self.flavor, self.input_dim))
        return load_weights_bytes(model, weights, str(self.weights)).eval()

    def eval_set(self) -> EvalSet | None:
        return eval_set(self.effective_input_dim, self.eval_data, self.weights)

    def scaling(self) -> dict:
        v = self.variant
        return {
            "width": v.width,
            "depth": v.depth,
            "resolution": v.resolution,
            "dropout": v.dropout,
            "input_dim": self.effective_input_dim,
            "phi": v.phi,
            # Only for compound rows with other coefficients than the paper's: the default rows'
            # bytes (and the committed sha256 record) stay as they were.
            **({"coefficients": dict(zip(("alpha", "beta", "gamma"), v.coefficients))}
               if v.coefficients not in (None, PAPER_COEFFICIENTS) else {}),
        }

    @classmethod
    def from_entry(cls, entry: dict, weights: str | None = None, eval_data: str | None = None) -> "ModelRequest":
        """The request that built a manifest entry (for ``--check`` and ``zoo verify``); an entry
        built from a weights file needs that file (and its evaluation set) given again."""
        phi = entry["scaling"].get("phi")
        coefficients = entry["scaling"].get("coefficients", {})
        variant = compound(phi, **coefficients) if phi is not None else get_variant(entry["model"])
        input_dim = entry["scaling"]["input_dim"]
        return cls(
            variant=variant,
            seed=entry["seed"],
            num_classes=entry["num_classes"],
            input_dim=None if input_dim == variant.input_dim else input_dim,
            flavor=entry["flavor"],
            spec=ExportSpec(opset=entry["opset_version"], exporter=entry["exporter"], ir_version=entry["ir_version"],
                            external_data=any(f["role"] == EXTERNAL_ROLE for f in entry.get("files", []))),
            weights=weights if entry.get("weights", {}).get("source") == "file" else None,
            eval_data=eval_data,
            info=ModelInfo.from_entry(entry.get("onnx_metadata")),
        )


def pinned_toolchain() -> dict[str, str]:
    """Toolchain versions as written into an .onnx file: no Python patch level, no local build tag
    (``2.13.0+cpu`` and ``2.13.0+cu128`` export the same graph), so the bytes match on any machine."""
    return {k: v.split("+")[0] for k, v in toolchain_versions().items() if k != "python"}


def onnx_metadata(req: ModelRequest, weights_sha256: str | None = None) -> dict[str, str]:
    # Seeded artifacts keep exactly their previous bytes: the weights key is added only for a file.
    return ({"zoo.weights_sha256": weights_sha256} if weights_sha256 else {}) | {
        "zoo.name": req.name,
        "zoo.family": FAMILY,
        "zoo.flavor": req.flavor,
        "zoo.scaling": json.dumps(req.scaling(), sort_keys=True),
        "zoo.input_dim": str(req.effective_input_dim),
        "zoo.num_classes": str(req.num_classes),
        "zoo.seed": str(req.seed),
        "zoo.toolchain": json.dumps(pinned_toolchain(), sort_keys=True),
    } | req.info.props()


def test_input(req: ModelRequest, batch: int = TEST_BATCH) -> np.ndarray:
    """The seeded test input: N(0,1) (Irwin-Hall) from the ``test_data`` stream of the reproducibility
    rule, a stream of its own (issue 17: it used to repeat the stem's weights), rounded once to float32."""
    return to_float32(stream("test_data", req.seed, "input").normal((batch, req.effective_input_dim)))


def expected_output(model: DenseEfficientNet, x: np.ndarray) -> np.ndarray:
    """The model's output for ``x``, computed in float64 (:func:`zoo.model.reference.forward64`, the same
    bits on any machine) and rounded once to float32: also a better reference than a float32 pass."""
    return to_float32(forward64(model, torch.from_numpy(x)))


def tensor_bytes(array: np.ndarray, name: str) -> bytes:
    return numpy_helper.from_array(np.ascontiguousarray(array), name=name).SerializeToString(deterministic=True)


def read_tensor(data: bytes) -> np.ndarray:
    t = onnx.TensorProto()
    t.ParseFromString(data)
    # to_array can return a read-only view of the protobuf bytes; torch.from_numpy warns on those.
    return np.array(numpy_helper.to_array(t))


@dataclass
class Artifact:
    """A built model before anything is written: file bytes by relative path, plus timings."""

    request: ModelRequest
    model: DenseEfficientNet
    files: dict[str, bytes]  # relative path -> bytes, the model first
    params: int
    flops: int
    ports: dict
    test_in: np.ndarray
    test_out: np.ndarray
    timings_s: dict[str, float] = field(default_factory=dict)
    weights: dict = field(default_factory=dict)  # the manifest entry's "weights"
    eval_set: EvalSet | None = None
    # The model as the in-process checks run it: its bytes, inline even where the files use external
    # data, or (over 2 GiB) the path of the files in a private folder that lives as long as this.
    model_ref: onnxio.ModelRef = b""
    _folder: object = None

    @property
    def model_path(self) -> str:
        return f"{self.request.name}/model.onnx"

    @property
    def model_bytes(self) -> bytes:
        """The bytes of the model file as written (with external data: the small ``.onnx``)."""
        return self.files[self.model_path]

    @property
    def model_size(self) -> int:
        """Bytes of the model, external data included."""
        return sum(len(self.files[p]) for p in (self.model_path, onnxio.data_file(self.model_path)) if p in self.files)

    def manifest_entry(self) -> dict:
        req, model_sha = self.request, sha256_bytes(self.model_bytes)
        roles = {self.model_path: "model", onnxio.data_file(self.model_path): EXTERNAL_ROLE}
        roles.update({p: ("test_input" if p.endswith("input_0.pb") else "test_output") for p in self.files if p.endswith(".pb")})
        roles.update({p: WEIGHT_ROLES[p.rsplit("/", 1)[-1]] for p in self.files if p.rsplit("/", 1)[-1] in WEIGHT_ROLES})
        return {
            "model": req.name,
            "model_path": self.model_path,
            "onnx_version": onnx.__version__,
            "opset_version": req.spec.opset,
            "metadata": {
                "model_sha": model_sha,
                "model_bytes": len(self.model_bytes),
                "tags": ["dense-efficientnet", req.flavor, "vector-classification"],
                "io_ports": self.ports,
            },
            "family": FAMILY,
            "flavor": req.flavor,
            "scaling": req.scaling(),
            "num_classes": req.num_classes,
            "params": self.params,
            "flops": self.flops,
            "seed": req.seed,
            "exporter": req.spec.exporter,
            "ir_version": req.spec.ir_version,
            "toolchain": toolchain_versions(),
            "files": [file_record(p, b, roles[p], "fp32") for p, b in self.files.items()],
            "test_data": {"batch": int(self.test_in.shape[0]), "seed": req.seed, "sets": [f"{req.name}/{TEST_SET}"]}
            | ({"source": f"{self.eval_set.name} test split"} if self.eval_set is not None else {}),
            "weights": self.weights or {"source": "seeded", "seed": req.seed},
            "onnx_metadata": req.info.entry(),
            **({"eval_data": self.eval_set.describe()} if self.eval_set is not None else {}),
            "parity": [],
            "accuracy": [],
            "latency": [],
        }


def make_artifact(req: ModelRequest) -> Artifact:
    """Create the seeded model, export it, and compute its test data (nothing is written)."""
    timings: dict[str, float] = {}
    t = time.perf_counter()
    wdata = read_bytes(req.weights) if req.weights is not None else None
    model = req.create(wdata)
    evals = req.eval_set()
    timings["create"] = time.perf_counter() - t
    winfo = {"source": "file", "sha256": sha256_bytes(wdata), "bytes": len(wdata)} if wdata is not None else {}

    t = time.perf_counter()
    proto = export_model(model, req.effective_input_dim, req.spec, onnx_metadata(req, winfo.get("sha256")),
                         req.info.version)
    proto.producer_version = proto.producer_version.split("+")[0]
    name = req.name
    model_files = onnxio.model_files(proto, f"{name}/model.onnx", True if req.spec.external_data else None)
    ref, folder = in_process_ref(proto, model_files, f"{name}/model.onnx")
    timings["export"] = time.perf_counter() - t

    # A trained model's test data are real samples (real classes); the expected output is PyTorch's,
    # computed by the deterministic float64 forward pass of the reproducibility rule.
    x = test_input(req) if evals is None else np.ascontiguousarray(evals.x_test[:TEST_BATCH])
    y = expected_output(model, x)
    files = {
        **model_files,
        f"{name}/{TEST_SET}/input_0.pb": tensor_bytes(x, req.spec.input_name),
        f"{name}/{TEST_SET}/output_0.pb": tensor_bytes(y, req.spec.output_name),
    }
    if wdata is not None:  # published beside the model, so users can fine-tune it
        files[f"{name}/{WEIGHTS_FILE}"] = wdata
        rec = record_path(req.weights)
        if rec.is_file():
            files[f"{name}/{TRAIN_RECORD_FILE}"] = rec.read_bytes()
    return Artifact(
        request=req,
        model=model,
        files=files,
        params=sum(p.numel() for p in model.parameters() if p.requires_grad),
        flops=model.config.flops(),
        ports=io_ports(proto),
        test_in=x,
        test_out=y,
        timings_s=timings,
        weights=winfo,
        eval_set=evals,
        model_ref=ref,
        _folder=folder,
    )


def in_process_ref(proto, files: dict[str, bytes], model_path: str) -> tuple[onnxio.ModelRef, object]:
    """``(model ref, folder to keep alive)`` for the checks run in this process: the model file's
    bytes; inline bytes where the files use external data but the model fits one message; else
    the files in a private temporary folder (removed when the folder object is collected)."""
    if onnxio.data_file(model_path) not in files:
        return files[model_path], None
    if not onnxio.needs_external(proto):
        return proto.SerializeToString(deterministic=True), None
    folder = tempfile.TemporaryDirectory(prefix="zoo-build-")
    for rel in (model_path, onnxio.data_file(model_path)):
        (Path(folder.name) / Path(rel).name).write_bytes(files[rel])
    return Path(folder.name) / Path(model_path).name, folder


def file_record(path: str, data: bytes, role: str, precision: str) -> dict:
    """A manifest ``files`` record; an external-data file names the model file it belongs to."""
    rec = {"path": path, "bytes": len(data), "sha256": sha256_bytes(data), "role": role, "precision": precision}
    if role == EXTERNAL_ROLE:
        rec["of"] = path.removesuffix(onnxio.DATA_SUFFIX)
    return rec


def request_for(name: str | None, *, phi: float | None = None, **options) -> ModelRequest:
    variant = compound(phi) if phi is not None else get_variant(name)
    req = ModelRequest(variant=variant, **options)
    variant_config(variant, req.num_classes, req.flavor, req.input_dim)  # validate early, cheaply
    return req
