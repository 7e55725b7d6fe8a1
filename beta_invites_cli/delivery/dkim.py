"""DKIM signatures (RFC 6376, relaxed/relaxed; RSA-SHA256, or Ed25519-SHA256 per RFC 8463).

Written here rather than through dkimpy: dkimpy computes RSA in pure Python (about 7 ms a
message, holding the interpreter), which would make signing the slowest part of a send;
OpenSSL (through `cryptography`) takes a fraction of a millisecond. The tests verify what a
real server received with dkimpy's verifier (the public key served through its DNS hook), so
two implementations check each other.

The signature covers From, To, Subject, Date, Message-ID, MIME-Version, Content-Type and, when
present, Reply-To, List-Unsubscribe and List-Unsubscribe-Post: RFC 8058 section 4 counts a
one-click unsubscribe only when a valid signature covers both of its headers. From is signed
twice (once more than it occurs), so nobody can add a second From under our signature.
"""

from __future__ import annotations

import base64
import hashlib
import re
import time
from dataclasses import dataclass
from pathlib import Path

from beta_invites_cli.errors import InvitesError

SIGNED = (
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "MIME-Version",
    "Content-Type",
    "Reply-To",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
)
OVERSIGNED = ("From",)
MIN_RSA_BITS = 1024
_WSP = re.compile(rb"[ \t]+")
_SELECTOR = re.compile(
    r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
)


@dataclass(frozen=True)
class Signer:
    domain: str  # d=, in IDNA form
    selector: str  # s=
    algorithm: str  # rsa-sha256 | ed25519-sha256
    _key: object  # a cryptography private key

    def sign(self, message: bytes) -> bytes:
        """The message with its DKIM-Signature header first."""
        head, _, body = message.partition(b"\r\n\r\n")
        fields = _fields(head)
        present = {name.lower() for name, _ in fields}
        names = [n for n in SIGNED if n.lower() in present] + list(OVERSIGNED)
        body_hash = base64.b64encode(hashlib.sha256(canonical_body(body)).digest()).decode()
        tags = (
            f"v=1; a={self.algorithm}; c=relaxed/relaxed; d={self.domain}; s={self.selector};"
            f"\r\n t={int(time.time())}; h={':'.join(names)};\r\n bh={body_hash};\r\n b="
        )
        signed = b"".join(canonical_header(raw) for raw in _chosen(fields, names))
        signed += canonical_header(f"DKIM-Signature: {tags}".encode()).removesuffix(b"\r\n")
        signature = base64.b64encode(self._signature(signed)).decode()
        folded = "\r\n ".join(signature[i : i + 72] for i in range(0, len(signature), 72))
        return f"DKIM-Signature: {tags}{folded}\r\n".encode() + message

    def _signature(self, data: bytes) -> bytes:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

        if isinstance(self._key, rsa.RSAPrivateKey):
            return self._key.sign(data, padding.PKCS1v15(), hashes.SHA256())
        assert isinstance(self._key, ed25519.Ed25519PrivateKey)
        return self._key.sign(hashlib.sha256(data).digest())  # RFC 8463: Ed25519 over the hash

    def public_record(self) -> str:
        """The TXT record to publish at SELECTOR._domainkey.DOMAIN."""
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        public = self._key.public_key()  # type: ignore[attr-defined]
        if isinstance(self._key, rsa.RSAPrivateKey):
            der = public.public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            return f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode()}"
        raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return f"v=DKIM1; k=ed25519; p={base64.b64encode(raw).decode()}"


def canonical_body(body: bytes) -> bytes:
    """Relaxed body canonicalization (RFC 6376 section 3.4.4)."""
    lines = body.split(b"\r\n")
    lines = [_WSP.sub(b" ", line).rstrip(b" ") for line in lines]
    while lines and lines[-1] == b"":
        lines.pop()
    return b"".join(line + b"\r\n" for line in lines)


def canonical_header(raw: bytes) -> bytes:
    """Relaxed header canonicalization (RFC 6376 section 3.4.2) of one field, with its CRLF."""
    name, _, value = raw.partition(b":")
    value = value.replace(b"\r\n", b"")
    value = _WSP.sub(b" ", value).strip(b" ")
    return name.strip().lower() + b":" + value + b"\r\n"


def _fields(head: bytes) -> list[tuple[str, bytes]]:
    """The header fields in order: (name, the raw field with its continuation lines)."""
    fields: list[tuple[str, bytes]] = []
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and fields:
            name, raw = fields[-1]
            fields[-1] = (name, raw + b"\r\n" + line)
        else:
            fields.append((line.partition(b":")[0].decode("ascii", "replace").strip(), line))
    return fields


def _chosen(fields: list[tuple[str, bytes]], names: list[str]) -> list[bytes]:
    """The fields h= names, each time the next from the bottom (RFC 6376 section 5.4.2); a
    name asked for more often than it occurs signs an empty field (over-signing)."""
    remaining: dict[str, list[bytes]] = {}
    for name, raw in fields:
        remaining.setdefault(name.lower(), []).append(raw)
    chosen = []
    for name in names:
        stack = remaining.get(name.lower(), [])
        chosen.append(stack.pop() if stack else b"")
    return [raw for raw in chosen if raw]


def load(key_file: str, selector: str | None, domain: str) -> Signer:
    """INVITES_DKIM_KEY_FILE with INVITES_DKIM_SELECTOR: checked before anything is sent."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

    if not selector:
        raise InvitesError("INVITES_DKIM_KEY_FILE is set but INVITES_DKIM_SELECTOR is not")
    if not _SELECTOR.fullmatch(selector):
        raise InvitesError(f"INVITES_DKIM_SELECTOR: {selector!r} is not a DNS label")
    try:
        pem = Path(key_file).read_bytes()
    except OSError as exc:
        raise InvitesError(
            f"INVITES_DKIM_KEY_FILE: cannot read {key_file}: {exc.strerror}"
        ) from None
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        why = (
            "it is encrypted"
            if "encrypted" in str(exc).lower() or "password" in str(exc).lower()
            else "it is not a PEM private key"
        )
        raise InvitesError(f"INVITES_DKIM_KEY_FILE: {key_file}: {why}") from None
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < MIN_RSA_BITS:
            raise InvitesError(
                f"INVITES_DKIM_KEY_FILE: {key_file}: an RSA key of {key.key_size} bits; receivers"
                f" ignore signatures by keys under {MIN_RSA_BITS} bits (use 2048)"
            )
        return Signer(domain, selector, "rsa-sha256", key)
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return Signer(domain, selector, "ed25519-sha256", key)
    raise InvitesError(f"INVITES_DKIM_KEY_FILE: {key_file}: use an RSA or an Ed25519 key")
