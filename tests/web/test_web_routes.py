"""The page's routes over HTTP: the static files, the public configuration and ``/v1/me``."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from web3 import Web3

from chainaudit import __version__
from chainaudit.api.server import ServerThread
from chainaudit.app.settings import Settings
from chainaudit.chain.devnet import free_port
from tests.web.conftest import Site

APP_JS = Path(__file__).parents[2] / "chainaudit" / "web" / "app.js"


def test_the_page_and_its_files_are_served_with_a_strict_policy(site: Site) -> None:
    with site.client() as http:
        page = http.get("/")
        css = http.get("/web/app.css")
        script = http.get("/web/app.js")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert '<script src="/web/app.js" defer></script>' in page.text
    assert css.headers["content-type"] == "text/css; charset=utf-8"
    assert script.headers["content-type"] == "text/javascript; charset=utf-8"
    assert script.content == APP_JS.read_bytes()
    for answer in (page, css, script):
        policy = answer.headers["content-security-policy"]
        assert "script-src 'self'" in policy
        assert "default-src 'none'" in policy
        assert answer.headers["x-content-type-options"] == "nosniff"


def test_the_page_loads_nothing_from_elsewhere() -> None:
    folder = APP_JS.parent
    for name in ("index.html", "app.css", "app.js"):
        text = (folder / name).read_text(encoding="utf-8")
        assert not re.search(r"https?://(?!127\.0\.0\.1)", text), name
        assert "@import" not in text and "url(" not in text, name


def test_the_page_never_parses_html_or_evaluates_strings() -> None:
    """Every node is built with ``createElement``/``textContent`` (the CSP forbids inline
    script; this keeps markup and code out of the data path as well)."""
    folder = APP_JS.parent
    for name in ("index.html", "app.js"):
        text = (folder / name).read_text(encoding="utf-8")
        for banned in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write"):
            assert banned not in text, (name, banned)
        assert not re.search(r"\beval\s*\(|new\s+Function\s*\(", text), name


@pytest.mark.parametrize(
    "path", ["/web/index.htm", "/web/..%2Fapi%2Fapp.py", "/web/%2E%2E/settings.py", "/web/"]
)
def test_only_the_pages_own_files_are_served(site: Site, path: str) -> None:
    with site.client() as http:
        answer = http.get(path)
    assert answer.status_code == 404
    assert answer.headers["content-type"] == "application/problem+json"


def test_config_is_public_and_names_the_chain_and_contract(site: Site) -> None:
    with site.client() as http:
        answer = http.get("/v1/config")
    assert answer.status_code == 200
    assert answer.json() == {
        "chain_id": site.chain_id,
        "rpc_url": site.rpc_url,
        "anchor_contract": Web3.to_checksum_address(site.contract),
        "version": __version__,
    }


def test_config_gives_browsers_the_public_endpoint_and_survives_a_chain_outage(
    tmp_path: Path,
) -> None:
    settings = Settings(
        data_dir=tmp_path / "data",
        rpc_url=f"http://127.0.0.1:{free_port()}",  # nothing listens there
        public_rpc_url="https://rpc.example.org/chain",
        anchor_contract="0x" + "ab" * 20,
    )
    with (
        ServerThread(settings, free_port(), run_anchorer=False) as server,
        httpx.Client(base_url=server.url, timeout=30) as http,
    ):
        answer = http.get("/v1/config")
    assert answer.status_code == 200
    assert answer.json() == {
        "chain_id": None,
        "rpc_url": "https://rpc.example.org/chain",
        "anchor_contract": Web3.to_checksum_address("0x" + "ab" * 20),
        "version": __version__,
    }


def test_public_rpc_url_defaults_to_rpc_url() -> None:
    assert Settings(rpc_url="http://127.0.0.1:1234").public_rpc_url is None


@pytest.mark.parametrize("role", ["admin", "operator", "auditor", "regulator", "partner"])
def test_me_describes_the_calling_key(site: Site, role: str) -> None:
    with site.client(role) as http:
        answer = http.get("/v1/me")
    assert answer.status_code == 200
    me = answer.json()
    assert me["role"] == role
    assert me["address"] == (site.partner_address if role == "partner" else None)
    assert set(me) == {"key_id", "name", "role", "address"}


def test_me_refuses_a_missing_or_unknown_key(site: Site) -> None:
    with httpx.Client(base_url=site.url) as http:
        missing = http.get("/v1/me")
        unknown = http.get("/v1/me", headers={"X-API-Key": "ca_nope_0123456789"})
    for answer in (missing, unknown):
        assert answer.status_code == 401
        assert answer.headers["content-type"] == "application/problem+json"


def test_the_pages_chain_constants_are_the_keccak_of_their_signatures() -> None:
    script = APP_JS.read_text(encoding="utf-8")
    selector = re.search(r'const CHECKPOINT_SELECTOR = "(0x[0-9a-f]{8})";', script)
    topic = re.search(r'const CHECKPOINT_ANCHORED_TOPIC =\s*"(0x[0-9a-f]{64})";', script)
    assert selector and topic
    assert selector.group(1) == "0x" + Web3.keccak(text="checkpoint(uint256)")[:4].hex()
    assert (
        topic.group(1)
        == "0x" + Web3.keccak(text="CheckpointAnchored(uint256,uint64,bytes32)").hex()
    )
