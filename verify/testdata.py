"""What the runtimes checked against a model's test data share (node and web through
``verify/node/verify.mjs``, C and C++ through ``examples/*/classify``): the tolerance table, the
selection of model files from a manifest, and the build step that checks a model's files in memory,
in a private folder, before anything is written.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from ..errors import InputError, UnknownNameError
from ..spec import PRECISIONS
from .parity import DEFAULT_TOLERANCES, Tolerance

Tolerances = Mapping[str, "Tolerance | tuple[float, float]"]
# run(root, manifest, names, runtimes, precisions, tolerances) -> {model: [parity record, ...]}
Runner = Callable[..., dict]


def tolerance(tolerances: Tolerances | None, precision: str) -> Tolerance:
    """``precision``'s tolerance from ``tolerances`` (precision -> Tolerance or (atol, rtol)), by
    default :data:`zoo.verify.parity.DEFAULT_TOLERANCES`."""
    table = DEFAULT_TOLERANCES if tolerances is None else tolerances
    if precision not in table:
        raise InputError(f"no tolerance given for precision {precision!r}")
    t = table[precision]
    return t if isinstance(t, Tolerance) else Tolerance(*t)


def contained(root: Path, rel: str) -> Path:
    """``root / rel``, refusing absolute paths and ``..`` (file names come from a manifest)."""
    p = Path(rel)
    if p.is_absolute() or ".." in p.parts or not p.parts:
        raise InputError(f"bad relative path {rel!r}")
    return root / p


def model_files(manifest: dict, names: Iterable[str] | None, precisions: Iterable[str] | None,
                tolerances: Tolerances | None) -> tuple[dict[str, dict], dict[str, list[dict]]]:
    """``(entries by name, {name: its model-file records of precisions})`` for ``names`` (default:
    every model); an unknown name or a precision without a tolerance raises before anything runs."""
    by_name = {m["model"]: m for m in manifest["models"]}
    selected = list(dict.fromkeys(names)) if names is not None else list(by_name)
    unknown = [n for n in selected if n not in by_name]
    if unknown:
        raise UnknownNameError(f"not in the manifest: {', '.join(unknown)} (it has: {', '.join(by_name) or 'none'})")
    # Default: the built precisions. The files zoo bench --recommend adds (static int8, int4) have no
    # parity tolerance: their check is the accuracy gate on the reference task, made there.
    precisions = set(PRECISIONS) if precisions is None else set(precisions)
    wanted = {n: [f for f in by_name[n]["files"] if f["role"] == "model" and f["precision"] in precisions]
              for n in selected}
    for files in wanted.values():
        for f in files:
            tolerance(tolerances, f["precision"])
    return by_name, wanted


def check_in_memory(run: Runner, files: Mapping[str, bytes], entry: dict, runtimes: Iterable[str], *,
                    tolerances: Tolerances | None = None, prefix: str = "zoo-check-") -> list[dict]:
    """One model's files, given in memory (relative path -> bytes, as ``entry["files"]`` names
    them), written with a one-entry manifest into a temporary folder (removed afterwards) and
    checked there with ``run``: the model's parity records."""
    missing = [f["path"] for f in entry["files"] if f["path"] not in files]
    if missing:
        raise InputError(f"{entry['model']}: no bytes given for {', '.join(missing)}")
    manifest = {"schema_version": 1, "models": [entry]}
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        root = Path(tmp)
        for rel, data in files.items():
            path = contained(root, rel)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        # The one-entry manifest is for the checker alone, in a private folder.
        (root / "manifest.json").write_text(json.dumps(manifest))
        return run(root, manifest, [entry["model"]], tuple(runtimes), None, tolerances)[entry["model"]]


def build_step(check_files: Callable[..., list[dict]], runtimes: tuple[str, ...]):
    """The ``zoo build`` step that checks each model's staged files (every precision) with
    ``check_files(staged, entry, runtimes)``, records them and fails the model on a failure."""
    from .matrix import raise_for_failures

    def extra(art, entry, staged, progress):
        records = check_files(staged, entry, runtimes)
        for r in records:
            err = r.get("max_abs_error")
            progress(f"{r['precision']} {r['backend']} vs {r['reference']}: {r['verdict']}"
                     + ("" if err is None else f", max abs {err:.2e}"))
        entry["parity"] = entry["parity"] + records
        raise_for_failures(records, art.request.name)

    return extra


def cli(prog: str, description: str, runtimes_default: str, runtimes_help: str):
    """The ``python -m`` entry points' arguments (artifacts, --models, --runtimes, --precisions,
    --json), parsed; the comma lists come back as lists (None when not given)."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("artifacts", nargs="?", default="artifacts", help="artifacts folder (default: artifacts)")
    parser.add_argument("--models", help="comma-separated model names (default: all)")
    parser.add_argument("--runtimes", default=runtimes_default, help=runtimes_help)
    parser.add_argument("--precisions", help="comma-separated precisions (default: every one listed)")
    parser.add_argument("--json", action="store_true", help="JSON on stdout instead of a table")
    return parser
