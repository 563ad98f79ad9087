"""Carry the ``onnxruntime-gpu`` wheel to a machine with no network, in parts the device tool takes.

The GPU machine gets files only with the working tree, at most 64 MiB per run, and keeps what
earlier runs left there while it stays warm. So, here::

    python -m zoo.verify.gpu.wheel fetch            # pip download + split into .gpu-wheel/

and there, once every part has arrived::

    python3 -m zoo.verify.gpu.wheel install --target /tmp/ort-gpu   # join, check, pip install

``fetch`` writes ``<wheel>.partNN`` files of equal size (each under ``--max-part-mib``) and
``parts.json`` (the wheel's name, size and sha256, and each part's size and sha256). ``join``
checks every part against it, then the whole. ``install`` puts the wheel into a folder of its own
(``pip install --no-deps --target``) that must come first on ``PYTHONPATH``, so that the CPU
``onnxruntime`` of that machine does not shadow it; ``check`` says whether it does.

Standard library only besides :mod:`zoo.fsutil`: it runs before anything else is installed there.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
from pathlib import Path

from ...errors import InputError, ZooError
from ...fsutil import atomic_path, atomic_write_json, sha256_file

PACKAGE = "onnxruntime-gpu"
VERSION = "1.31.1"
# The GPU machine: CPython 3.12 on x86-64 (manylinux_2_28 is the tag the 1.31.1 wheel carries).
PYTHON = "3.12"
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")
# What fetch measured (2026-12-03): the wheel these parts must rebuild.
KNOWN = {"onnxruntime_gpu-1.31.1-cp312-cp312-manylinux_2_28_x86_64.whl":
         {"bytes": 255569273, "sha256": "05d548956197b9d01f59b625de740e0d6be3593f874e241a12dc0362650ecdf7"}}
PARTS_DIR = ".gpu-wheel"  # git-ignored, in the repository root: the device tool's carry names its parts
INDEX = "parts.json"
# Under the device tool's 64 MiB per run, leaving room for the working tree that travels with it.
MAX_PART_MIB = 56
CHUNK = 1 << 20


def split(wheel: Path, out: Path, max_part_bytes: int = MAX_PART_MIB << 20) -> dict:
    """``wheel`` cut into equal parts of at most ``max_part_bytes`` under ``out``, and the index
    (written last, atomically: a folder with an index holds every part it names)."""
    wheel = Path(wheel)
    size = wheel.stat().st_size
    if max_part_bytes < 1:
        raise InputError(f"the part size must be at least one byte, got {max_part_bytes}")
    count = max(1, math.ceil(size / max_part_bytes))
    each = math.ceil(size / count) if size else 0
    out.mkdir(parents=True, exist_ok=True)
    parts = []
    with open(wheel, "rb") as f:
        for i in range(count):
            name = f"{wheel.name}.part{i + 1:02d}"
            with atomic_path(out / name) as tmp, open(tmp, "wb") as dst:
                left = each
                while left > 0 and (block := f.read(min(CHUNK, left))):
                    dst.write(block)
                    left -= len(block)
            parts.append({"name": name, "bytes": (out / name).stat().st_size, "sha256": sha256_file(out / name)})
    index = {"wheel": wheel.name, "bytes": size, "sha256": sha256_file(wheel), "parts": parts}
    atomic_write_json(out / INDEX, index)
    return index


def read_index(folder: Path) -> dict:
    path = Path(folder) / INDEX
    try:
        index = json.loads(path.read_text())
        names = [p["name"] for p in index["parts"]]
        missing = [k for k in ("wheel", "bytes", "sha256") if k not in index]
        if missing:
            raise KeyError(missing[0])
    except FileNotFoundError:
        raise InputError(f"{path}: no such file (run `fetch` where a network is, and carry the folder)") from None
    except (ValueError, KeyError, TypeError) as e:
        raise InputError(f"{path}: not a parts index ({type(e).__name__}: {e})") from None
    for name in [index["wheel"], *names]:  # names from a file: never a path that leaves the folder
        if not isinstance(name, str) or Path(name).name != name or name in ("", ".", ".."):
            raise InputError(f"{path}: refusing the file name {name!r}")
    return index


def missing_parts(folder: Path) -> list[str]:
    """Parts the index names that are absent or differ (size, then sha256) in ``folder``."""
    folder = Path(folder)
    bad = []
    for p in read_index(folder)["parts"]:
        f = folder / p["name"]
        if not f.is_file() or f.stat().st_size != p["bytes"] or sha256_file(f) != p["sha256"]:
            bad.append(p["name"])
    return bad


def join(folder: Path, out_dir: Path) -> Path:
    """The wheel rebuilt from the parts in ``folder`` into ``out_dir``, every part and the whole
    checked against the index; nothing is left under the wheel's name unless the whole matches."""
    folder = Path(folder)
    index = read_index(folder)
    bad = missing_parts(folder)
    if bad:
        raise ZooError(f"{folder}: {len(bad)} of {len(index['parts'])} parts missing or damaged: {', '.join(bad)}")
    dest = Path(out_dir) / index["wheel"]
    with atomic_path(dest) as tmp:
        with open(tmp, "wb") as dst:
            for p in index["parts"]:
                with open(folder / p["name"], "rb") as src:
                    while block := src.read(CHUNK):
                        dst.write(block)
        got = sha256_file(tmp)
        if got != index["sha256"] or tmp.stat().st_size != index["bytes"]:
            raise ZooError(f"the joined wheel has sha256 {got[:16]}..., the index says {index['sha256'][:16]}...")
    return dest


