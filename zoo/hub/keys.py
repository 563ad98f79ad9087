"""Keys for releases: PEM files in, securesystemslib signers and keys out. No cryptography here.

A publisher's keys are elliptic-curve PEM files (P-256, P-384 or P-521: the curves both TUF's
``ecdsa-sha2-nistp*`` schemes and OpenSSF model signing accept), PKCS#8 or SEC1, optionally
passphrase-protected: the passphrase comes from ``$ZOO_KEY_PASSPHRASE``, else a prompt on a terminal.
Public keys are PEM SubjectPublicKeyInfo files. Everything that signs or verifies is
``securesystemslib`` (``CryptoSigner``, ``SSlibKey``), which python-tuf uses too.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

from ..errors import InputError, cut
from .config import first_line

PASSPHRASE_ENV = "ZOO_KEY_PASSPHRASE"
CURVES = ("secp256r1", "secp384r1", "secp521r1")  # TUF's ecdsa-sha2-nistp* and model_signing's
MAX_KEY_BYTES = 64 << 10


def _read(path, what: str) -> bytes:
    from ..fsutil import read_input

    return read_input(path, MAX_KEY_BYTES, what)  # a FIFO or /dev/zero is refused, never read


def _passphrase(path) -> bytes:
    pw = os.environ.get(PASSPHRASE_ENV)
    if pw:
        return pw.encode()
    if sys.stdin is not None and sys.stdin.isatty():
        import getpass

        pw = getpass.getpass(f"passphrase for {path}: ")
        if pw:
            return pw.encode()
    raise InputError(f"signing key {path} is passphrase-protected; set ${PASSPHRASE_ENV} (or run on a terminal "
                     "to be asked)")


def load_private(path):
    """The EC private key in the PEM file ``path`` (a cryptography object), decrypted if needed."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    data = _read(path, "signing key")
    try:
        key = serialization.load_pem_private_key(data, None)
    except TypeError:  # encrypted: "Password was not given but private key is encrypted"
        pw = _passphrase(path)
        try:
            key = serialization.load_pem_private_key(data, pw)
        except (ValueError, TypeError):
            raise InputError(f"signing key {path}: the passphrase does not decrypt it") from None
    except ValueError as e:
        raise InputError(f"signing key {path}: not a PEM private key ({cut(first_line(e), 120)}); a public key "
                         "(.pub) cannot sign") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name not in CURVES:
        raise InputError(f"signing key {path}: not an elliptic-curve key on {', '.join(CURVES)}")
    return key


def load_public(path):
    """The EC public key in the PEM file ``path`` (a private key's file is refused: trust needs no secret)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    data = _read(path, "public key")
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as e:
        raise InputError(f"public key {path}: not a PEM public key ({cut(first_line(e), 120)})") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name not in CURVES:
        raise InputError(f"public key {path}: not an elliptic-curve key on {', '.join(CURVES)}")
    return key


def signer(path):
    """A securesystemslib ``CryptoSigner`` for the private key file ``path``."""
    from securesystemslib.signer import CryptoSigner

    key = load_private(path)
    s = CryptoSigner(key)
    s.zoo_path, s.zoo_key = str(path), key  # for messages, and for model_signing's bundle signer
    return s


def sslib_key(public_key):
    """The securesystemslib key (TUF's key object) of a cryptography public key."""
    from securesystemslib.signer import SSlibKey

    return SSlibKey.from_crypto(public_key)


def public_pem(key) -> bytes:
    """PEM SubjectPublicKeyInfo of a cryptography key (private or public) or an SSlibKey."""
    from cryptography.hazmat.primitives import serialization

    if hasattr(key, "keyval"):  # SSlibKey: ECDSA keys carry their PEM
        return key.keyval["public"].encode()
    pub = key.public_key() if hasattr(key, "public_key") and callable(key.public_key) else key
    return pub.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def key_id(key) -> str:
    """``sha256:`` of the public key's DER encoding (how release records name a key)."""
    from cryptography.hazmat.primitives import serialization

    if hasattr(key, "keyval"):
        key = serialization.load_pem_public_key(public_pem(key))
    pub = key.public_key() if hasattr(key, "public_key") and callable(key.public_key) else key
    der = pub.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256:" + hashlib.sha256(der).hexdigest()


def _write_new(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def keygen(out: str | os.PathLike, *, passphrase: bool = False) -> dict:
    """Write an ECDSA P-256 key pair: ``OUT`` (private, mode 0600; encrypted with
    ``$ZOO_KEY_PASSPHRASE`` or a prompted passphrase when ``passphrase``) and ``OUT.pub``.
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
    enc = serialization.NoEncryption()
    if passphrase:
        pw = _passphrase(priv_path)
        if len(pw) < 8:
            raise InputError("the passphrase is shorter than 8 characters")
        enc = serialization.BestAvailableEncryption(pw)
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc)
    _write_new(priv_path, pem, 0o600)
    _write_new(pub_path, public_pem(key), 0o644)
    return {"private_key": str(priv_path), "public_key": str(pub_path), "key_id": key_id(key),
            "encrypted": passphrase}


PUBLISHER_ROLES = ("root", "targets", "online")


def keygen_publisher(folder: str | os.PathLike, *, passphrase: bool = False) -> list[dict]:
    """What a publisher needs, TUF's way: ``root.key`` and ``targets.key`` (keep them offline) and
    ``online.key`` (timestamp and snapshot: the only key a renewal needs), each with its ``.pub``."""
    d = Path(folder).expanduser()
    if not d.is_dir():
        raise InputError(f"folder {d} does not exist")
    clash = [str(d / f"{r}.key{s}") for r in PUBLISHER_ROLES for s in ("", ".pub") if os.path.lexists(d / f"{r}.key{s}")]
    if clash:
        raise InputError(f"{clash[0]} already exists; refusing to overwrite a key")
    return [dict(keygen(d / f"{r}.key", passphrase=passphrase and r != "online"), role=r) for r in PUBLISHER_ROLES]


__all__ = ["PASSPHRASE_ENV", "keygen", "keygen_publisher", "key_id", "load_private", "load_public", "public_pem",
           "signer", "sslib_key"]
