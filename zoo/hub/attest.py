"""Signed verification records: for each file of a model version, where it was verified, signed.

A manifest's parity and accuracy records say on which runtimes a file gave PyTorch's outputs; a
consumer cannot check them. Here each file gets an **in-toto Statement v1** (one per file that a
runtime loads: the model file of each precision and every target) whose subject is the file's
name and sha256 and whose predicate is in-toto's vetted **test-result** predicate
(``https://in-toto.io/attestation/test-result/v0.1``):

* ``result``: ``"pass"`` when every test of the file passed, else ``"fail"`` (a default file that
  an old runtime cannot load is a failed test of that runtime: true, and what the targets are for);
* ``passedTests`` / ``warnedTests`` / ``failedTests``: one name per record, ``parity RUNTIME
  VERSION BACKEND PRECISION vs REFERENCE`` or ``accuracy RUNTIME VERSION BACKEND PRECISION on
  DATASET`` (``warnedTests``: accuracy measured on too few samples to gate, ``not_gated``);
* ``configuration``: one in-toto ResourceDescriptor per test, ``name`` the test's name and
  ``annotations`` the **zoo predicate** of that test (documented in docs/publishing.md): ``kind``
  (parity | accuracy), ``runtime``, ``runtime_version`` (the bare version, ``1.16.3``),
  ``version`` (as the record has it), ``backend``, ``provider``, ``optimization``, ``precision``,
  ``reference``, ``machine``, ``batch_sizes``, ``distributions``, ``atol``, ``rtol`` and the
  measured errors (``max_abs_error``, ``max_rel_error``, ``cosine_similarity``,
  ``top1_agreement``), ``verdict``; for trained models' accuracy records ``dataset``,
  ``samples``, ``top1``, ``torch_top1`` and ``agreement``.

Each Statement is signed as a **DSSE envelope** (payload type ``application/vnd.in-toto+json``)
with a securesystemslib ``Signer`` (the release's targets-role key), and checked with the
matching public keys: :func:`verify_envelope` refuses another key, a changed byte, and a
Statement about another file's sha256. :func:`pick_file` and :func:`require_verified` choose from
verified Statements (or, unsigned, from the manifest). Nothing here needs torch or onnx.
"""

from __future__ import annotations

import json
import re

from ..errors import ZooError

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
TEST_RESULT = "https://in-toto.io/attestation/test-result/v0.1"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
MAX_ENVELOPE_BYTES = 4 << 20  # one file's records: a few kB; refuse anything absurd before parsing
LOADED_ROLES = ("model", "target")  # the files a runtime loads (zoo.spec's roles)
# Fields of a parity / accuracy record carried into the zoo predicate of a test, when present.
_PARITY_FIELDS = ("backend", "provider", "optimization", "precision", "reference", "batch_sizes", "distributions",
                  "atol", "rtol", "max_abs_error", "max_rel_error", "cosine_similarity", "top1_agreement", "verdict",
                  "compute_precision", "reason")
_ACCURACY_FIELDS = ("backend", "precision", "dataset", "split", "samples", "top1", "torch_top1", "agreement",
                    "verdict", "compute_precision", "reason")
_VERSION = re.compile(r"(\d+(?:\.\d+)+)")


class AttestationError(ZooError):
    """An envelope that does not verify: unsigned by the keys, changed, or about another file."""


class NotVerifiedError(ZooError):
    """No file of the model is verified on the runtime asked for; ``versions`` says which versions
    of each runtime it has passing records for."""

    def __init__(self, message: str, versions: dict[str, list[str]]):
        super().__init__(message)
        self.versions = versions


# ---- records -> statements ---------------------------------------------------------------------

def runtime_version(rec: dict) -> str | None:
    """The bare version of a record's runtime: ``1.16.3`` from ``1.16.3``, from ``node v20.20.2,
    onnxruntime-node 1.30.0`` (the JavaScript records' form) or from ``onnx 1.19.1``."""
    text = rec.get("version") or ""
    runtime = rec.get("runtime") or ""
    m = re.search(re.escape(runtime) + r"\s+" + _VERSION.pattern, text) if runtime else None
    if m:
        return m.group(1)
    found = _VERSION.findall(text)
    return found[-1] if found else None


