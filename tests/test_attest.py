"""Issue 34: signed verification records per file (zoo.hub.attest): in-toto Statements with the
test-result predicate, DSSE-signed with the release's key, checked here and by a library the zoo
does not use for DSSE (sigstore's DSSE code, in-toto-attestation's Statement and test-result
protobufs); the choice of a file by runtime and --require-verified."""

from __future__ import annotations

import base64
import json

import pytest
from cryptography.hazmat.primitives import serialization
from google.protobuf import json_format
from securesystemslib.signer import CryptoSigner

from zoo.builder import manifest as mf
from zoo.hub import attest
from zoo.hub.attest import AttestationError, NotVerifiedError


@pytest.fixture(scope="module")
def entry(targets_build):
    """dense_b0 (input 64) with opset 15 / 17 targets and the ORT format, checked in ONNX Runtime (CPU)."""
    import onnxruntime

    e = mf.entry(mf.load(targets_build), "dense_b0")
    e["_ort_version"] = onnxruntime.__version__
    return e


@pytest.fixture(scope="module")
def signer():
    return CryptoSigner.generate_ecdsa()


def test_one_statement_per_loaded_file_with_its_name_digest_and_records(entry):
    stmts = attest.statements_for(entry)
    loaded = [f for f in entry["files"] if f["role"] in ("model", "target")]
    assert [s["subject"] for s in stmts] == [[{"name": f["path"], "digest": {"sha256": f["sha256"]}}] for f in loaded]
    for s in stmts:
        assert s["_type"] == "https://in-toto.io/Statement/v1"
        assert s["predicateType"] == "https://in-toto.io/attestation/test-result/v0.1"
        pred = s["predicate"]
        assert pred["result"] == "pass" and pred["failedTests"] == [] and pred["passedTests"]
        assert len(pred["configuration"]) == len(pred["passedTests"])
        ann = pred["configuration"][0]["annotations"]
        assert ann["runtime"] == "onnxruntime" and ann["runtime_version"] == entry["_ort_version"]
        assert ann["provider"] == "CPUExecutionProvider" and ann["batch_sizes"] == [1, 3]
        assert ann["atol"] == 1e-4 and 0 <= ann["max_abs_error"] <= 1e-4 and "machine" in ann
    # each file's records are its own: the target's name its file, the default file's name none
    by_path = {f["path"]: f for f in loaded}
    target = attest.records_of(entry, by_path["dense_b0/model.opset15.onnx"])
    default = attest.records_of(entry, by_path["dense_b0/model.onnx"])
    assert target and all(r["file"] == "dense_b0/model.opset15.onnx" for r in target)
    assert default and all(r.get("file") is None for r in default)
    assert sum(len(attest.records_of(entry, f)) for f in loaded) == len(entry["parity"])


def test_a_signed_record_verifies_and_is_refused_for_anything_else(entry, signer):
    stmt = attest.statements_for(entry)[0]
    sha = stmt["subject"][0]["digest"]["sha256"]
    env = attest.sign_statement(stmt, signer)
    assert attest.verify_envelope(env, [signer.public_key], 1, sha) == stmt
    # another file's sha256
    other = next(f["sha256"] for f in entry["files"] if f["sha256"] != sha)
    with pytest.raises(AttestationError, match="not this file"):
        attest.verify_envelope(env, [signer.public_key], 1, other)
    # one changed byte of the signed payload
    d = json.loads(env)
    payload = bytearray(base64.b64decode(d["payload"]))
    i = payload.index(b'"pass"') + 2
    payload[i] ^= 0x01
    d["payload"] = base64.b64encode(bytes(payload)).decode()
    with pytest.raises(AttestationError, match="does not verify"):
        attest.verify_envelope(json.dumps(d).encode(), [signer.public_key], 1, sha)
    # one changed byte of the signature
    d = json.loads(env)
    sig = bytearray(base64.b64decode(d["signatures"][0]["sig"]))
    sig[-1] ^= 0x01
    d["signatures"][0]["sig"] = base64.b64encode(bytes(sig)).decode()
    with pytest.raises(AttestationError, match="does not verify"):
        attest.verify_envelope(json.dumps(d).encode(), [signer.public_key], 1, sha)
    # another key, and a threshold the signatures do not reach
    stranger = CryptoSigner.generate_ecdsa()
    with pytest.raises(AttestationError, match="does not verify"):
        attest.verify_envelope(env, [stranger.public_key], 1, sha)
    with pytest.raises(AttestationError, match="does not verify"):
        attest.verify_envelope(env, [signer.public_key, stranger.public_key], 2, sha)
    # not an envelope at all, and another payload type
    for junk in (b"", b"[]", b"{", json.dumps(dict(json.loads(env), payloadType="text/plain")).encode()):
        with pytest.raises(AttestationError):
            attest.verify_envelope(junk, [signer.public_key], 1, sha)


