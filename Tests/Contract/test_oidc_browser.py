"""A relying party and a real browser against the broker's OpenID provider (API.md, "OpenID Connect").

The relying party is Python's authlib: discovery, the authorization code flow with PKCE (S256), the token request
with client_secret_basic, the ID token's signature checked against the published JWK Set and its claims validated
as OpenID Connect Core asks, and userinfo. The browser is headless Chromium driven through selenium: it types the
user name, shows the number, follows the sign-in by the page's script (or, with script off, by its refresh) and
returns to the relying party; "Use your password instead" returns access_denied. A phone of parties.py answers.

Tests/Contract/browser starts the broker and sets the environment.
"""

import os
import queue
import re
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
import requests
from authlib.integrations.requests_client import OAuth2Session
from authlib.jose import JsonWebKey, jwt
from authlib.oidc.core import CodeIDToken
from parties import Phone, permit
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

ISSUER = os.environ["APPROVALD_URL"]
CLIENT_ID = os.environ["APPROVALD_OIDC_CLIENT_ID"]
CLIENT_SECRET = os.environ["APPROVALD_OIDC_CLIENT_SECRET"]
REDIRECT_URI = f"http://127.0.0.1:{os.environ['APPROVALD_RP_PORT']}/callback"


class Callback(BaseHTTPRequestHandler):
    """The relying party's redirect URI: answers every return with a page and keeps its URL."""

    returns: "queue.Queue[str]" = queue.Queue()

    def do_GET(self):
        Callback.returns.put(REDIRECT_URI.rsplit("/", 1)[0] + self.path)
        body = b"<!doctype html><title>signed in</title><p id=back>back at the app</p>"
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
    with httpx.Client(base_url=ISSUER, timeout=40) as client:
        yield client


@pytest.fixture(scope="session")
def metadata():
    return requests.get(ISSUER + "/.well-known/openid-configuration", timeout=10).json()


@pytest.fixture
def phone(client):
    permit(client)
    return Phone(client, f"browser-{secrets.token_hex(4)}", user_id=f"kai-{secrets.token_hex(4)}@example.com")


def session():
    return OAuth2Session(
        CLIENT_ID, CLIENT_SECRET, scope="openid profile", redirect_uri=REDIRECT_URI, code_challenge_method="S256"
    )


def validated_claims(metadata, id_token: str, nonce: str):
    """The ID token checked as a relying party checks it: signature by a published key, iss, aud, exp, nonce."""
    keys = JsonWebKey.import_key_set(requests.get(metadata["jwks_uri"], timeout=10).json())
    claims = jwt.decode(
        id_token,
        keys,
        claims_cls=CodeIDToken,
        claims_options={"iss": {"essential": True, "value": metadata["issuer"]}},
        claims_params={"nonce": nonce, "client_id": CLIENT_ID},
    )
    claims.validate()
    return claims