def records_of(entry: dict, f: dict) -> list[dict]:
    """The parity and accuracy records of one file of ``entry`` (kind added): those that name it
    (``file``), and for the default file of a precision (role ``model``) those that name no file."""
    default = f["role"] == "model"
    out = []
    for r in entry.get("parity", []):
        if r.get("file") == f["path"] or (default and r.get("file") is None and r["precision"] == f["precision"]):
            out.append(dict(r, kind="parity"))
    for r in entry.get("accuracy", []) or []:
        if r.get("backend") == "torch":  # PyTorch's own top-1: the baseline, not a test of the file
            continue
        if r.get("file") == f["path"] or (default and r.get("file") is None and r["precision"] == f["precision"]):
            out.append(dict(r, kind="accuracy"))
    return out


def _machine(entry: dict):
    return next((r["machine"] for r in entry.get("latency", []) if isinstance(r.get("machine"), dict)), None)


def test_name(rec: dict) -> str:
    rt = rec.get("runtime") or rec.get("backend")
    ver = runtime_version(rec) or "?"
    if rec["kind"] == "accuracy":
        return f"accuracy {rt} {ver} {rec['backend']} {rec['precision']} on {rec.get('dataset')}"
    return f"parity {rt} {ver} {rec['backend']} {rec['precision']} vs {rec.get('reference')}"


def _annotations(rec: dict, machine) -> dict:
    fields = _ACCURACY_FIELDS if rec["kind"] == "accuracy" else _PARITY_FIELDS
    ann = {"kind": rec["kind"], "runtime": rec.get("runtime") or rec.get("backend"),
           "runtime_version": runtime_version(rec), "version": rec.get("version"), "machine": machine}
    ann.update({k: rec[k] for k in fields if k in rec})
    return ann


def _outcome(rec: dict) -> str | None:
    """passed | warned | failed, or None for a record that tested nothing (runtime unavailable)."""
    v = rec.get("verdict")
    if v == "unavailable":
        return None
    if v == "pass" and not rec.get("compute_precision"):
        return "passed"
    if v == "not_gated" or (v == "pass" and rec.get("compute_precision")):
        return "warned"  # measured, but not to the file's own standard (too few samples, or run in bf16)
    return "failed"


def statement_for(entry: dict, f: dict) -> dict | None:
    """The in-toto Statement of one file (None when no record tested it)."""
    machine = _machine(entry)
    tests = {"passed": [], "warned": [], "failed": []}
    config = []
    for rec in records_of(entry, f):
        outcome = _outcome(rec)
        if outcome is None:
            continue
        name = test_name(rec)
        tests[outcome].append(name)
        config.append({"name": name, "annotations": _annotations(rec, machine)})
    if not config:
        return None
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": f["path"], "digest": {"sha256": f["sha256"]}}],
        "predicateType": TEST_RESULT,
        "predicate": {
            "result": "pass" if not tests["failed"] else "fail",
            "configuration": config,
            "passedTests": tests["passed"],
            "warnedTests": tests["warned"],
            "failedTests": tests["failed"],
        },
    }


def statements_for(entry: dict) -> list[dict]:
    """One Statement per file of ``entry`` that a runtime loads and a record tested, in file order."""
    return [s for f in entry["files"] if f["role"] in LOADED_ROLES if (s := statement_for(entry, f)) is not None]


# ---- DSSE ----------------------------------------------------------------------------------------

