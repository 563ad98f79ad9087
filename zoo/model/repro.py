"""The reproducibility rule, in one place: every number that ends up in an artifact has bits that do
not depend on the CPU's instruction set, the BLAS, the thread count or the operating system.

1. **Random numbers** come from counter-based streams (``numpy.random.Philox``, integer arithmetic
   only) whose 128-bit key is the SHA-256 of ``("zoo", purpose, seed, *ids)``: weights, BatchNorm
   calibration, test data and the parity matrix's inputs draw from streams that cannot coincide
   (different purposes hash to different keys), and the *whole* seed is hashed (no low-32-bit
   truncation, the cause of issue 17). Integers become floats by exact operations only: a 53-bit
   integer times ``2**-53`` (uniform), and the sum of twelve 32-bit integers, centred, times
   ``2**-32`` (a normal by the Irwin-Hall construction: unit variance, bounded at +-6 sigma; no
   ``log``/``exp``/``cos`` of a vectorised math library, which is what made ``torch.randn`` and
   ``Tensor.normal_`` differ between AVX-512, AVX2 and no SIMD). A scale is applied with one float64
   multiply and the result rounded once to float32.
2. **Matrix products and reductions** (:func:`matmul64`) split both operands into slices of at most
   ``(53 - ceil(log2 K)) // 2`` bits against a power-of-two scale per row, so every product of
   slices and every partial sum of a length-``K`` dot product is an integer below ``2**53``: each
   slice GEMM is *exact*, whatever order, blocking or FMA the BLAS uses. The slice products are
   then combined in a fixed order. Sums over a batch or a feature axis are products with a vector
   of ones and take the same path. No float64 result can differ between machines, so there is no
   rounding tie left to fall on either side when it is rounded to float32.
3. **Elementary functions** (:func:`exp64`, :func:`sigmoid64`, :func:`silu64`) are evaluated with
   IEEE-754 ``+ - * /`` only (Cody-Waite range reduction, a fixed Horner polynomial, the power of two
   built from its bits): correctly rounded operations give the same bits everywhere.
4. Element-wise float64 ``+ - * /`` (BatchNorm folding, normalisation) are correctly rounded by
   IEEE 754 and need nothing more; each is its own tensor operation, so nothing is fused. Square
   roots go through :func:`sqrt64` (numpy's, the IEEE operation): ``torch.sqrt`` on float64 gives
   other bits with PyTorch's SIMD off (``ATEN_CPU_CAPABILITY=default``) than with AVX2/AVX-512,
   which made the BatchNorm statistics of dense_b4 and dense_b5 differ by an ulp.

What remains outside the rule: ONNX Runtime's quantiser and the fp16 cast, which only round
(element-wise, IEEE) values already fixed by the rule; and the PyTorch float32 forward pass, which
the parity matrix uses as *its* reference but which never writes a byte of an artifact.
"""

from __future__ import annotations

import hashlib
import json
import math

import numpy as np
import torch

PURPOSES = ("weights", "calibration", "test_data", "matrix")
_U53 = 2.0**-53
_U32 = 2.0**-32
IRWIN_HALL_TERMS = 12  # twelve U(0,1) summed, minus 6: mean 0, variance 12 * 1/12 = 1


def stream_key(purpose: str, seed: int, *ids) -> int:
    """The 128-bit Philox key of a stream: SHA-256 of the canonical JSON of ``["zoo", purpose, seed, *ids]``."""
    if purpose not in PURPOSES:
        raise ValueError(f"unknown stream purpose {purpose!r}; valid: {', '.join(PURPOSES)}")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    # str(seed): the whole integer, however large; JSON keeps the parts unambiguous.
    text = json.dumps(["zoo", purpose, str(seed), *[str(i) for i in ids]], separators=(",", ":"))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:16], "little")


