"""The parties of a sign-in as the Python tests play them: an IdP that signs its calls with HMAC, a phone with a
P-256 key that signs its requests and its decisions (API.md, "Authentication" and "Answering"), and a Keycloak realm
that issues the bearer tokens of its CIBA authentication requests (API.md, "Keycloak CIBA authentication channel").

The broker's IdP key and tenant come from the environment, as Tests/Contract/run and Tests/Contract/browser set them.
"""

import base64
import hashlib
import hmac
import json
import os
import sys
import time
import uuid

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding

KEY_ID = os.environ.get("APPROVALD_KEY_ID", "demo-dev")
SECRET = os.environ.get("APPROVALD_SECRET", "development-only-secret-do-not-use-0123456789").encode()
TENANT = os.environ.setdefault("APPROVALD_TENANT", "demo")


def idp_headers(method: str, path: str, body: bytes) -> dict[str, str]:
    t = str(int(time.time()))
    message = f"{t}\n{method}\n{path}\n".encode() + body
    mac = hmac.new(SECRET, message, hashlib.sha256).hexdigest()
    return {"Approvald-Signature": f"key={KEY_ID}, t={t}, v1={mac}", "Content-Type": "application/json"}


def permit(client):
    """A policy that lets phones register and challenges be created, whatever an earlier run or case stored."""
    body = b'{"passwordless":true,"target":"all","max_pending_per_user":100,"max_challenges_per_window":100000}'
    path = f"/v1/tenants/{TENANT}/policy"
    response = client.put(path, content=body, headers=idp_headers("PUT", path, body))
    assert response.status_code == 200, response.text


class Phone:
    """A device registered for `user_id` (by default `<device_id>@example.com`), with its private key. `client` is an
    httpx.Client on the broker."""

    def __init__(self, client, device_id: str, user_id: str | None = None):
        self.client = client
        self.device_id = device_id
        self.user_id = user_id or f"{self.device_id}@example.com"
        self.key = ec.generate_private_key(ec.SECP256R1())
        spki = self.key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        body = (
            f'{{"user_id":"{self.user_id}","public_key":"{base64.b64encode(spki).decode()}",'
            '"push":{"provider":"none"}}'
        ).encode()
        path = f"/v1/tenants/{TENANT}/devices/{self.device_id}"
        response = client.put(path, content=body, headers=idp_headers("PUT", path, body))
        assert response.status_code in (200, 201), response.text

    def sign(self, message: bytes) -> str:
        der = self.key.sign(message, ec.ECDSA(hashes.SHA256()))
        return base64.urlsafe_b64encode(der).rstrip(b"=").decode()

    def authorization(self, method: str, path: str, body: bytes) -> str:
        t = str(int(time.time()))
        signature = self.sign(f"{t}\n{method}\n{path}\n".encode() + body)
        return f"Approvald-Device device={self.device_id}, t={t}, sig={signature}"

    def queue(self) -> list[dict]:
        path = f"/v1/devices/{self.device_id}/challenges"
        response = self.client.get(path, headers={"Authorization": self.authorization("GET", path, b"")})
        assert response.status_code == 200, response.text
        return response.json()["challenges"]

    def next_prompt(self, timeout: float = 15) -> dict:
        """The first challenge in the queue, once there is one."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            queue = self.queue()
            if queue:
                return queue[0]
            time.sleep(0.1)
        raise AssertionError(f"nothing reached {self.device_id} within {timeout} s")

    def answer(self, challenge: dict, number: int | None = None, reason: str | None = None):
        """Approves with `number`, or denies with `reason`, signed as the app signs."""
        decision = "approve" if number is not None else "deny"
        signed_at = int(time.time())
        lines = [
            "approvald-decision-v1", challenge["tenant_id"], challenge["request_id"], challenge["challenge_id"],
            self.device_id, decision, "" if number is None else str(number), reason or "", str(signed_at),
        ]
        body = {
            "decision": decision, "selected_number": number, "reason": reason, "signed_at_unix": signed_at,
            "signature": self.sign("\n".join(lines).encode()),
        }
        path = f"/v1/devices/{self.device_id}/challenges/{challenge['challenge_id']}/response"
        return self.client.post(path, json=body)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Realm:
    """A Keycloak realm's signing key (an RSA private key in PEM) and its issuer: tokens shaped as Keycloak's
    HttpAuthenticationChannelProvider issues them, and the JWK Set approvald trusts them by."""

    KID = "contract-realm-key"

    def __init__(self, key_path: str, issuer: str):
        with open(key_path, "rb") as pem:
            self.key = serialization.load_pem_private_key(pem.read(), password=None)
        self.issuer = issuer

    def key_set(self) -> str:
        numbers = self.key.public_key().public_numbers()
        size = (numbers.n.bit_length() + 7) // 8
        return json.dumps({"keys": [{
            "kid": self.KID, "kty": "RSA", "alg": "RS256", "use": "sig",
            "n": b64url(numbers.n.to_bytes(size, "big")), "e": b64url(numbers.e.to_bytes(3, "big")),
        }]})

    def token(self, lifetime: int = 120) -> str:
        """A fresh request's token: its own jti, so that each is a new request."""
        header = {"alg": "RS256", "typ": "JWT", "kid": self.KID}
        claims = {
            "exp": int(time.time()) + lifetime, "jti": str(uuid.uuid4()), "iss": self.issuer, "aud": self.issuer,
            "sub": "contract-user", "typ": "Bearer", "azp": "contract-client",
        }
        signing_input = b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(claims).encode())
        signature = self.key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return signing_input + "." + b64url(signature)


if __name__ == "__main__":
    # parties.py key-set KEY_PEM ISSUER: the realm's JWK Set, for approvald's jwks_file.
    if sys.argv[1:2] == ["key-set"]:
        print(Realm(sys.argv[2], sys.argv[3]).key_set())
