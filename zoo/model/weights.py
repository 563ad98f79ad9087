"""Weights files: PyTorch state dicts in safetensors, checked key by key before they are used.

Only safetensors is read: it holds raw tensors and a JSON header, so loading it runs no code. A
pickle (``torch.save``'s ``.pt``/``.pth``) is refused with the one-line command that converts it.
A state dict must fit the network exactly (every key, shape and dtype, BatchNorm running
statistics included) and hold no NaN or Inf; every failure is a :class:`WeightsError` (bad input).
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import torch
from torch import nn

from ..errors import WeightsError, cut
from ..fsutil import NotRegularFileError, atomic_path, read_regular, sha256_bytes

SUFFIX = ".safetensors"
PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin")
MAX_DIFFS = 3  # differing keys named in an error
# The safetensors dtypes a weights file may hold (float8 and 4-bit types are refused: no network of
# the zoo has them, and torch cannot check them for NaN).
DTYPES = ("F64", "F32", "F16", "BF16", "I64", "I32", "I16", "I8", "U8", "BOOL")


def convert_hint(path: str | os.PathLike) -> str:
    dst = Path(path).with_suffix(SUFFIX)
    return (f"convert it once, where you trust the file: python -c \"import torch; from safetensors.torch import "
            f"save_file; save_file(torch.load('{path}', weights_only=True), '{dst}')\"")


def _refuse_pickle(path: Path, data: bytes) -> None:
    # torch.save writes a zip archive (PK..) since 1.6 and a bare pickle (protocol byte 0x80) before.
    if data[:4] == b"PK\x03\x04" or data[:1] == b"\x80" or path.suffix.lower() in PICKLE_SUFFIXES:
        raise WeightsError(f"{path}: a pickle (torch.save) file is never loaded, only safetensors; "
                           + convert_hint(path))


def read_bytes(path: str | os.PathLike) -> bytes:
    path = Path(path)
    if not path.exists():
        raise WeightsError(f"{path}: no such weights file")
    try:
        return read_regular(path)  # a FIFO or device is refused without blocking
    except NotRegularFileError:
        raise WeightsError(f"{path}: not a file (give NAME.safetensors, or a folder with --all)") from None
    except OSError as e:
        raise WeightsError(f"{path}: cannot read: {e.strerror or e}") from None


def _check_header(raw: bytes, where: str) -> int:
    """Check a safetensors header as a stranger's input (every value's type, each dtype one the
    zoo reads, offsets in order) before the parser sees it; returns the end of the data."""
    try:
        header = json.loads(raw)
    except (ValueError, RecursionError):  # bad JSON or UTF-8; nesting 100,000 deep
        raise WeightsError(f"{where}: not a safetensors file (unreadable header)") from None
    if not isinstance(header, dict):
        raise WeightsError(f"{where}: not a safetensors file (the header is not a JSON object)")
    end = 0
    for key, v in header.items():
        if key == "__metadata__":
            if not isinstance(v, dict) or not all(isinstance(x, str) for x in v.values()):
                raise WeightsError(f"{where}: not a safetensors file (__metadata__ is not an object of strings)")
            continue
        name = cut(repr(key), 80)
        if not isinstance(v, dict):
            raise WeightsError(f"{where}: tensor {name}: not an object in the header")
        dtype, shape, offsets = v.get("dtype"), v.get("shape"), v.get("data_offsets")
        if dtype not in DTYPES:
            raise WeightsError(f"{where}: tensor {name}: dtype {cut(repr(dtype), 40)} is not one the zoo reads "
                               f"({', '.join(DTYPES)})")
        if not isinstance(shape, list) or not all(_is_count(d) for d in shape):
            raise WeightsError(f"{where}: tensor {name}: shape is not a list of non-negative integers")
        if (not isinstance(offsets, list) or len(offsets) != 2 or not all(_is_count(o) for o in offsets)
                or offsets[0] > offsets[1]):
            raise WeightsError(f"{where}: tensor {name}: data_offsets is not [begin, end] with 0 <= begin <= end")
        end = max(end, offsets[1])
    return end


def _is_count(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 1 << 62


def parse_state(data: bytes, where: str = "weights") -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file's bytes, after checking its framing (a truncated file or
    another format is refused before the parser sees it) and refusing NaN and Inf."""
    _refuse_pickle(Path(where), data)
    if len(data) < 10:
        raise WeightsError(f"{where}: not a safetensors file ({len(data)} bytes)")
    (n,) = struct.unpack("<Q", data[:8])
    if n > len(data) - 8 or data[8:9] != b"{":
        raise WeightsError(f"{where}: not a safetensors file, or a truncated one (header of {n} bytes in a file of "
                           f"{len(data)})")
    end = _check_header(data[8:8 + n], where)
    if 8 + n + end != len(data):
        raise WeightsError(f"{where}: truncated or padded safetensors file ({len(data)} bytes, header says "
                           f"{8 + n + end})")
    from safetensors import SafetensorError
    from safetensors.torch import load

    try:
        state = load(data)
    except (SafetensorError, ValueError, RuntimeError) as e:
        raise WeightsError(f"{where}: not a readable safetensors file: {str(e)[:200]}") from None
    for key, t in state.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise WeightsError(f"{where}: tensor {key!r} holds NaN or Inf; refusing these weights")
    return state


