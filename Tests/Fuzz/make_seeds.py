#!/usr/bin/env python3
"""Writes the fuzz targets' seed corpora (Tests/Fuzz/Corpus/<Target>/): one small file per shape of input each
parser must handle. The seeds are committed; run this again after changing it."""
import hashlib
import hmac
import json
import pathlib
import struct

ROOT = pathlib.Path(__file__).resolve().parent / "Corpus"


def write(target, name, data):
    directory = ROOT / target
    directory.mkdir(parents=True, exist_ok=True)
    (directory / name).write_bytes(data if isinstance(data, bytes) else data.encode())


# Request bodies.
for name, body in {
    "challenge": '{"request_id":"signin-7f3a","user_id":"alice@contoso.com","number":42,"ttl_seconds":120,'
    '"context":{"app":"Outlook","ip":"203.0.113.7"}}',
    "device": '{"user_id":"alice","public_key":"MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE","push":{"provider":"apns",'
    '"token":"00ff","topic":"com.example"},"mam_restricted":false,"display_name":"Alice\\u2019s iPhone"}',
    "answer": '{"decision":"approve","selected_number":42,"reason":null,"signed_at_unix":1795600000,'
    '"signature":"MEUCIQ"}',
    "policy": '{"passwordless":true,"target":"selected","users":["a","b"],"max_devices_per_user":5,'
    '"challenge_ttl_seconds":120,"choices":3,"window_seconds":600,"lockout_seconds":1.2e3}',
    "push": '{"provider":"fcm","token":"abc"}',
    "escapes": '["\\"\\\\\\/\\b\\f\\n\\r\\t\\u0000\\ud83d\\ude00", -0, 1e308, -1.5E-7, true, false, null, {}]',
    "nested": "[" * 40 + "]" * 40,
}.items():
    write("FuzzJSON", name, body)

# IdP signatures: the header, a newline, the body. The MACs are real, under a secret the target does not hold (so
# that no mutation of them can authenticate), and exercise the whole comparison.
secret = b"a fuzzing secret of at least thirty-two bytes"
body = b'{"request_id":"r-1","user_id":"alice","number":42}'
mac = hmac.new(secret, b"1795600000\nPOST\n/v1/tenants/t/challenges\n" + body, hashlib.sha256).hexdigest()
write("FuzzIdPSignature", "valid-mac-wrong-time", f"key=k, t=1795600999, v1={mac}\n".encode() + body)
write("FuzzIdPSignature", "unknown-key", "key=nobody, t=1795600000, v1=00ff\n{}")
write("FuzzIdPSignature", "malformed", "key=k,t=,v1=zz, ,,=\n")
write("FuzzIdPSignature", "uppercase-hex", f"v1={mac.upper()}, t=1795600000, key=k\n".encode() + body)

# Device authorizations: the header, a newline, the body.
write("FuzzDeviceAuthorization", "shape", "Approvald-Device device=phone-1, t=1795600000, sig=MEUCIQDx_-\n")
write("FuzzDeviceAuthorization", "other-device", "Approvald-Device device=phone-2, t=1795600000, sig=AAAA\n")
write("FuzzDeviceAuthorization", "other-scheme", "Bearer abc\n")
write("FuzzDeviceAuthorization", "skewed", "Approvald-Device sig=AA, t=1, device=phone-1\nbody")

# Method, space, path with query.
for index, line in enumerate([
    "GET /v1/tenants/contoso/policy", "PUT /v1/tenants/contoso/devices/phone-1",
    "GET /v1/tenants/contoso/users/alice%40contoso.com/devices", "POST /v1/tenants/contoso/challenges",
    "GET /v1/tenants/contoso/challenges/ch_abc?wait=30&wait=5", "DELETE /v1/tenants/contoso/challenges/ch_abc",
    "GET /v1/tenants/contoso/dead-letters?limit=1000", "POST /v1/devices/phone-1/challenges/ch_abc/response",
    "GET /v1/devices/phone-1/stream", "PATCH /v1/devices/phone-1/push-token", "GET /v1//tenants/%zz/", "GET /healthz",
]):
    write("FuzzRouter", f"route-{index:02}", line)

# Chunk size, then an event stream.
write("FuzzEventStream", "events", b"\x06" + (
    ": keepalive\n\nevent: challenge\nid: ch_1\ndata: {\"challenge_id\":\"ch_1\",\"choices\":[1,2,3]}\n\n"
    "event: resolved\ndata: {\"challenge_id\":\"ch_1\",\"outcome\":\"approved\"}\n\n").encode())
write("FuzzEventStream", "unterminated", b"\x00event: challenge\ndata: {\"a\":")

