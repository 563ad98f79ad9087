"""The standard ONNX fields every model file carries, and the release metadata they come from.

ONNX's ``ModelProto`` has fields every tool reads (Netron, ``onnx.hub``, ONNX Runtime's
``ModelMetadata``): ``domain`` (the IR spec asks for a reverse-DNS name), ``model_version``,
``doc_string``, and the ``metadata_props`` keys ``model_author`` and ``model_license``. The zoo
sets them in the exporters for every precision; the publishing formats (zoo.formats) read them back
from the file, so the model file is the one place they live. Pure Python, no third-party imports.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from .errors import InputError

ONNX_DOMAIN = "org.zoo"  # the project's reverse-DNS name, written into every model file
AUTHOR_KEY = "model_author"  # ONNX's standard metadata_props keys
LICENSE_KEY = "model_license"
LABELS_KEY = "labels"  # a JSON array of the class names, one per output index
DEFAULT_VERSION = 1  # where no release has numbered the model yet
MAX_LABEL_CHARS = 200
MAX_LABELS_BYTES = 1 << 20
# An SPDX license expression: ids (letters, digits, ``.-+``, LicenseRef-...) joined by AND/OR/WITH.
_SPDX_ID = r"[A-Za-z0-9][A-Za-z0-9.+-]*"
_SPDX = re.compile(rf"^\(?{_SPDX_ID}\)?( (AND|OR|WITH) \(?{_SPDX_ID}\)?)*$")


@dataclass(frozen=True)
class ModelInfo:
    """What a release says about a model: its version, who made it, its license, its class labels.

    Nothing here is defaulted silently: no license or author unless given."""

    version: int = DEFAULT_VERSION
    author: str | None = None
    license: str | None = None
    labels: tuple[str, ...] | None = None

    def __post_init__(self):
        if not isinstance(self.version, int) or isinstance(self.version, bool) or self.version < 1:
            raise InputError(f"model version must be a positive integer, not {self.version!r}")
        if self.license is not None:
            check_license(self.license)
        if self.author is not None and (not self.author.strip() or len(self.author) > MAX_LABEL_CHARS
                                        or any(c in self.author for c in "\r\n\0")):
            raise InputError(f"author must be one line of at most {MAX_LABEL_CHARS} characters")

    def props(self) -> dict[str, str]:
        """The ``metadata_props`` these add to a model file (only what was given)."""
        out = {}
        if self.author is not None:
            out[AUTHOR_KEY] = self.author
        if self.license is not None:
            out[LICENSE_KEY] = self.license
        if self.labels is not None:
            out[LABELS_KEY] = json.dumps(list(self.labels), ensure_ascii=False, separators=(",", ":"))
        return out

    def entry(self) -> dict:
        """The manifest's ``onnx_metadata`` record (so ``--check`` rebuilds the same bytes)."""
        out: dict = {"model_version": self.version}
        if self.author is not None:
            out[AUTHOR_KEY] = self.author
        if self.license is not None:
            out[LICENSE_KEY] = self.license
        if self.labels is not None:
            out[LABELS_KEY] = list(self.labels)
        return out

    @classmethod
    def from_entry(cls, rec: dict | None) -> "ModelInfo":
        rec = rec or {}
        labels = rec.get(LABELS_KEY)
        return cls(version=rec.get("model_version", DEFAULT_VERSION), author=rec.get(AUTHOR_KEY),
                   license=rec.get(LICENSE_KEY), labels=tuple(labels) if labels is not None else None)

    def check_classes(self, num_classes: int) -> None:
        if self.labels is not None and len(self.labels) != num_classes:
            raise InputError(f"{len(self.labels)} labels given for {num_classes} classes")


def check_license(spdx: str) -> str:
    if not isinstance(spdx, str) or len(spdx) > 200 or not _SPDX.match(spdx):
        raise InputError(f"license {spdx!r} is not an SPDX license identifier or expression (e.g. Apache-2.0, MIT)")
    return spdx


def read_labels(path: str | Path) -> tuple[str, ...]:
    """Class labels from a file: a JSON array of strings, or one label per line (blank lines ignored
    at the end only)."""
    p = Path(path)
    from .fsutil import read_input

    raw = read_input(p, MAX_LABELS_BYTES, "labels file")  # a FIFO or /dev/zero is refused, never read
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"cannot read labels file {p}: {e}") from None
    labels: object
    if text.lstrip().startswith("["):
        try:
            labels = json.loads(text)
        except ValueError as e:
            raise InputError(f"labels file {p} is not a valid JSON array: {e}") from None
    else:
        labels = text.rstrip("\r\n").splitlines() if text.strip() else []
    if not isinstance(labels, list) or not labels or not all(isinstance(x, str) for x in labels):
        raise InputError(f"labels file {p} holds no labels (a JSON array of strings, or one label per line)")
    labels = [x.strip() for x in labels]
    bad = next((x for x in labels if not x or len(x) > MAX_LABEL_CHARS or any(c in x for c in "\r\n\0")), None)
    if bad is not None:
        raise InputError(f"labels file {p}: every label must be one non-empty line of at most "
                         f"{MAX_LABEL_CHARS} characters (found {bad[:40]!r})")
    return tuple(labels)


def doc_line(meta: dict[str, str], precision: str) -> str:
    """The model's one-line ``doc_string`` from its ``zoo.*`` metadata: family, variant, precision,
    input width (what a user reads first in Netron or ``zoo info``)."""
    family = meta.get("zoo.family", "dense_efficientnet")
    name, flavor = meta.get("zoo.name"), meta.get("zoo.flavor")
    parts = [f"{family} {name}" + (f" ({flavor} flavor)" if flavor else "") if name else family, precision]
    if "zoo.input_dim" in meta:
        parts.append(f"input [batch, {meta['zoo.input_dim']}] float32")
    if "zoo.num_classes" in meta:
        parts.append(f"{meta['zoo.num_classes']} classes")
    return ", ".join(parts)


def labels_of(meta: dict[str, str]) -> list[str] | None:
    """The labels a model file carries (its ``labels`` metadata), or None."""
    raw = meta.get(LABELS_KEY)
    if raw is None:
        return None
    try:
        labels = json.loads(raw)
    except ValueError:
        return None
    return labels if isinstance(labels, list) and all(isinstance(x, str) for x in labels) else None