def read_state(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict]:
    """``(state dict, {"source": "file", "sha256", "bytes"})`` of a safetensors file."""
    data = read_bytes(path)
    state = parse_state(data, str(path))
    return state, {"source": "file", "sha256": sha256_bytes(data), "bytes": len(data)}


def _shape(t: torch.Tensor) -> str:
    return f"{list(t.shape)} {str(t.dtype).removeprefix('torch.')}"


def check_state(model: nn.Module, state: dict[str, torch.Tensor], where: str = "weights") -> None:
    """Every key, shape and dtype of ``state`` must equal ``model``'s state dict; the error names
    the first differences with both shapes."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    extra = [k for k in state if k not in own]
    diffs = [f"{k}: file {_shape(state[k])}, network {_shape(own[k])}" for k in own
             if k in state and (state[k].shape != own[k].shape or state[k].dtype != own[k].dtype)]
    if not (missing or extra or diffs):
        return
    parts = []
    if diffs:
        parts.append("; ".join(diffs[:MAX_DIFFS]) + (f" (+{len(diffs) - MAX_DIFFS} more)" if len(diffs) > MAX_DIFFS else ""))
    if missing:
        parts.append(f"missing {len(missing)} key(s): {', '.join(missing[:MAX_DIFFS])}")
    if extra:
        parts.append(f"unexpected {len(extra)} key(s): {', '.join(extra[:MAX_DIFFS])}")
    cfg = getattr(model, "config", None)
    what = (f"the network (input_dim {cfg.input_dim}, num_classes {cfg.num_classes}, flavor {cfg.flavor})"
            if cfg is not None else "the network")
    raise WeightsError(f"{where}: the weights do not fit {what}, built from the same options "
                       f"(--flavor, --num-classes, --input-dim, --phi; weights of another variant?): "
                       + "; ".join(parts))


@torch.no_grad()
def load_weights(model: nn.Module, path: str | os.PathLike) -> nn.Module:
    """Load a safetensors state dict into ``model`` strictly (see :func:`check_state`); returns it."""
    return load_weights_bytes(model, read_bytes(path), str(path))


@torch.no_grad()
def load_weights_bytes(model: nn.Module, data: bytes, where: str = "weights") -> nn.Module:
    state = parse_state(data, where)
    check_state(model, state, where)
    model.load_state_dict(state, strict=True)
    return model


def save_weights(model_or_state, path: str | os.PathLike, metadata: dict[str, str] | None = None) -> dict:
    """Write a state dict as safetensors, atomically; returns ``{"source", "sha256", "bytes"}``."""
    from safetensors.torch import save

    state = model_or_state.state_dict() if isinstance(model_or_state, nn.Module) else model_or_state
    data = save({k: v.detach().contiguous().cpu() for k, v in state.items()}, metadata=metadata)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return {"source": "file", "sha256": sha256_bytes(data), "bytes": len(data)}


def weights_for(name: str, weights: str | os.PathLike) -> Path:
    """``--weights FILE`` for one model, or ``--weights DIR`` holding ``NAME.safetensors``."""
    p = Path(weights)
    return p / f"{name}{SUFFIX}" if p.is_dir() else p