# The OpenID provider's requests: an even first byte, an authorization request's query; an odd one, a token
# request's Authorization header, a newline and its form.
for index, query in enumerate([
    "client_id=webapp&redirect_uri=https%3A%2F%2Fapp.example.com%2Fcb&response_type=code&scope=openid+profile"
    "&state=s&nonce=n&login_hint=alice%40contoso.com",
    "client_id=spa&redirect_uri=http%3A%2F%2F127.0.0.1%3A5000%2Fcb&response_type=code&scope=openid"
    "&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256",
    "client_id=entra&redirect_uri=https%3A%2F%2Flogin.example.net%2Ffederation&response_type=id_token"
    "&response_mode=form_post&scope=openid&nonce=n&id_token_hint=a.b.c&claims=%7B%22id_token%22%3A%7B%22amr%22%3A"
    "%7B%22values%22%3A%5B%22hwk%22%5D%7D%7D%7D",
]):
    write("FuzzOIDCRequests", f"authorize-{index}", b"\x00" + query.encode())
write("FuzzOIDCRequests", "token-basic", b"\x01Basic d2ViYXBwOmEgY2xpZW50IHNlY3JldCBvZiBhdCBsZWFzdCB0aGlydHktdHdvIGJ5dGVz\n"
      b"grant_type=authorization_code&code=c&redirect_uri=https%3A%2F%2Fapp.example.com%2Fcb")
write("FuzzOIDCRequests", "token-public", b"\x01\ngrant_type=authorization_code&code=c&client_id=spa"
      b"&redirect_uri=http%3A%2F%2F127.0.0.1%3A5000%2Fcb&code_verifier=dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk")

# Enrollment bodies: the first byte picks the completion (even) or the creation (odd). The completion's proof is a
# real ECDSA P-256 signature over its code and key (made once with Python's cryptography), so that the target's
# checks on an accepted completion run from the start.
ENROLL_KEY = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEIDDUwgmb7n+9EqQYP4kW6MLXnO+dkTVCtQ9YyHYu3l0h+pp1FeKSn0ovsDgZU1u4tem0HIEVaal4lTByWjiS8Q=="
ENROLL_CODE = "Zm9vYmFyYmF6cXV4cXV1eA"
ENROLL_PROOF = "MEYCIQCS21_9oc18D8Ip3Qt97BNe-Bumk8hbYJoO7ajPODXJGgIhAKN1j7leyCoDddEqtaTTZAvSXMgAP9O5oJ46Y7e9GmJ-"
completion = {"activation_code": ENROLL_CODE, "public_key": ENROLL_KEY, "proof": ENROLL_PROOF}
write("FuzzEnrollment", "completion", b"\x00" + json.dumps(completion).encode())
write("FuzzEnrollment", "completion-push", b"\x00" + json.dumps(completion | {
    "push": {"provider": "apns", "token": "ab" * 32, "topic": "com.example.app"}, "display_name": "Ida's phone"}).encode())
write("FuzzEnrollment", "creation", b"\x01" + json.dumps(
    {"user_id": "ida@contoso.com", "display_name": "Ida's phone", "mam_restricted": False, "ttl_seconds": 600}).encode())

# TOML, a NUL, environment overrides.
example = (ROOT.parent.parent.parent / "Config" / "approvald.example.toml").read_text()
write("FuzzConfiguration", "example", example + "\0APPROVALD_HTTP2_IDLE_TIMEOUT_SECONDS=7.5\nAPPROVALD_LOG_LEVEL=debug\n")
write("FuzzConfiguration", "listeners", '[[listeners]]\nport = 1\ntls = true\n[tls]\ncertificate = "c"\n'
      "\0APPROVALD_LISTENERS_0_PORT=x\n")
write("FuzzConfiguration", "types", 'data_directory = 3\n[http2]\nmax_concurrent_streams = 1.5\n'
      '[[idp_clients]]\nkey_id = "k"\nsecret = "short"\ntenants = "contoso"\n')


