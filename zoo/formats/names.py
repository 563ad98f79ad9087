"""One table: the zoo's file names and what each publishing format calls them.

The zoo keeps its own layout (``dense_b0/model.int8.onnx``, ``test_data_set_0/...``); each format
is written by translating at publish time, never by renaming what the builder writes.

* Hugging Face (Optimum / transformers.js): ``onnx/model.onnx``, ``onnx/model_quantized.onnx``
  (transformers.js ``dtype: "q8"``), ``onnx/model_int8.onnx`` (``"int8"``), ``onnx/model_fp16.onnx``,
  ``onnx/model_q4.onnx``; external data as ``<file>.onnx_data`` beside the file.
* Triton: one model per zoo model and precision, ``<name>_<precision>/<version>/model.onnx``.
* OCI (CNCF ModelPack): the media type of each file's layer and the model config's
  ``precision`` / ``quantization``.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..spec import FILE_PRECISIONS


@dataclass(frozen=True)
class PrecisionNames:
    hf: str  # the file under onnx/ in a Hugging Face model repository
    quantization: str | None  # ModelPack config.quantization (None: not quantised)
    modelpack_precision: str  # ModelPack config.precision: the weights' storage type


PRECISION_NAMES = {
    "fp32": PrecisionNames("model.onnx", None, "float32"),
    "int8": PrecisionNames("model_quantized.onnx", "dynamic int8 (onnxruntime)", "int8"),
    "int8_static": PrecisionNames("model_int8.onnx", "static int8 QDQ (onnxruntime)", "int8"),
    "fp16": PrecisionNames("model_fp16.onnx", None, "float16"),
    "int4": PrecisionNames("model_q4.onnx", "int4 weight-only blocks (MatMulNBits)", "int4"),
}
assert set(PRECISION_NAMES) == set(FILE_PRECISIONS), "every file precision needs its names in each format"

HF_ONNX_DIR = "onnx"
HF_DATA_SUFFIX = "_data"  # model.onnx -> model.onnx_data (Optimum, transformers.js)
# Other roles, by their place in a Hugging Face repository (test data keeps its ONNX test-set layout).
HF_ROLE_FILES = {"weights": "model.safetensors", "train_record": "train.json"}

TRITON_MODEL_FILE = "model.onnx"


def triton_model_name(name: str, precision: str) -> str:
    return f"{name}_{precision}"


# CNCF ModelPack (model-spec v1) media types and annotations.
MODELPACK_ARTIFACT = "application/vnd.cncf.model.manifest.v1+json"
MODELPACK_CONFIG = "application/vnd.cncf.model.config.v1+json"
MODELPACK_ROLE_MEDIA = {
    "model": "application/vnd.cncf.model.weight.v1.raw",
    "external_data": "application/vnd.cncf.model.weight.v1.raw",
    "weights": "application/vnd.cncf.model.weight.v1.raw",
    "test_input": "application/vnd.cncf.model.dataset.v1.raw",
    "test_output": "application/vnd.cncf.model.dataset.v1.raw",
    "train_record": "application/vnd.cncf.model.doc.v1.raw",
    "target": "application/vnd.cncf.model.weight.v1.raw",  # a model file for older / smaller runtimes
    "target_config": "application/vnd.cncf.model.doc.v1.raw",
    "profile": "application/vnd.cncf.model.doc.v1.raw",
    "manifest": "application/vnd.cncf.model.weight.config.v1.raw",  # the zoo's manifest.json of the model
}
MODELPACK_FILEPATH = "org.cncf.model.filepath"
OCI_TITLE = "org.opencontainers.image.title"  # what `oras pull` names the file


def hf_model_file(precision: str) -> str:
    return f"{HF_ONNX_DIR}/{PRECISION_NAMES[precision].hf}"


def hf_data_file(model_file: str) -> str:
    """``onnx/model_fp16.onnx`` -> ``onnx/model_fp16.onnx_data``."""
    return model_file + HF_DATA_SUFFIX
