"""A relying party and a real browser against the broker's OpenID provider (API.md, "OpenID Connect"), on its TLS
listener (a development certificate: the relying party trusts it, the browser is told to accept it).

The relying party is Python's authlib: discovery, the authorization code flow with PKCE (S256), the token request
with client_secret_basic, the ID token's signature checked against the published JWK Set with authlib's own JOSE
code and its claims validated as OpenID Connect Core asks, and userinfo; and its error paths (a redirect URI not
registered, a wrong secret, a wrong verifier, a code used twice or after its minute). The browser is headless
Chromium driven through selenium: it types the user name, shows the number, follows the sign-in by the page's
script (or, with script off, by its refresh) and returns to the relying party; "not me", a wrong number, an expiry
and "Use your password instead" return access_denied with the reason. A phone of parties.py answers. Screenshots of
the pages go to APPROVALD_SCREENSHOTS.

Tests/Contract/browser starts the broker and sets the environment.
"""

import os
import queue
import re
import secrets
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
import requests
from authlib.integrations.requests_client import OAuth2Session
from authlib.jose import JsonWebKey, jwt
from authlib.oidc.core import CodeIDToken
from parties import TENANT, Phone, idp_headers, permit
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

ISSUER = os.environ["APPROVALD_URL"]
CA = os.environ["APPROVALD_CA_FILE"]
CLIENT_ID = os.environ["APPROVALD_OIDC_CLIENT_ID"]
CLIENT_SECRET = os.environ["APPROVALD_OIDC_CLIENT_SECRET"]
REDIRECT_URI = f"http://127.0.0.1:{os.environ['APPROVALD_RP_PORT']}/callback"
SCREENSHOTS = Path(os.environ.get("APPROVALD_SCREENSHOTS", "screenshots"))


class Callback(BaseHTTPRequestHandler):
    """The relying party's redirect URI: answers every return with a page."""

    def do_GET(self):
        body = b"<!doctype html><title>back at the app</title><p id=back>back at the app</p>"
        self.send_response(200)
        self.send_header("content-type", "text/html")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_):
        pass


@pytest.fixture(scope="session")
def relying_party():
    server = ThreadingHTTPServer(("127.0.0.1", int(os.environ["APPROVALD_RP_PORT"])), Callback)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()


@pytest.fixture(scope="session")
def client():
    with httpx.Client(base_url=ISSUER, timeout=40, verify=ssl.create_default_context(cafile=CA)) as client:
        yield client


@pytest.fixture(scope="session")
def metadata():
    return requests.get(ISSUER + "/.well-known/openid-configuration", timeout=10, verify=CA).json()


@pytest.fixture
def phone(client):
    permit(client)
    return Phone(client, f"browser-{secrets.token_hex(4)}", user_id=f"kai-{secrets.token_hex(4)}@example.com")


def session(secret: str = CLIENT_SECRET):
    rp = OAuth2Session(CLIENT_ID, secret, scope="openid profile", redirect_uri=REDIRECT_URI, code_challenge_method="S256")
    # The broker's CA only: an environment's REQUESTS_CA_BUNDLE would otherwise win over the session's.
    rp.trust_env = False
    rp.verify = CA
    return rp


def validated_claims(metadata, id_token: str, nonce: str):
    """The ID token checked as a relying party checks it: signature by a published key, iss, aud, exp, nonce."""
    keys = JsonWebKey.import_key_set(requests.get(metadata["jwks_uri"], timeout=10, verify=CA).json())
    claims = jwt.decode(
        id_token,
        keys,
        claims_cls=CodeIDToken,
        claims_options={"iss": {"essential": True, "value": metadata["issuer"]}},
        claims_params={"nonce": nonce, "client_id": CLIENT_ID},
    )
    claims.validate()
    return claims