# Raw HTTP/2 after the preface the target sends: frames built by hand.
def frame(kind, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def literal(name, value):
    return b"\x00" + bytes([len(name)]) + name + bytes([len(value)]) + value


def request(method, path, extra=()):
    block = literal(b":method", method) + literal(b":scheme", b"http") + literal(b":authority", b"fuzz")
    block += literal(b":path", path)
    for name, value in extra:
        block += literal(name, value)
    return block


settings = frame(4, 0, 0, struct.pack(">HI", 4, 0) + struct.pack(">HI", 3, 100))
write("FuzzH2Server", "get", settings + frame(1, 5, 1, request(b"GET", b"/")))
write("FuzzH2Server", "post-body", frame(4, 0, 0) + frame(1, 4, 1, request(b"POST", b"/echo", [(b"content-length", b"5")]))
      + frame(0, 0, 1, b"hel") + frame(0, 1, 1, b"lo"))
write("FuzzH2Server", "stream-and-hold", frame(4, 0, 0) + frame(1, 5, 1, request(b"GET", b"/stream"))
      + frame(1, 5, 3, request(b"GET", b"/hold")) + frame(8, 0, 1, struct.pack(">I", 1000)))
write("FuzzH2Server", "resets", frame(4, 0, 0) + frame(1, 4, 1, request(b"POST", b"/"))
      + frame(3, 0, 1, struct.pack(">I", 8)) + frame(1, 5, 3, request(b"GET", b"/hold")) + frame(3, 0, 3, b"\0\0\0\x08"))
write("FuzzH2Server", "window-overflow", frame(4, 0, 0) + frame(1, 5, 1, request(b"GET", b"/hold"))
      + frame(8, 0, 1, b"\x7f\xff\xff\xff"))
write("FuzzH2Server", "continuation", frame(4, 0, 0) + frame(1, 1, 1, request(b"GET", b"/")[:10])
      + frame(9, 4, 1, request(b"GET", b"/")[10:]))
write("FuzzH2Server", "ping-goaway", frame(6, 0, 0, b"12345678") + frame(7, 0, 0, b"\0\0\0\0\0\0\0\0"))
write("FuzzH2Server", "http1", b"POST / HTTP/1.1\r\nHost: fuzz\r\ncontent-length: 0\r\n\r\n")
write("FuzzH2Server", "bad-content-length", frame(4, 0, 0)
      + frame(1, 4, 1, request(b"POST", b"/", [(b"content-length", b"1")])) + frame(0, 1, 1, b"too long"))

# Inputs that once failed, kept as seeds so that every run tries them again.
write("FuzzRouter", "regression-text-before-the-slash", b"GET \xff\xff\xff\xff\xff\xff\xff\xff/v1/tenants/contoso/policy")
write("FuzzConfiguration", "regression-non-ascii-table-name", "[[\u00fclisteners]]\nport = 1\n[ \ufffd]\n\0")
write("FuzzConfiguration", "regression-punctuation-table-name", "[log]\n[*[listeners]]\n\0")
write("FuzzConfiguration", "regression-three-brackets", "[[[listeners]]\nport = 1\n\0")
write("FuzzConfiguration", "regression-brace-in-array", "[log]\nlevel = [1, }]\nx = [\n}]\n\0")
write("FuzzConfiguration", "regression-line-separator", "tenants = [\u2028]\ny = [\u0085 1]\n\0")

# The HTTP/1.1 server: a shape of each request it serves and of each strictness rule it refuses (API.md, Transport).
for name, data in {
    "get": "GET / HTTP/1.1\r\nHost: fuzz\r\n\r\n",
    "pipelined": "GET /a HTTP/1.1\r\nHost: fuzz\r\n\r\nPOST /echo HTTP/1.1\r\nHost: fuzz\r\nContent-Length: 5\r\n\r\n"
    "hello\r\nGET /hold HTTP/1.1\r\nHost: fuzz\r\nConnection: close\r\n\r\n",
    "chunked": "POST /echo HTTP/1.1\r\nHost: fuzz\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n0\r\nT: v\r\n\r\n",
    "stream": "GET /stream HTTP/1.1\r\nHost: fuzz\r\nContent-Length: 3\r\n\r\nabc",
    "expect-continue": "POST /echo HTTP/1.1\r\nHost: fuzz\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\nhi",
    "http10": "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET / HTTP/1.0\r\n\r\n",
    "absolute-form-upgrade": "GET http://fuzz/x HTTP/1.1\r\nHost: fuzz\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n",
    "cl-and-te": "POST / HTTP/1.1\r\nHost: fuzz\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "te-not-chunked": "POST / HTTP/1.1\r\nHost: fuzz\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
    "cl-malformed": "POST / HTTP/1.1\r\nHost: fuzz\r\nContent-Length: 1x\r\n\r\nx",
    "cl-conflicting": "POST / HTTP/1.1\r\nHost: fuzz\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxy",
    "obs-fold": "GET / HTTP/1.1\r\nHost: fuzz\r\nX: a\r\n b\r\n\r\n",
    "bare-cr": "GET / HTTP/1.1\r\nHost: fuzz\r\nX: a\rb\r\n\r\n",
    "nul": "GET / HTTP/1.1\r\nHost: fuzz\r\nX: a\0b\r\n\r\n",
    "space-before-colon": "GET / HTTP/1.1\r\nHost: fuzz\r\nX : a\r\n\r\n",
    "head-too-large": "GET / HTTP/1.1\r\nHost: fuzz\r\nX: " + "a" * 16400 + "\r\n\r\n",
    "bad-chunk-size": "POST / HTTP/1.1\r\nHost: fuzz\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    "chunk-without-crlf": "POST / HTTP/1.1\r\nHost: fuzz\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcXY0\r\n\r\n",
    "body-too-large": "POST / HTTP/1.1\r\nHost: fuzz\r\nContent-Length: 99999\r\n\r\n",
    "no-host": "GET / HTTP/1.1\r\n\r\n",
    "version": "GET / HTTP/2.0\r\nHost: fuzz\r\n\r\n",
    "expectation": "POST / HTTP/1.1\r\nHost: fuzz\r\nContent-Length: 1\r\nExpect: x\r\n\r\nx",
}.items():
    write("FuzzHTTP1Server", name, data)