def fetch(out: Path, download_dir: Path | None = None, max_part_bytes: int = MAX_PART_MIB << 20) -> dict:
    """Download the wheel with pip (no dependencies: the machine has them) and split it; the
    download itself goes into a temporary folder unless ``download_dir`` is given."""
    if download_dir is None:
        with tempfile.TemporaryDirectory(prefix="zoo-gpu-wheel-") as tmp:
            return fetch(out, Path(tmp), max_part_bytes)
    download_dir = Path(download_dir)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--python-version", PYTHON,
           "--implementation", "cp", *[a for p in PLATFORMS for a in ("--platform", p)],
           "-d", str(download_dir), f"{PACKAGE}=={VERSION}"]
    subprocess.run(cmd, check=True, stdout=sys.stderr)
    wheels = sorted(download_dir.glob(f"{PACKAGE.replace('-', '_')}-{VERSION}-*.whl"))
    if len(wheels) != 1:
        raise ZooError(f"expected one {PACKAGE} {VERSION} wheel in {download_dir}, found {len(wheels)}")
    index = split(wheels[0], out, max_part_bytes)
    known = KNOWN.get(index["wheel"])
    if known and known["sha256"] != index["sha256"]:
        raise ZooError(f"{index['wheel']}: sha256 {index['sha256']} is not the one recorded ({known['sha256']})")
    return index


def install(folder: Path, target: Path, work: Path = Path("/tmp")) -> Path:
    """Join (into ``work``), check, and ``pip install --no-deps --target`` the wheel; returns the
    target folder."""
    target = Path(target)
    wheel = join(folder, work)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--no-compile",
                    "--upgrade", "--target", str(target), str(wheel)], check=True, stdout=sys.stderr)
    return target


def check(target: Path | None = None) -> dict:
    """Which onnxruntime this interpreter imports, from where, and whether it offers CUDA: run it
    with ``PYTHONPATH=<target>`` first, as the check will be."""
    import onnxruntime as ort

    where = Path(ort.__file__).resolve()
    providers = ort.get_available_providers()
    out = {"version": ort.__version__, "file": str(where), "providers": providers, "device": ort.get_device()}
    problems = []
    if target is not None and Path(target).resolve() not in where.parents:
        problems.append(f"onnxruntime is imported from {where.parent}, not from {target}: put it first on PYTHONPATH")
    if "CUDAExecutionProvider" not in providers:
        problems.append("CUDAExecutionProvider is not among the available providers")
    if out["device"] != "GPU":
        problems.append(f"onnxruntime.get_device() is {out['device']}, not GPU")
    out["problems"] = problems
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m zoo.verify.gpu.wheel", description=__doc__.split("\n\n")[0],
                                 epilog="docs/gpu.md gives the device runs that carry the parts, in order.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fetch", help="download the wheel (network needed) and split it into parts")
    f.add_argument("--out", type=Path, default=Path(PARTS_DIR))
    f.add_argument("--max-part-mib", type=float, default=MAX_PART_MIB)
    s = sub.add_parser("split", help="split a wheel already downloaded")
    s.add_argument("wheel", type=Path)
    s.add_argument("--out", type=Path, default=Path(PARTS_DIR))
    s.add_argument("--max-part-mib", type=float, default=MAX_PART_MIB)
    v = sub.add_parser("verify", help="say which parts are here and intact (exit 1 while any is missing)")
    v.add_argument("--parts", type=Path, default=Path(PARTS_DIR))
    j = sub.add_parser("join", help="rebuild and check the wheel")
    j.add_argument("--parts", type=Path, default=Path(PARTS_DIR))
    j.add_argument("--out", type=Path, default=Path("/tmp"))
    i = sub.add_parser("install", help="join, check, and pip install --no-deps --target DIR")
    i.add_argument("--parts", type=Path, default=Path(PARTS_DIR))
    i.add_argument("--target", type=Path, default=Path("/tmp/ort-gpu"))
    i.add_argument("--work", type=Path, default=Path("/tmp"), help="where the joined wheel is written")
    c = sub.add_parser("check", help="which onnxruntime is imported, and whether it offers CUDA")
    c.add_argument("--target", type=Path, default=None)
    a = ap.parse_args(argv)
    try:
        if a.cmd in ("fetch", "split"):
            limit = int(a.max_part_mib * (1 << 20))
            index = fetch(a.out, max_part_bytes=limit) if a.cmd == "fetch" else split(a.wheel, a.out, limit)
            print(json.dumps(index, indent=2))
        elif a.cmd == "verify":
            index, bad = read_index(a.parts), missing_parts(a.parts)
            print(f"{len(index['parts']) - len(bad)} of {len(index['parts'])} parts of {index['wheel']} here"
                  + (f"; missing or damaged: {', '.join(bad)}" if bad else ""))
            return 1 if bad else 0
        elif a.cmd == "join":
            print(join(a.parts, a.out))
        elif a.cmd == "install":
            print(install(a.parts, a.target, a.work))
        else:
            out = check(a.target)
            print(json.dumps(out, indent=2))
            return 1 if out["problems"] else 0
    except (InputError, ZooError, subprocess.CalledProcessError, OSError) as e:
        print(f"Error: zoo verify gpu wheel {a.cmd}: {e}", file=sys.stderr)
        return getattr(e, "exit_code", 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
