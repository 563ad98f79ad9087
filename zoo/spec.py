"""Names shared by every layer: precisions, file roles and their paths, execution-provider aliases.

Pure Python, no third-party imports: the download client and the builder spell these the same way.
"""

from __future__ import annotations

PRECISIONS = ("fp32", "int8", "fp16")
# What each file of a manifest entry is; the manifest schema lists the same roles.
FILE_ROLES = ("model", "test_input", "test_output", "weights", "train_record")
MODEL_FILE = "model.onnx"
TEST_SET = "test_data_set_0"

PROVIDER_ALIASES = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider",
                    "tensorrt": "TensorrtExecutionProvider", "trt": "TensorrtExecutionProvider"}
KNOWN_PROVIDERS = ("CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider")
GPU_PROVIDERS = ("CUDAExecutionProvider", "TensorrtExecutionProvider")


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; valid precisions: {', '.join(PRECISIONS)}")
    return precision


def parse_precisions(text: str | list[str] | tuple[str, ...], always_fp32: bool = True) -> tuple[str, ...]:
    """``"fp32,int8"`` -> ``("fp32", "int8")`` in table order, duplicates dropped, unknown names rejected."""
    items = text.split(",") if isinstance(text, str) else list(text)
    asked = {check_precision(p.strip().lower()) for p in items if p.strip()}
    if not asked:
        raise ValueError("give at least one precision (fp32, int8, fp16)")
    if always_fp32:
        asked.add("fp32")
    return tuple(p for p in PRECISIONS if p in asked)


def variant_path(name: str, precision: str) -> str:
    """The file of ``name`` at ``precision``: ``<name>/model.onnx`` for fp32, else ``model.<p>.onnx``."""
    check_precision(precision)
    return f"{name}/{MODEL_FILE}" if precision == "fp32" else f"{name}/model.{precision}.onnx"


def resolve_provider(name: str) -> str:
    """``cpu``/``cuda``/``tensorrt`` (any case) or a full ONNX Runtime provider name -> the full name."""
    full = PROVIDER_ALIASES.get(name.strip().lower(), name.strip())
    if full not in KNOWN_PROVIDERS:
        raise ValueError(f"unknown execution provider {name!r}; valid: cpu, cuda, tensorrt "
                         f"(or CPUExecutionProvider, CUDAExecutionProvider, TensorrtExecutionProvider)")
    return full
