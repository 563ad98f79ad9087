"""Architecture options of the family, as data (pure Python): what the ablation study switches.

The default, ``Arch()``, is the paper's network: MBConv blocks with squeeze-excitation and SiLU.
The options change that network in place, never copy it:

* ``se=False``: the MBConv blocks without squeeze-excitation;
* ``activation="relu"``: ReLU for every SiLU (stem, blocks, squeeze-excitation, head);
* ``body="residual"``: the baseline residual MLP, ``depth`` pre-activation blocks
  ``x + Linear(act(BN(Linear(act(BN(x))))))`` of ``width`` features (no expansion, no SE);
* ``body="plain"``: the baseline MLP, ``depth`` layers ``Linear -> BN -> act`` of ``width`` features.

Both baselines keep the stem (``Linear(input_dim, width) -> BN -> act``), the dropout and the
classifier; they are sized to a FLOPs target by :func:`zoo.model.config.baseline_arch`.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

from ..errors import InputError

ACTIVATIONS = ("silu", "relu")
BODIES = ("mbconv", "residual", "plain")
# The baselines' depth (blocks of two Linear layers / Linear layers after the stem): a ResNet-like
# residual MLP of 8 hidden layers and a classic MLP of 3 hidden layers (the stem and 2 more).
BASELINE_DEPTH = {"residual": 4, "plain": 2}
BASELINE_PREFIX = {"residual": "resmlp", "plain": "mlp"}


@dataclass(frozen=True)
class Arch:
    body: str = "mbconv"
    se: bool = True
    activation: str = "silu"
    width: int | None = None  # baselines only: features of every hidden layer
    depth: int | None = None  # baselines only: residual blocks / layers after the stem

    def __post_init__(self):
        if self.body not in BODIES:
            raise InputError(f"unknown body {self.body!r}; valid: {', '.join(BODIES)}")
        if self.activation not in ACTIVATIONS:
            raise InputError(f"unknown activation {self.activation!r}; valid: {', '.join(ACTIVATIONS)}")
        if not isinstance(self.se, bool):
            raise InputError(f"se must be True or False, got {self.se!r}")
        if self.body == "mbconv":
            if self.width is not None or self.depth is not None:
                raise InputError("width and depth of an Arch are for the baselines (body residual or plain)")
        else:
            for k in ("width", "depth"):
                v = getattr(self, k)
                if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                    raise InputError(f"a {self.body} baseline needs a positive integer {k}, got {v!r}")
            if self.se:
                object.__setattr__(self, "se", False)  # the baselines have no squeeze-excitation

    @property
    def is_default(self) -> bool:
        return self == Arch()

    def options(self) -> dict:
        """The fields that differ from the paper's network (empty for it)."""
        default = asdict(Arch())
        return {k: v for k, v in asdict(self).items() if v != default[k]}

    @property
    def tag(self) -> str:
        """A short name for ids and file names: '' for the default, else e.g. ``nose``, ``relu``,
        ``resmlp-w672-l4``."""
        parts = []
        if self.body != "mbconv":
            parts.append(f"{BASELINE_PREFIX[self.body]}-w{self.width}-l{self.depth}")
        elif not self.se:
            parts.append("nose")
        if self.activation != "silu":
            parts.append(self.activation)
        return "-".join(parts)

    @staticmethod
    def from_options(d: dict | None) -> Arch:
        if d is None:
            return Arch()
        if not isinstance(d, dict) or not set(d) <= set(asdict(Arch())):
            raise InputError(f"not architecture options: {d!r}")
        return Arch(**d)


# Names of the networks the options make, beside the table's rows (``zoo build dense_b0_relu``):
# a table row with ``_nose`` and/or ``_relu``; a baseline at a multiple of B0's FLOPs.
_VARIANT_NAME = re.compile(r"^(?P<row>dense_b\d)(?P<opts>(?:_nose|_relu)+)$")
_BASELINE_NAME = re.compile(r"^(?P<kind>resmlp|mlp)(?P<relu>_relu)?_(?P<mult>\d+(?:\.\d+)?)x$")


def parse_name(name: str) -> tuple[str, dict] | None:
    """``(table row, arch options)`` or ``("baseline", {body, multiplier, activation})`` for an
    option variant's name; None for any other name."""
    if not isinstance(name, str):
        return None
    m = _VARIANT_NAME.match(name)
    if m:
        opts = m["opts"].split("_")[1:]
        if len(set(opts)) != len(opts):
            return None
        return m["row"], {"se": "nose" not in opts, "activation": "relu" if "relu" in opts else "silu"}
    m = _BASELINE_NAME.match(name)
    if m:
        body = next(b for b, p in BASELINE_PREFIX.items() if p == m["kind"])
        return "baseline", {"body": body, "multiplier": float(m["mult"]),
                            "activation": "relu" if m["relu"] else "silu"}
    return None
