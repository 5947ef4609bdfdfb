#!/usr/bin/env python3
"""Writes p256_signatures.json: ECDSA P-256/SHA-256 keys and signatures made by pyca/cryptography (its own ASN.1
and key serialisation, its own bundled libcrypto build), for the Swift Crypto tests to verify.

Run from this folder: python3 make_fixtures.py
"""
import base64
import json

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def spki(key) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


cases = []
messages = [
    b"",
    b"approvald",
    "approvald-decision-v1\ncontoso\nsignin-7f3a\nch_AAAAAAAAAAAAAAAAAAAAAA\nphone-1\napprove\n42\n\n1795600000".encode(),
    bytes(range(256)) * 8,
]
for index, message in enumerate(messages):
    key = ec.generate_private_key(ec.SECP256R1())
    signature = key.sign(message, ec.ECDSA(hashes.SHA256()))
    cases.append({"name": f"valid-{index}", "spki": b64(spki(key)), "message": b64(message),
                  "signature": b64url(signature), "valid": True})
    tampered = message + b"!"
    cases.append({"name": f"other-message-{index}", "spki": b64(spki(key)), "message": b64(tampered),
                  "signature": b64url(signature), "valid": False})
    other = ec.generate_private_key(ec.SECP256R1())
    cases.append({"name": f"other-key-{index}", "spki": b64(spki(other)), "message": b64(message),
                  "signature": b64url(signature), "valid": False})

p384 = ec.generate_private_key(ec.SECP384R1())
pkcs8 = ec.generate_private_key(ec.SECP256R1()).private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
fixture = {
    "signatures": cases,
    "p384_spki": b64(spki(p384)),
    "p256_pkcs8_pem": pkcs8,
}
with open("p256_signatures.json", "w") as out:
    json.dump(fixture, out, indent=1)
    out.write("\n")
