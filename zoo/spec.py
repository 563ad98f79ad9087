"""Names shared by every layer: precisions, file roles and their paths, execution-provider aliases.

Pure Python, no third-party imports: the download client and the builder spell these the same way.
"""

from __future__ import annotations

from .errors import InputError

PRECISIONS = ("fp32", "int8", "fp16")  # what zoo build makes from a model alone
STATIC_INT8 = "int8_static"  # made by zoo bench --recommend: its activation scales need the training split
INT4 = "int4"  # weight-only 4-bit (ONNX Runtime's MatMulNBits), made by zoo bench --recommend, gated there
RECOMMEND_PRECISIONS = (STATIC_INT8, INT4)  # candidates zoo bench makes beside the built files
FILE_PRECISIONS = PRECISIONS + RECOMMEND_PRECISIONS  # every precision a published model file may have
# Seconds the accuracy-driven quantisation search may spend per model and precision (--quant-budget);
# here, not in exporters.quant_search, so that the CLI's options load without torch.
QUANT_BUDGET_S = 600.0
# What each file of a manifest entry is; the manifest schema lists the same roles.
FILE_ROLES = ("model", "external_data", "test_input", "test_output", "weights", "train_record", "target",
              "target_config", "profile")
# Files for older and smaller runtimes (zoo build --opsets / --ort) and the deployment profile.
TARGET_ROLE, TARGET_CONFIG_ROLE, PROFILE_ROLE = "target", "target_config", "profile"
EXTERNAL_ROLE = "external_data"  # a model file's tensors, ``<model file>.data`` beside it (zoo.onnxio)
MODEL_FILE = "model.onnx"
TEST_SET = "test_data_set_0"

PROVIDER_ALIASES = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider",
                    "tensorrt": "TensorrtExecutionProvider", "trt": "TensorrtExecutionProvider"}
KNOWN_PROVIDERS = ("CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider")
GPU_PROVIDERS = ("CUDAExecutionProvider", "TensorrtExecutionProvider")
# Independent runtimes of the parity matrix: Python packages, then JavaScript (verify/node).
# openvino:default is OpenVINO as it runs out of the box (bf16 on CPUs with AVX-512 BF16 / AMX).
PY_RUNTIMES = ("reference", "openvino", "openvino:default", "tract")
JS_RUNTIMES = ("node", "web")
C_RUNTIMES = ("c", "cpp")  # examples/c and examples/cpp, when built
RUNTIMES = PY_RUNTIMES + JS_RUNTIMES + C_RUNTIMES


def eligible(rec: dict) -> bool:
    """Whether a peers record (``zoo bench --recommend``) may be recommended: measured, and its
    accuracy passed the gate. The builder's recommendation and the hub's choice of file both ask."""
    acc = rec.get("accuracy") or {}
    return rec.get("verdict") == "measured" and acc.get("verdict") == "pass"


def check_precision(precision: str, valid: tuple[str, ...] = PRECISIONS) -> str:
    if precision not in valid:
        raise InputError(f"unknown precision {precision!r}; valid precisions: {', '.join(valid)}")
    return precision


def parse_precisions(text: str | list[str] | tuple[str, ...], always_fp32: bool = True,
                     valid: tuple[str, ...] = PRECISIONS) -> tuple[str, ...]:
    """``"fp32,int8"`` -> ``("fp32", "int8")`` in table order, duplicates dropped, unknown names rejected
    (``valid``: what zoo build makes, or FILE_PRECISIONS where published files are chosen)."""
    items = text.split(",") if isinstance(text, str) else list(text)
    asked = {check_precision(p.strip().lower(), valid) for p in items if p.strip()}
    if not asked:
        raise InputError(f"give at least one precision ({', '.join(valid)})")
    if always_fp32:
        asked.add("fp32")
    return tuple(p for p in valid if p in asked)


def variant_path(name: str, precision: str) -> str:
    """The file of ``name`` at ``precision`` (any of FILE_PRECISIONS): ``<name>/model.onnx`` for
    fp32, else ``model.<p>.onnx``."""
    check_precision(precision, FILE_PRECISIONS)
    return f"{name}/{MODEL_FILE}" if precision == "fp32" else f"{name}/model.{precision}.onnx"


def parse_runtimes(text: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """``"tract,node"`` -> ``("tract", "node")``, duplicates dropped, unknown names rejected."""
    items = text.split(",") if isinstance(text, str) else list(text)
    asked = list(dict.fromkeys(r.strip().lower() for r in items if r.strip()))
    unknown = [r for r in asked if r not in RUNTIMES]
    if unknown:
        raise InputError(f"unknown runtime {unknown[0]!r}; valid runtimes: {', '.join(RUNTIMES)}")
    if not asked:
        raise InputError(f"give at least one runtime ({', '.join(RUNTIMES)})")
    return tuple(asked)


def resolve_provider(name: str) -> str:
    """``cpu``/``cuda``/``tensorrt`` (any case) or a full ONNX Runtime provider name -> the full name."""
    full = PROVIDER_ALIASES.get(name.strip().lower(), name.strip())
    if full not in KNOWN_PROVIDERS:
        raise InputError(f"unknown execution provider {name!r}; valid: cpu, cuda, tensorrt "
                         f"(or CPUExecutionProvider, CUDAExecutionProvider, TensorrtExecutionProvider)")
    return full
