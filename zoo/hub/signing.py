"""Keys and signatures: OpenSSF model signing for each model version, ECDSA for the mirror's index.

No cryptography is written here. A model version is signed with ``model_signing`` (a Sigstore
bundle whose DSSE envelope carries an in-toto statement listing every file's sha256; key-based,
elliptic-curve, offline), in exactly the format its own command line verifies::

    model_signing verify key --signature releases/NAME/V/model.sig --public_key KEY.pub VIEW/NAME

The index (``index.json``) is signed with ECDSA from ``cryptography`` over its canonical JSON.
Keys are PEM files: a private key (``zoo keygen``, or ``openssl ecparam -name prime256v1 -genkey``)
and its public key.

``model_signing`` keeps its bundle reader, key signer and verifier in ``model_signing._signing``;
they are used here (and only here) because its public ``verifying.Config`` insists on hashing files
on disk, while the zoo must check a signature *before* a file reaches the cache. The version is
pinned in constraints.txt and ``tests/test_releases.py`` checks the result with the upstream CLI.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import pathlib
import tempfile
from pathlib import Path

from ..errors import InputError, cut
from .config import HubError, IntegrityError, first_line

SIGNATURE_NAME = "model.sig"
CURVES = ("secp256r1", "secp384r1", "secp521r1")  # the curves model_signing accepts
MAX_KEY_BYTES = 64 << 10
MAX_SIGNATURE_BYTES = 1 << 20


class SignatureError(IntegrityError):
    """A signature is missing, malformed, made with another key, or does not cover these bytes."""


# --------------------------------------------------------------------------------------------------
# Keys


def _read_key_file(path, what: str) -> bytes:
    from ..fsutil import read_input

    return read_input(path, MAX_KEY_BYTES, what)  # a FIFO or /dev/zero is refused, never read


def load_private_key(path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    data = _read_key_file(path, "signing key")
    try:
        key = serialization.load_pem_private_key(data, None)
    except (ValueError, TypeError) as e:
        raise InputError(f"signing key {path}: not an unencrypted PEM private key ({cut(first_line(e), 120)})") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name not in CURVES:
        raise InputError(f"signing key {path}: not an elliptic-curve key on {', '.join(CURVES)}")
    return key


def load_public_key(path):
    """The public key in the PEM file ``path`` (a private key's file is refused: trust needs no secret)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    data = _read_key_file(path, "public key")
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as e:
        raise InputError(f"public key {path}: not a PEM public key ({cut(first_line(e), 120)})") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name not in CURVES:
        raise InputError(f"public key {path}: not an elliptic-curve key on {', '.join(CURVES)}")
    return key


def public_pem(key) -> bytes:
    from cryptography.hazmat.primitives import serialization

    pub = key.public_key() if hasattr(key, "public_key") else key
    return pub.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def key_id(key) -> str:
    """``sha256:`` of the public key's DER encoding (what the records name a key by)."""
    from cryptography.hazmat.primitives import serialization

    pub = key.public_key() if hasattr(key, "public_key") else key
    der = pub.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256:" + hashlib.sha256(der).hexdigest()


def keygen(out: str | os.PathLike) -> dict:
    """Write an ECDSA P-256 key pair: ``OUT`` (private, mode 0600) and ``OUT.pub`` (public).
    Neither file may exist yet."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    priv_path = Path(out).expanduser()
    pub_path = priv_path.with_name(priv_path.name + ".pub")
    for p in (priv_path, pub_path):
        if os.path.lexists(p):
            raise InputError(f"{p} already exists; refusing to overwrite a key")
    if not priv_path.parent.is_dir():
        raise InputError(f"folder {priv_path.parent} does not exist")
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    fd = os.open(priv_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    fd = os.open(pub_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(public_pem(key))
    return {"private_key": str(priv_path), "public_key": str(pub_path), "key_id": key_id(key)}


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


def sign_version(entry: dict, private_key_path) -> bytes:
    """The model_signing bundle (JSON bytes) over every file of ``entry``, from the recorded
    sha256 of each (the publisher checked them against the files just before)."""
    from model_signing import manifest
    from model_signing._hashing.hashing import Digest
    from model_signing._signing import sign_ec_key, signing

    load_private_key(private_key_path)  # one clear line for a bad key
    items = [manifest.FileManifestItem(path=pathlib.PurePosixPath(ident), digest=Digest("sha256", bytes.fromhex(sha)))
             for ident, sha in sorted(signed_files(entry).items())]
    # The serialization model_signing's own `sign` records for a folder hashed file by file.
    serialization = manifest._FileSerialization("sha256", allow_symlinks=False)
    payload = signing.Payload(manifest.Manifest(entry["model"], items, serialization))
    sig = sign_ec_key.Signer(Path(private_key_path).expanduser()).sign(payload)
    return sig.bundle.to_json().encode()


def verify_version(entry: dict, bundle: bytes, public_key_path, where: str) -> None:
    """Raise ``SignatureError`` unless ``bundle`` is a model_signing signature by the key in
    ``public_key_path`` over exactly the files (identifiers and sha256) that ``entry`` lists."""
    from model_signing._signing import sign_ec_key, sign_sigstore_pb

    load_public_key(public_key_path)
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


def sign_index(signed: dict, private_key_path) -> dict:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    key = load_private_key(private_key_path)
    sig = key.sign(canonical(signed), ec.ECDSA(hashes.SHA256()))
    return {"signed": signed, "signatures": [{"keyid": key_id(key), "sig": base64.b64encode(sig).decode()}]}


def verify_index(envelope: dict, public_key_path, where: str) -> None:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    key = load_public_key(public_key_path)
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


__all__ = ["SIGNATURE_NAME", "SignatureError", "canonical", "key_id", "keygen", "load_private_key",
           "load_public_key", "sign_index", "sign_version", "signed_files", "verify_index", "verify_version"]