def test_authlib_signs_in_with_a_code_and_pkce(metadata, phone, relying_party):
    assert metadata["issuer"] == ISSUER and "S256" in metadata["code_challenge_methods_supported"]
    rp = session()
    verifier = secrets.token_urlsafe(48)
    nonce = secrets.token_urlsafe(16)
    uri, state = rp.create_authorization_url(
        metadata["authorization_endpoint"], code_verifier=verifier, nonce=nonce, login_hint=phone.user_id
    )
    browser = requests.Session()
    page = browser.get(uri, timeout=10)
    assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
    number = int(re.search(r'aria-label="the number (\d+)"', page.text).group(1))
    prompt = phone.next_prompt()
    assert prompt["context"]["app"] == CLIENT_ID
    assert phone.answer(prompt, number=number).status_code == 200
    back = browser.get(page.url, allow_redirects=False, timeout=10)
    assert back.status_code == 302 and back.headers["location"].startswith(REDIRECT_URI + "?code=")
    token = rp.fetch_token(
        metadata["token_endpoint"], authorization_response=back.headers["location"], code_verifier=verifier
    )
    claims = validated_claims(metadata, token["id_token"], nonce)
    assert claims["sub"] == phone.user_id and claims["amr"] == ["hwk"]
    assert claims["approvald_challenge_id"] == prompt["challenge_id"]
    userinfo = rp.get(metadata["userinfo_endpoint"], timeout=10).json()
    assert userinfo == {"sub": phone.user_id, "preferred_username": phone.user_id}
    # The code is spent: a second redemption, by the same client with the same verifier, is invalid_grant.
    code = parse_qs(urlparse(back.headers["location"]).query)["code"][0]
    again = requests.post(
        metadata["token_endpoint"],
        data={"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI, "code_verifier": verifier},
        auth=(CLIENT_ID, CLIENT_SECRET),
        timeout=10,
    )
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    assert state in back.headers["location"]


def chromium(script: bool, width: int, height: int):
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    options.add_argument(f"--window-size={width},{height}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    if not script:
        options.add_experimental_option("prefs", {"profile.managed_default_content_settings.javascript": 2})
    return webdriver.Chrome(service=webdriver.ChromeService(executable_path="/usr/bin/chromedriver"), options=options)


def start_in_chromium(driver, metadata, phone):
    """Opens the authorization request, types the user name, and returns the number shown and the flow's pieces."""
    rp = session()
    verifier = secrets.token_urlsafe(48)
    nonce = secrets.token_urlsafe(16)
    uri, state = rp.create_authorization_url(metadata["authorization_endpoint"], code_verifier=verifier, nonce=nonce)
    driver.get(uri)
    field = WebDriverWait(driver, 10).until(lambda d: d.find_element(By.ID, "username"))
    assert driver.find_element(By.CSS_SELECTOR, "label[for=username]").text == "User name"
    field.send_keys(phone.user_id)
    driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    shown = WebDriverWait(driver, 10).until(lambda d: d.find_element(By.ID, "number"))
    return int(shown.text), shown, rp, verifier, nonce, state


def returned(driver, timeout: float) -> str:
    WebDriverWait(driver, timeout).until(lambda d: d.current_url.startswith(REDIRECT_URI))
    return driver.current_url


def csp_violations(driver) -> list[str]:
    return [entry["message"] for entry in driver.get_log("browser") if "Content Security Policy" in entry["message"]]


@pytest.mark.parametrize("width,height", [(390, 844), (1280, 800)], ids=["phone", "desktop"])
def test_chromium_shows_the_number_and_its_script_returns_once_the_phone_approves(
    metadata, phone, relying_party, width, height
):
    driver = chromium(script=True, width=width, height=height)
    try:
        number, shown, rp, verifier, nonce, state = start_in_chromium(driver, metadata, phone)
        assert 10 <= number <= 99 and shown.is_displayed() and shown.size["height"] >= 60, "the number is large"
        assert driver.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
        assert "Open your authenticator app and tap" in driver.find_element(By.TAG_NAME, "h1").text
        prompt = phone.next_prompt()
        assert prompt["context"]["browser"] == "Chrome"
        assert phone.answer(prompt, number=number).status_code == 200
        url = returned(driver, 20)
        assert parse_qs(urlparse(url).query)["state"] == [state]
        token = rp.fetch_token(metadata["token_endpoint"], authorization_response=url, code_verifier=verifier)
        assert validated_claims(metadata, token["id_token"], nonce)["sub"] == phone.user_id
        assert csp_violations(driver) == []
    finally:
        driver.quit()


def test_chromium_without_script_refreshes_until_the_sign_in_ends(metadata, phone, relying_party):
    driver = chromium(script=False, width=390, height=844)
    try:
        number, _, rp, verifier, _, _ = start_in_chromium(driver, metadata, phone)
        phone.answer(phone.next_prompt(), number=number)
        url = returned(driver, 20)
        assert "code" in parse_qs(urlparse(url).query)
        assert "access_token" in rp.fetch_token(
            metadata["token_endpoint"], authorization_response=url, code_verifier=verifier
        )
    finally:
        driver.quit()


def test_chromium_use_your_password_instead_returns_cancelled(metadata, phone, relying_party):
    driver = chromium(script=True, width=1280, height=800)
    try:
        start_in_chromium(driver, metadata, phone)
        prompt = phone.next_prompt()
        driver.find_element(By.XPATH, "//button[text()='Use your password instead']").click()
        query = parse_qs(urlparse(returned(driver, 10)).query)
        assert query["error"] == ["access_denied"] and query["error_description"] == ["cancelled"]
        # The phone's prompt is gone: the challenge was cancelled.
        assert all(entry["challenge_id"] != prompt["challenge_id"] for entry in phone.queue())
        assert csp_violations(driver) == []
    finally:
        driver.quit()