def payload_bytes(statement: dict) -> bytes:
    """The Statement as signed: compact JSON with sorted keys (one byte string per Statement)."""
    return json.dumps(statement, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def sign_statement(statement: dict, signer) -> bytes:
    """A DSSE envelope (JSON bytes) of ``statement`` signed by ``signer`` (a securesystemslib Signer)."""
    from securesystemslib.dsse import Envelope

    env = Envelope(payload_bytes(statement), PAYLOAD_TYPE, {})
    env.sign(signer)
    return json.dumps(env.to_dict(), sort_keys=True, separators=(",", ":")).encode("utf-8")


def verify_envelope(envelope: bytes, public_keys, threshold: int, file_sha256: str) -> dict:
    """The Statement of a DSSE ``envelope`` signed by ``threshold`` of ``public_keys`` (securesystemslib
    Keys) about the file whose sha256 is ``file_sha256``; ``AttestationError`` otherwise."""
    from securesystemslib.dsse import Envelope
    from securesystemslib.exceptions import VerificationError

    if not isinstance(envelope, (bytes, bytearray)) or len(envelope) > MAX_ENVELOPE_BYTES:
        raise AttestationError(f"not a verification record (bytes, at most {MAX_ENVELOPE_BYTES:,})")
    try:
        env = Envelope.from_dict(json.loads(envelope))
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise AttestationError(f"not a DSSE envelope ({type(e).__name__})") from None
    except Exception as e:  # noqa: BLE001 - securesystemslib's FormatError and friends
        raise AttestationError(f"not a DSSE envelope ({type(e).__name__})") from None
    if env.payload_type != PAYLOAD_TYPE:
        raise AttestationError(f"payload type {env.payload_type[:80]!r} is not {PAYLOAD_TYPE}")
    try:
        env.verify(list(public_keys), threshold)
    except ValueError as e:  # a threshold above the keys given, or below 1
        raise AttestationError(f"cannot verify the verification record: {e}") from None
    except VerificationError as e:
        raise AttestationError(f"the verification record's signature does not verify: {str(e)[:200]}") from None
    try:
        stmt = json.loads(env.payload)
        subjects = stmt["subject"]
        ok_shape = (stmt["_type"] == STATEMENT_TYPE and stmt["predicateType"] == TEST_RESULT
                    and isinstance(stmt["predicate"], dict) and isinstance(subjects, list) and len(subjects) == 1)
    except (ValueError, KeyError, TypeError):
        raise AttestationError("the signed payload is not an in-toto test-result Statement") from None
    if not ok_shape:
        raise AttestationError("the signed payload is not an in-toto test-result Statement about one file")
    got = (subjects[0].get("digest") or {}).get("sha256") if isinstance(subjects[0], dict) else None
    if got != file_sha256:
        raise AttestationError(f"the verification record is about sha256 {str(got)[:16]}..., "
                               f"not this file ({file_sha256[:16]}...); refusing it")
    return stmt


# ---- choosing a file -----------------------------------------------------------------------------

def _tests(statement: dict) -> list[dict]:
    """The zoo predicate of each test of a Statement, with whether it passed."""
    pred = statement.get("predicate", {})
    passed = set(pred.get("passedTests", []))
    return [dict(c.get("annotations", {}), passed=c.get("name") in passed) for c in pred.get("configuration", [])]


def _version_matches(have: str | None, want: str | None) -> bool:
    """``1.16`` matches ``1.16.3``; None (any version) matches every version."""
    if want is None:
        return True
    if have is None:
        return False
    h, w = have.split("."), str(want).split(".")
    return h[: len(w)] == w


def verified_runtimes(statements: list[dict]) -> dict[str, dict[str, list[str]]]:
    """``{sha256: {runtime: [versions with a passed parity test]}}``."""
    out: dict[str, dict[str, list[str]]] = {}
    for s in statements:
        sha = s["subject"][0]["digest"]["sha256"]
        for t in _tests(s):
            if t["passed"] and t.get("kind") == "parity" and t.get("runtime_version"):
                versions = out.setdefault(sha, {}).setdefault(t["runtime"], [])
                if t["runtime_version"] not in versions:
                    versions.append(t["runtime_version"])
    return out


def _vkey(v: str):
    return tuple(int(x) if x.isdigit() else 0 for x in v.split("."))


def _versions_with_records(statements: list[dict], runtime: str | None = None) -> dict[str, list[str]]:
    out: dict[str, set[str]] = {}
    for per_file in verified_runtimes(statements).values():
        for rt, versions in per_file.items():
            if runtime is None or rt == runtime:
                out.setdefault(rt, set()).update(versions)
    return {rt: sorted(v, key=_vkey) for rt, v in sorted(out.items())}


def _p50(entry: dict, f: dict) -> float | None:
    """The file's mean p50 latency over its recorded batch sizes (records naming it, or for the
    default file of a precision those naming no file), None where unmeasured."""
    default = f["role"] == "model"
    vals = [r["p50_ms"] for r in entry.get("latency", []) if isinstance(r.get("p50_ms"), (int, float))
            and (r.get("file") == f["path"] or (default and r.get("file") is None and r.get("precision") == f["precision"]))]
    return sum(vals) / len(vals) if vals else None


def _opset_of(entry: dict, f: dict) -> int:
    return int(f.get("opset") or entry.get("opset_version") or 0)


def pick_file(entry: dict, records: list[dict] | None, runtime: str, runtime_version: str | None = None,
              opset: int | None = None, *, precision: str | None = "fp32", formats=("onnx",)) -> dict:
    """The fastest file of ``entry`` verified on ``runtime`` (at ``runtime_version``: ``1.16``
    matches 1.16.x; None: any) whose opset is at most ``opset``: its manifest file record.

    ``records``: verified Statements (:func:`verify_envelope`); None: the manifest's own records
    (:func:`statements_for`, unsigned). Only files of ``precision`` (None: any) and of ``formats``
    (``"onnx"``, ``"ort"``) compete. Fastest: the lowest mean p50 of the manifest's latency records;
    files without latency records come after, the highest opset first, the default file before a
    target. ``NotVerifiedError`` (it names the versions of ``runtime`` there are records for) when
    no file qualifies."""
    statements = statements_for(entry) if records is None else records
    verified = verified_runtimes(statements)
    cands = []
    for f in entry["files"]:
        if f["role"] not in LOADED_ROLES or (precision is not None and f["precision"] != precision):
            continue
        if f.get("format", "onnx") not in formats or (opset is not None and _opset_of(entry, f) > opset):
            continue
        versions = verified.get(f["sha256"], {}).get(runtime, [])
        if any(_version_matches(v, runtime_version) for v in versions):
            cands.append(f)
    if not cands:
        have = _versions_with_records(statements, runtime)
        want = runtime + (f" {runtime_version}" if runtime_version else "") + (f" at opset <= {opset}" if opset else "")
        where = (f"it has passing records for {runtime} " + ", ".join(have[runtime])) if have.get(runtime) else \
            (f"it has no passing record for {runtime}; it has records for "
             + ("; ".join(f"{rt} {', '.join(v)}" for rt, v in _versions_with_records(statements).items()) or "nothing"))
        raise NotVerifiedError(f"{entry['model']}: no {precision or ''} file verified on {want}; {where}".replace("  ", " "),
                               have)

    def rank(f):
        p50 = _p50(entry, f)
        return (p50 is None, p50 or 0.0, -_opset_of(entry, f), f["role"] != "model", f["path"])

    return min(cands, key=rank)


def require_verified(entry: dict, records: list[dict] | None, runtime: str, files: list[dict] | None = None,
                     runtime_version: str | None = None) -> None:
    """``--require-verified RUNTIME``: every file of ``files`` (default: every file a runtime loads)
    must carry a passing parity record for ``runtime`` (at ``runtime_version``, when given) in
    ``records`` (verified Statements; None: the manifest's); ``NotVerifiedError`` names the first
    that does not."""
    statements = statements_for(entry) if records is None else records
    verified = verified_runtimes(statements)
    for f in files if files is not None else [f for f in entry["files"] if f["role"] in LOADED_ROLES]:
        versions = verified.get(f["sha256"], {}).get(runtime, [])
        if not any(_version_matches(v, runtime_version) for v in versions):
            have = sorted(verified.get(f["sha256"], {}))
            raise NotVerifiedError(
                f"{f['path']} carries no passing verification record for {runtime}"
                + (f" {runtime_version}" if runtime_version else "")
                + (f" (it has records for {', '.join(have)})" if have else " (it has no passing record at all)"),
                _versions_with_records(statements, runtime))