def test_a_stranger_checks_the_envelope_with_sigstore_and_in_toto_attestation(entry, signer):
    """No securesystemslib: sigstore's DSSE code verifies the signature over the spec's PAE with the
    public key alone, and in-toto-attestation's protobufs parse and validate the Statement."""
    from in_toto_attestation.predicates.test_result.v0 import test_result_pb2
    from in_toto_attestation.v1 import statement_pb2
    from in_toto_attestation.v1.statement import Statement
    from sigstore import dsse

    stmt = attest.statements_for(entry)[-1]
    env = attest.sign_statement(stmt, signer)
    key = serialization.load_pem_public_key(signer.public_key.keyval["public"].encode())
    envelope = dsse.Envelope._from_json(env)
    payload = dsse._verify(key, envelope)  # raises VerificationError on a bad signature
    assert json.loads(payload) == stmt
    pb = json_format.Parse(payload, statement_pb2.Statement())
    Statement.copy_from_pb(pb).validate()
    assert pb.subject[0].digest["sha256"] == stmt["subject"][0]["digest"]["sha256"]
    pred = json_format.ParseDict(json_format.MessageToDict(pb.predicate), test_result_pb2.TestResult())
    assert pred.result == "pass" and list(pred.passed_tests) == stmt["predicate"]["passedTests"]
    # and sigstore refuses the envelope under another key
    other = serialization.load_pem_public_key(CryptoSigner.generate_ecdsa().public_key.keyval["public"].encode())
    with pytest.raises(dsse.VerificationError):
        dsse._verify(other, envelope)


def test_pick_file_takes_the_fastest_verified_file_or_says_what_there_is(entry, signer):
    ver = entry["_ort_version"]
    envs = {s["subject"][0]["digest"]["sha256"]: attest.sign_statement(s, signer) for s in attest.statements_for(entry)}
    verified = [attest.verify_envelope(e, [signer.public_key], 1, sha) for sha, e in envs.items()]
    default = mf.file_record({"models": [entry]}, "dense_b0")
    target = next(f for f in entry["files"] if f["path"].endswith("opset15.onnx"))
    # no latency records: the default file (highest opset) before the target
    assert attest.pick_file(entry, verified, "onnxruntime", ver) == default
    assert attest.pick_file(entry, None, "onnxruntime", ".".join(ver.split(".")[:2])) == default
    # an opset cap leaves the target
    assert attest.pick_file(entry, verified, "onnxruntime", ver, opset=15) == target
    # latency records decide where present: a faster target wins
    timed = dict(entry, latency=[{"precision": "fp32", "p50_ms": 2.0, "batch_size": 1},
                                 {"file": target["path"], "precision": "fp32", "p50_ms": 1.0, "batch_size": 1}])
    assert attest.pick_file(timed, verified, "onnxruntime", ver) == target
    # another version: a typed error naming the versions there are records for
    with pytest.raises(NotVerifiedError) as e:
        attest.pick_file(entry, verified, "onnxruntime", "1.16")
    assert e.value.versions == {"onnxruntime": [ver]} and f"onnxruntime {ver}" in str(e.value)
    with pytest.raises(NotVerifiedError, match="no passing record for tract; it has records for onnxruntime"):
        attest.pick_file(entry, verified, "tract")
    # only verified Statements count: without the target's, an opset 15 cap finds nothing
    with pytest.raises(NotVerifiedError):
        attest.pick_file(entry, [s for s in verified if s["subject"][0]["digest"]["sha256"] != target["sha256"]],
                         "onnxruntime", ver, opset=15)


def test_require_verified_refuses_a_file_without_a_passing_record(entry):
    attest.require_verified(entry, None, "onnxruntime")
    with pytest.raises(NotVerifiedError, match="carries no passing verification record for openvino"):
        attest.require_verified(entry, None, "openvino")
    # a failed record is no verification: the target's records turned to failures
    failed = dict(entry, parity=[dict(r, verdict="fail") if r.get("file") else r for r in entry["parity"]])
    with pytest.raises(NotVerifiedError, match="opset15.onnx carries no passing"):
        attest.require_verified(failed, None, "onnxruntime")
    stmt = next(s for s in attest.statements_for(failed) if s["subject"][0]["name"].endswith("opset15.onnx"))
    assert stmt["predicate"]["result"] == "fail" and stmt["predicate"]["failedTests"]


def test_runtime_versions_are_read_from_every_record_form():
    assert attest.runtime_version({"runtime": "onnxruntime", "version": "1.16.3"}) == "1.16.3"
    assert attest.runtime_version({"runtime": "onnxruntime-node",
                                   "version": "node v20.20.2, onnxruntime-node 1.30.0"}) == "1.30.0"
    assert attest.runtime_version({"runtime": "reference", "version": "onnx 1.19.1"}) == "1.19.1"
    assert attest.runtime_version({"runtime": "tract", "version": None}) is None