class Stream:
    """Draws from one counter-based stream; every float is made from integers by exact operations."""

    def __init__(self, purpose: str, seed: int, *ids):
        self.key = stream_key(purpose, seed, *ids)
        self._bits = np.random.Philox(key=self.key)

    def raw(self, n: int) -> np.ndarray:
        """``n`` uint64 words straight from Philox (integer arithmetic only)."""
        return self._bits.random_raw(n)

    def uniform(self, shape, low: float = 0.0, high: float = 1.0) -> np.ndarray:
        """float64 in ``[low, high)``: ``u = (word >> 11) * 2**-53`` is exact; then ``low + (high - low) * u``."""
        n = int(np.prod(shape, dtype=np.int64))
        u = (self.raw(n) >> np.uint64(11)).astype(np.float64) * _U53  # < 2**53: exact
        return (low + (high - low) * u).reshape(shape)

    def normal(self, shape, std: float = 1.0) -> np.ndarray:
        """float64 near-normal (Irwin-Hall, twelve terms): ``(sum of 12 uint32 - 6 * 2**32) * 2**-32 * std``.

        The integer sum is exact (below ``2**36``), so is its conversion and the power-of-two scale;
        ``* std`` is one correctly rounded multiply.
        """
        n = int(np.prod(shape, dtype=np.int64))
        words = self.raw(n * IRWIN_HALL_TERMS // 2).reshape(n, IRWIN_HALL_TERMS // 2)
        lo = (words & np.uint64(0xFFFFFFFF)).astype(np.int64)
        hi = (words >> np.uint64(32)).astype(np.int64)
        total = lo.sum(axis=1) + hi.sum(axis=1) - (IRWIN_HALL_TERMS // 2) * (1 << 32)
        z = total.astype(np.float64) * _U32
        return (z * std).reshape(shape) if std != 1.0 else z.reshape(shape)


def stream(purpose: str, seed: int, *ids) -> Stream:
    return Stream(purpose, seed, *ids)


def to_float32(x: np.ndarray | torch.Tensor) -> np.ndarray:
    """Round float64 to float32 once (IEEE round-to-nearest-even)."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64).astype(np.float32)


# ---- exact float64 matrix products -------------------------------------------------------------

def _pow2(e: torch.Tensor) -> torch.Tensor:
    """``2.0 ** e`` (int64 tensor, normal range) built from its IEEE bits: exact on any machine."""
    if e.numel() and (int(e.min()) < -1022 or int(e.max()) > 1023):
        raise ValueError("power of two outside float64's normal range")
    return ((e + 1023) << 52).view(torch.float64)


def _slices(a: torch.Tensor, bits: int, count: int) -> tuple[list[torch.Tensor], torch.Tensor]:
    """``a`` ([rows, K], float64) as ``sum_i s_i * 2**(-bits*(i+1)) * 2**e_row`` with integer-valued
    ``s_i`` in ``(-2**bits, 2**bits)`` (truncated below the last slice); returns slices and ``e``."""
    amax = a.abs().amax(dim=1, keepdim=True)
    e = torch.frexp(amax).exponent.to(torch.int64)  # amax < 2**e (0 for a zero row)
    r = a * _pow2(-e)  # exact: a power of two
    step = float(2**bits)
    out = []
    for _ in range(count):
        r.mul_(step)  # exact
        s = torch.trunc(r)
        out.append(s)
        r.sub_(s)  # exact
    return out, e


def matmul64(x: torch.Tensor, w: torch.Tensor, slices: int = 3) -> torch.Tensor:
    """``x @ w.T`` in float64 with bits independent of the BLAS (see the module docstring, 2).

    ``x`` is ``[N, K]``, ``w`` is ``[M, K]``. Slice products ``i + j < slices`` are kept: with
    ``slices=3`` the result is as accurate as a float64 GEMM (about ``2**-58`` of ``|x||w|``), with
    ``slices=2`` about ``2**-38`` (ample for statistics that end up in float32).
    """
    x = x.to(torch.float64)
    w = w.to(torch.float64)
    k = x.shape[1]
    bits = (53 - max(1, math.ceil(math.log2(max(k, 2))))) // 2
    xs, ex = _slices(x, bits, slices)
    ws, ew = _slices(w, bits, slices)
    # Fixed combination order, smallest terms first; each level's terms summed in a fixed order.
    total = None
    for level in range(slices - 1, -1, -1):
        part = None
        for i in range(level + 1):
            p = xs[i] @ ws[level - i].T  # integers below 2**53: exact in any order
            part = p if part is None else part + p
        part = part * (2.0 ** (-bits * (level + 2)))  # exact power of two
        total = part if total is None else total + part
    return total * (_pow2(ex) * _pow2(ew).T)  # exact power-of-two scales per row and column


def sum64(x: torch.Tensor, dim: int, slices: int = 3) -> torch.Tensor:
    """Sum over ``dim`` of a 2-D tensor, the same bits on any machine: each slice (as in
    :func:`matmul64`, scaled per line along ``dim``) holds integers small enough that every partial
    sum is exact, whatever order the reduction takes; the slice sums are combined in a fixed order."""
    x = x.to(torch.float64)
    lines = x if dim == 1 else x.T
    n = lines.shape[1]
    bits = 52 - max(1, math.ceil(math.log2(max(n, 2))))
    parts, e = _slices(lines, bits, slices)
    total = None
    for i in range(slices - 1, -1, -1):
        part = parts[i].sum(dim=1) * (2.0 ** (-bits * (i + 1)))  # exact sum, exact scale
        total = part if total is None else total + part
    return total * _pow2(e[:, 0])


def mean64(x: torch.Tensor, dim: int) -> torch.Tensor:
    return sum64(x, dim) / x.shape[dim]


# ---- elementary functions from + - * / only ----------------------------------------------------

_LN2_HI = 6.93147180369123816490e-01  # ln 2 split as in fdlibm: k * _LN2_HI is exact for |k| < 2**11
_LN2_LO = 1.90821492927058770002e-10
_INV_LN2 = 1.44269504088896338700e00
_EXP_TERMS = 14  # Taylor terms of exp(r) for |r| <= ln2/2: truncation below 2**-60


def exp64(x: torch.Tensor) -> torch.Tensor:
    """``exp(x)`` in float64 from IEEE ``+ - * /`` only: ``2**k * P(r)``, ``x = k ln2 + r``.

    Arguments are clamped to ``[-700, 700]`` (the sigmoid of anything beyond is 0 or 1 in float64
    either way). Accurate to a few ulp, and above all the same bits on every machine.
    """
    x = torch.clamp(x.to(torch.float64), -700.0, 700.0)
    k = torch.round(x * _INV_LN2)
    r = (x - k * _LN2_HI).sub_(k * _LN2_LO)
    p = torch.full_like(r, 1.0 / math.factorial(_EXP_TERMS))
    for n in range(_EXP_TERMS - 1, -1, -1):
        p.mul_(r).add_(1.0 / math.factorial(n))  # two roundings, never fused
    return p.mul_(_pow2(k.to(torch.int64)))


def sqrt64(x: torch.Tensor) -> torch.Tensor:
    """The IEEE (correctly rounded) float64 square root: numpy's, whose every SIMD path is the
    hardware instruction; ``torch.sqrt`` differs between PyTorch's CPU capabilities."""
    return torch.from_numpy(np.sqrt(x.detach().to(torch.float64).cpu().numpy()))


def sigmoid64(x: torch.Tensor) -> torch.Tensor:
    return 1.0 / exp64(-x).add_(1.0)


def silu64(x: torch.Tensor) -> torch.Tensor:
    return x * sigmoid64(x)
