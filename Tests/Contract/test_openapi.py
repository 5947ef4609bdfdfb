"""The broker against its OpenAPI description (docs/openapi.yaml), with schemathesis.

Every operation is called with generated inputs, valid and invalid, over HTTP/2 with prior knowledge or over
HTTP/1.1 (APPROVALD_HTTP_VERSION "2" or "1.1": the broker serves both on one port), signed as the contract asks: IdP requests with a real HMAC over the exact bytes sent, device
requests with a real P-256 device key. Each response must match the description (status, content type, headers,
body schema), invalid input must be refused with a 4xx, and nothing may yield a 5xx.

The broker's URL, IdP key and tenant come from the environment (Tests/Contract/run sets them).
"""

import json
import os
import random
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from parties import TENANT, Phone, Realm, idp_headers, permit
from schemathesis.checks import not_a_server_error
from schemathesis.core.parameters import ParameterLocation
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

BASE_URL = os.environ.get("APPROVALD_URL", "http://127.0.0.1:8080")
# schemathesis.toml fixes every operation's tenant and device_id to these.
DEVICE = os.environ.setdefault("APPROVALD_DEVICE", "contract-phone")
EXAMPLES = int(os.environ.get("APPROVALD_CONTRACT_EXAMPLES", "60"))
HTTP_VERSION = os.environ.get("APPROVALD_HTTP_VERSION", "2")

SPEC = Path(__file__).resolve().parents[2] / "docs" / "openapi.yaml"
schema = schemathesis.openapi.from_path(str(SPEC))

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]
# Generated header fields this client does not pass on: those HTTP/2 forbids (RFC 9113, 8.2.2), which generated
# negative cases sometimes name and which the Python h2 library refuses to send (its refusal midway through a header
# block also breaks the connection's HPACK state, and the broker then ends the connection with COMPRESSION_ERROR),
# and user-agent, which httpx sets itself.
NOT_SENT = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te", "user-agent"}
# Hypothesis reseeds the global `random` for every example; aiming needs draws of its own.
AIM = random.SystemRandom()
# The Keycloak realm whose CIBA requests the contract tenant takes (Tests/Contract/run configures both).
REALM = Realm(os.environ["APPROVALD_CIBA_REALM_KEY"], os.environ["APPROVALD_CIBA_ISSUER"])


@pytest.fixture(scope="session")
def client():
    # HTTP/2: http1=False makes it prior knowledge on http:// URLs.
    over_http2 = HTTP_VERSION == "2"
    with httpx.Client(base_url=BASE_URL, http1=not over_http2, http2=over_http2, timeout=40) as client:
        yield client


@pytest.fixture(scope="session")
def phone(client):
    permit(client)
    return Phone(client, DEVICE)


@pytest.fixture(scope="session")
def pending(client, phone):
    """A challenge pending on the phone, so that answers reach the decision check."""
    body = f'{{"request_id":"contract-{random.getrandbits(32):x}","user_id":"{phone.user_id}","number":42}}'
    path = f"/v1/tenants/{TENANT}/challenges"
    response = client.post(path, content=body.encode(), headers=idp_headers("POST", path, body.encode()))
    assert response.status_code == 201, response.text
    return response.json()["challenge_id"]


def aim(case, pending, client, phone):
    """Points half of the valid answers at the pending challenge, so that they reach the signature check, and a
    device's removal of itself at a phone of its own, so that the other operations keep theirs. Returns the phone
    that signs the case."""
    mode = case.meta.generation.mode if case.meta is not None else None
    negative = mode is not None and mode.is_negative
    if case.operation.path.endswith("/response") and not negative and AIM.random() < 0.5:
        case.path_parameters["challenge_id"] = pending
    if case.method.upper() == "DELETE" and case.operation.path == "/v1/devices/{device_id}" and not negative:
        # Generated policy cases may have narrowed the tenant's policy since: the phone must register.
        permit(client)
        own = Phone(client, f"contract-gone-{AIM.getrandbits(32):x}")
        case.path_parameters["device_id"] = own.device_id
        return own
    return phone


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_the_api_matches_its_description(case, client, phone, pending):
    signer = aim(case, pending, client, phone)
    kwargs = case.as_transport_kwargs(base_url=BASE_URL)
    request = client.build_request(
        kwargs["method"],
        kwargs["url"],
        params=kwargs.get("params"),
        # h11 refuses to send a value with whitespace at either end (a generated "Bearer "): sent trimmed.
        headers={k: v.strip() for k, v in (kwargs.get("headers") or {}).items() if k.lower() not in NOT_SENT},
        content=body_of(kwargs),
    )
    body = request.content
    # What the signature covers: the path with its query, exactly as sent.
    target = request.url.raw_path.decode()
    # A negative case whose invalid part is its headers tests authentication: it goes out as generated, unsigned.
    unsigned = case.meta is not None and case.meta.is_negative_at(ParameterLocation.HEADER)
    if unsigned:
        pass
    elif target.endswith("/ciba"):
        # Keycloak's request: a token of the realm, a new request each time.
        request.headers["Authorization"] = f"Bearer {REALM.token()}"
    elif "/v1/tenants/" in target:
        request.headers.update(idp_headers(request.method, target, body))
    elif "/v1/devices/" in target and not target.endswith("/response"):
        request.headers["Authorization"] = signer.authorization(request.method, target, body)
    if target.endswith("/stream"):
        # The event stream stays open: its status and headers are what there is to check.
        streamed = client.send(request, stream=True)
        if streamed.status_code == 200:
            streamed.close()
            response = httpx.Response(200, headers=streamed.headers, content=b"", request=request)
            response.elapsed = streamed.elapsed
        else:
            streamed.read()
            response = streamed
    else:
        response = client.send(request)
    case.validate_response(response, checks=CHECKS)


def body_of(kwargs) -> bytes | None:
    """The generated body as bytes: JSON as the API takes it, or a form (the token endpoint's)."""
    if kwargs.get("json") is not None:
        return httpx_json(kwargs["json"])
    data = kwargs.get("data")
    if isinstance(data, dict):
        return urlencode(data, doseq=True).encode()
    return data


def httpx_json(value) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
