"""Signatures: OpenSSF model signing for each model version (and the pre-TUF index, read for migration).

No cryptography is written here. A model version is signed with ``model_signing`` (a Sigstore
bundle whose DSSE envelope carries an in-toto statement listing every file's sha256; key-based,
elliptic-curve, offline), in exactly the format its own command line verifies::

    model_signing verify key --signature releases/NAME/V/model.sig --public_key KEY.pub VIEW/NAME

An older zoo's ``index.json`` (ECDSA from ``cryptography`` over its canonical JSON) is verified
here when a publisher migrates it to TUF metadata. Keys: :mod:`zoo.hub.keys`.

``model_signing`` keeps its bundle reader, key signer and verifier in ``model_signing._signing``;
they are used here (and only here) because its public ``verifying.Config`` insists on hashing files
on disk, while the zoo must check a signature *before* a file reaches the cache. The version is
pinned in constraints.txt and ``tests/test_releases.py`` checks the result with the upstream CLI.
"""

from __future__ import annotations

import base64
import json
import pathlib
import tempfile
from pathlib import Path

from ..errors import cut
from .config import HubError, IntegrityError, first_line

SIGNATURE_NAME = "model.sig"
MAX_SIGNATURE_BYTES = 1 << 20


class SignatureError(IntegrityError):
    """A signature is missing, malformed, made with another key, or does not cover these bytes."""


# --------------------------------------------------------------------------------------------------
# Model versions: OpenSSF model signing


def signed_files(entry: dict) -> dict[str, str]:
    """identifier -> sha256 of every file of ``entry``, named relative to the model's folder
    (``dense_b0/model.onnx`` -> ``model.onnx``): model_signing's identifiers for that folder."""
    prefix = entry["model"] + "/"
    out = {}
    for f in entry["files"]:
        if not f["path"].startswith(prefix):
            raise HubError(f"{entry['model']}: {f['path']} is outside the folder {prefix}; cannot sign it")
        out[f["path"][len(prefix):]] = f["sha256"]
    return out


def sign_version(entry: dict, signer) -> bytes:
    """The model_signing bundle (JSON bytes) over every file of ``entry``, from the recorded
    sha256 of each (the publisher checked them against the files just before). ``signer``: a
    :func:`zoo.hub.keys.signer` (the release's targets key)."""
    from model_signing import manifest
    from model_signing._hashing.hashing import Digest
    from model_signing._signing import sign_ec_key, signing

    items = [manifest.FileManifestItem(path=pathlib.PurePosixPath(ident), digest=Digest("sha256", bytes.fromhex(sha)))
             for ident, sha in sorted(signed_files(entry).items())]
    # The serialization model_signing's own `sign` records for a folder hashed file by file.
    serialization = manifest._FileSerialization("sha256", allow_symlinks=False)
    payload = signing.Payload(manifest.Manifest(entry["model"], items, serialization))
    ms = sign_ec_key.Signer.__new__(sign_ec_key.Signer)  # its constructor reads an unencrypted file; the key is loaded
    ms._private_key = signer.zoo_key
    return ms.sign(payload).bundle.to_json().encode()


def verify_version(entry: dict, bundle: bytes, public_key_path, where: str) -> None:
    """Raise ``SignatureError`` unless ``bundle`` is a model_signing signature by the key in
    ``public_key_path`` over exactly the files (identifiers and sha256) that ``entry`` lists."""
    from model_signing._signing import sign_ec_key, sign_sigstore_pb

    from .keys import load_public

    load_public(public_key_path)
    if len(bundle) > MAX_SIGNATURE_BYTES:
        raise SignatureError(f"{where}: larger than {MAX_SIGNATURE_BYTES:,} bytes; not a signature")
    with tempfile.TemporaryDirectory(prefix="zoo-sig-") as tmp:  # model_signing reads bundles from a path
        p = Path(tmp) / SIGNATURE_NAME
        p.write_bytes(bundle)
        try:
            signature = sign_sigstore_pb.Signature.read(p)
            signed = sign_ec_key.Verifier(Path(public_key_path).expanduser()).verify(signature)
        except Exception as e:  # noqa: BLE001 - a hostile bundle raises many types (JSON, protobuf, crypto)
            raise SignatureError(f"{where}: the signature does not verify with the trusted key "
                                 f"({cut(first_line(e), 120)})") from None
    got = {rd.identifier: rd.digest.digest_hex for rd in signed.resource_descriptors()
           if rd.digest.algorithm == "sha256"}
    want = signed_files(entry)
    if got != want:
        odd = sorted(set(got) ^ set(want)) or sorted(k for k in want if got.get(k) != want[k])
        raise SignatureError(f"{where}: the signature covers other files than {entry['model']} lists "
                             f"(differs at {cut(', '.join(odd), 120)})")


# --------------------------------------------------------------------------------------------------
# The index: ECDSA over canonical JSON (TUF's envelope: {"signed": ..., "signatures": [...]})


def canonical(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


def verify_index(envelope: dict, public_key_path, where: str) -> None:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    from .keys import key_id, load_public

    key = public_key_path if hasattr(public_key_path, "public_numbers") else load_public(public_key_path)
    kid = key_id(key)
    sigs = [s for s in envelope.get("signatures") or [] if isinstance(s, dict) and s.get("keyid") == kid]
    if not envelope.get("signatures"):
        raise SignatureError(f"{where} is not signed; refusing it (a trusted key is set for this source)")
    if not sigs:
        raise SignatureError(f"{where} is signed by another key than the trusted one ({kid[:19]}...)")
    try:
        raw = base64.b64decode(str(sigs[0].get("sig", "")), validate=True)
        key.verify(raw, canonical(envelope["signed"]), ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError, TypeError):
        raise SignatureError(f"{where}: the signature does not match its content (tampered); refusing it") from None


__all__ = ["SIGNATURE_NAME", "SignatureError", "canonical", "sign_version", "signed_files", "verify_index",
           "verify_version"]