def code_for(metadata, phone):
    """A sign-in by `phone`'s user, as a browser without script makes it (requests): the code and its verifier."""
    rp = session()
    verifier = secrets.token_urlsafe(48)
    nonce = secrets.token_urlsafe(16)
    uri, state = rp.create_authorization_url(
        metadata["authorization_endpoint"], code_verifier=verifier, nonce=nonce, login_hint=phone.user_id
    )
    browser = requests.Session()
    browser.trust_env = False
    browser.verify = CA
    page = browser.get(uri, timeout=10)
    assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
    number = int(re.search(r'aria-label="the number (\d+)"', page.text).group(1))
    prompt = phone.next_prompt()
    assert prompt["context"]["app"] == CLIENT_ID
    assert phone.answer(prompt, number=number).status_code == 200
    back = browser.get(page.url, allow_redirects=False, timeout=10)
    assert back.status_code == 302 and back.headers["location"].startswith(REDIRECT_URI + "?code=")
    assert parse_qs(urlparse(back.headers["location"]).query)["state"] == [state]
    return rp, back.headers["location"], verifier, nonce, prompt


def redeem(metadata, location: str, verifier: str, secret: str = CLIENT_SECRET):
    code = parse_qs(urlparse(location).query)["code"][0]
    return requests.post(
        metadata["token_endpoint"],
        data={"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI, "code_verifier": verifier},
        auth=(CLIENT_ID, secret),
        timeout=10,
        verify=CA,
    )


def test_authlib_signs_in_with_a_code_and_pkce(metadata, phone, relying_party):
    assert metadata["issuer"] == ISSUER and "S256" in metadata["code_challenge_methods_supported"]
    rp, location, verifier, nonce, prompt = code_for(metadata, phone)
    token = rp.fetch_token(metadata["token_endpoint"], authorization_response=location, code_verifier=verifier)
    claims = validated_claims(metadata, token["id_token"], nonce)
    assert claims["sub"] == phone.user_id and claims["amr"] == ["hwk"]
    assert claims["approvald_challenge_id"] == prompt["challenge_id"]
    userinfo = rp.get(metadata["userinfo_endpoint"], timeout=10).json()
    assert userinfo == {"sub": phone.user_id, "preferred_username": phone.user_id}
    # The code is spent: a second redemption, by the same client with the same verifier, is invalid_grant.
    again = redeem(metadata, location, verifier)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"


def test_authlib_error_paths(metadata, phone, relying_party):
    # A redirect URI the client did not register: an error page, never a redirect.
    rp = session()
    uri, _ = rp.create_authorization_url(metadata["authorization_endpoint"], code_verifier=secrets.token_urlsafe(48))
    wrong = requests.get(uri.replace("127.0.0.1%3A", "127.0.0.2%3A"), allow_redirects=False, timeout=10, verify=CA)
    assert wrong.status_code == 400 and "location" not in wrong.headers
    # A wrong secret, a wrong verifier: refused, and the code is not spent by them.
    _, location, verifier, _, _ = code_for(metadata, phone)
    bad_secret = redeem(metadata, location, verifier, secret="not the secret of this client, at all")
    assert bad_secret.status_code == 401 and bad_secret.json()["error"] == "invalid_client"
    bad_verifier = redeem(metadata, location, secrets.token_urlsafe(48))
    assert bad_verifier.status_code == 400 and bad_verifier.json()["error"] == "invalid_grant"
    assert redeem(metadata, location, verifier).status_code == 200
    # A code lives a minute.
    _, late, late_verifier, _, _ = code_for(metadata, phone)
    time.sleep(61)
    expired = redeem(metadata, late, late_verifier)
    assert expired.status_code == 400 and expired.json()["error"] == "invalid_grant"


def chromium(script: bool, width: int, height: int):
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    # The broker's certificate is a development one (approvald dev-cert).
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--ignore-certificate-errors"):
        options.add_argument(argument)
    options.add_argument(f"--window-size={width},{height}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    if not script:
        options.add_experimental_option("prefs", {"profile.managed_default_content_settings.javascript": 2})
    return webdriver.Chrome(service=webdriver.ChromeService(executable_path="/usr/bin/chromedriver"), options=options)


def screenshot(driver, name: str):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(SCREENSHOTS / f"{name}.png"))


def start_in_chromium(driver, metadata, phone, name: str):
    """Opens the authorization request, types the user name, and returns the number shown and the flow's pieces."""
    rp = session()
    verifier = secrets.token_urlsafe(48)
    nonce = secrets.token_urlsafe(16)
    uri, state = rp.create_authorization_url(metadata["authorization_endpoint"], code_verifier=verifier, nonce=nonce)
    driver.get(uri)
    field = WebDriverWait(driver, 10).until(lambda d: d.find_element(By.ID, "username"))
    assert driver.find_element(By.CSS_SELECTOR, "label[for=username]").text == "User name"
    screenshot(driver, f"{name}-1-name")
    field.send_keys(phone.user_id)
    driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    shown = WebDriverWait(driver, 10).until(lambda d: d.find_element(By.ID, "number"))
    screenshot(driver, f"{name}-2-number")
    return int(shown.text), shown, rp, verifier, nonce, state


def returned(driver, timeout: float, name: str) -> dict:
    WebDriverWait(driver, timeout).until(lambda d: d.current_url.startswith(REDIRECT_URI))
    screenshot(driver, f"{name}-3-back")
    return parse_qs(urlparse(driver.current_url).query)


def csp_violations(driver) -> list[str]:
    return [entry["message"] for entry in driver.get_log("browser") if "Content Security Policy" in entry["message"]]


@pytest.mark.parametrize("width,height", [(390, 844), (1280, 800)], ids=["phone", "desktop"])
def test_chromium_shows_the_number_and_its_script_returns_once_the_phone_approves(
    metadata, phone, relying_party, width, height
):
    driver = chromium(script=True, width=width, height=height)
    try:
        name = f"approved-{width}x{height}"
        number, shown, rp, verifier, nonce, state = start_in_chromium(driver, metadata, phone, name)
        assert 10 <= number <= 99 and shown.is_displayed() and shown.size["height"] >= 60, "the number is large"
        assert driver.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
        assert "Open your authenticator app and tap" in driver.find_element(By.TAG_NAME, "h1").text
        cookie = next(c for c in driver.get_cookies() if c["name"].endswith("approvald-browser"))
        assert cookie["name"] == "__Host-approvald-browser" and cookie["secure"] and cookie["httpOnly"]
        assert cookie["sameSite"] == "Lax"
        prompt = phone.next_prompt()
        assert prompt["context"]["browser"] == "Chrome"
        assert phone.answer(prompt, number=number).status_code == 200
        query = returned(driver, 20, name)
        assert query["state"] == [state]
        token = rp.fetch_token(metadata["token_endpoint"], authorization_response=driver.current_url,
                               code_verifier=verifier)
        assert validated_claims(metadata, token["id_token"], nonce)["sub"] == phone.user_id
        assert csp_violations(driver) == []
    finally:
        driver.quit()


def test_chromium_without_script_refreshes_until_the_sign_in_ends(metadata, phone, relying_party):
    driver = chromium(script=False, width=390, height=844)
    try:
        number, _, rp, verifier, _, _ = start_in_chromium(driver, metadata, phone, "noscript")
        phone.answer(phone.next_prompt(), number=number)
        query = returned(driver, 20, "noscript")
        assert "code" in query
        assert "access_token" in rp.fetch_token(
            metadata["token_endpoint"], authorization_response=driver.current_url, code_verifier=verifier
        )
    finally:
        driver.quit()


@pytest.mark.parametrize("end", ["not_me", "wrong_number", "expired", "password"])
def test_chromium_every_other_end_returns_access_denied_with_its_reason(metadata, phone, relying_party, client, end):
    if end == "expired":
        body = b'{"passwordless":true,"target":"all","max_pending_per_user":100,"challenge_ttl_seconds":10}'
        path = f"/v1/tenants/{TENANT}/policy"
        assert client.put(path, content=body, headers=idp_headers("PUT", path, body)).status_code == 200
    driver = chromium(script=True, width=1280, height=800)
    try:
        number, _, _, _, _, _ = start_in_chromium(driver, metadata, phone, end)
        prompt = phone.next_prompt()
        if end == "not_me":
            phone.answer(prompt, reason="not_me")
        elif end == "wrong_number":
            phone.answer(prompt, number=next(choice for choice in prompt["choices"] if choice != number))
        elif end == "password":
            driver.find_element(By.XPATH, "//button[text()='Use your password instead']").click()
        expected = {"not_me": "denied:not_me", "wrong_number": "denied:wrong_number", "expired": "expired",
                    "password": "cancelled"}[end]
        query = returned(driver, 25, end)
        assert query["error"] == ["access_denied"] and query["error_description"] == [expected]
        # The phone's prompt is gone, whatever ended the sign-in.
        assert all(entry["challenge_id"] != prompt["challenge_id"] for entry in phone.queue())
        assert csp_violations(driver) == []
    finally:
        driver.quit()
        permit(client)
