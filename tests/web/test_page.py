"""The web page in a real Chromium against a real server, log and chain.

The verifier tests check the browser's verdict check by check, and against chainaudit's
Python verifier on the same bundle; they also check that the page asked the chain, not the
server, about the anchor.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, Request, expect

from chainaudit.chain.chain import Chain
from chainaudit.verify.verifier import verify_bundle
from tests.web.conftest import BUNDLE_RECORD, Site, screenshot

ALL_CHECKS = ["record", "inclusion", "chain_id", "contract", "checkpoint", "block", "transaction"]
CHECKPOINT_SELECTOR = "0xed64bab2"

Bundle = dict[str, Any]


# -- helpers ------------------------------------------------------------------------------------


def sign_in(page: Page, site: Site, role: str) -> None:
    page.goto("/")
    page.fill("#api-key", site.tokens[role])
    page.click("#sign-in")
    expect(page.locator("#session-role")).to_have_text(role)
    expect(page.locator("#view-overview")).to_be_visible()


def open_verifier(page: Page, site: Site) -> None:
    page.goto("/#verify")
    # the trust settings are prefilled from the public /v1/config
    expect(page.locator("#rpc-url")).to_have_value(site.rpc_url)


def verify_in_page(page: Page, bundle: Bundle | str) -> dict[str, str]:
    """Paste ``bundle``, press Verify, wait for the verdict; return each check's status."""
    text = bundle if isinstance(bundle, str) else json.dumps(bundle, indent=2)
    page.fill("#bundle-input", text)
    page.click("#verify-button")
    return wait_for_verdict(page)


def wait_for_verdict(page: Page) -> dict[str, str]:
    expect(page.locator("#verdict")).to_be_visible()
    pairs: list[list[str]] = page.eval_on_selector_all(
        "#checks li", "items => items.map(i => [i.dataset.check, i.dataset.status])"
    )
    return dict((name, status) for name, status in pairs)


def detail(page: Page, check: str) -> str:
    return page.locator(f'#checks li[data-check="{check}"] .check-detail').inner_text()


def flip(hex_hash: str) -> str:
    return hex_hash[:-1] + ("0" if hex_hash[-1] != "0" else "1")


# -- signing in and roles -----------------------------------------------------------------------


def test_a_bad_key_shows_an_error_and_nothing_else(page: Page, site: Site) -> None:
    page.goto("/")
    expect(page.locator("#view-signin")).to_be_visible()
    page.fill("#api-key", "ca_notakey_0123456789abcdef")
    page.click("#sign-in")
    error = page.locator("#signin-error")
    expect(error).to_be_visible()
    expect(error).to_have_text("This API key is unknown or revoked.")
    expect(page.locator("#view-overview")).to_be_hidden()
    expect(page.locator("#session")).to_be_hidden()
    assert page.evaluate("sessionStorage.getItem('chainaudit.apiKey')") is None
    # the overview's data was never fetched
    expect(page.locator("#stat-size")).to_have_text("\u2013")  # the placeholder dash


def test_the_key_survives_a_reload_and_sign_out_forgets_it(page: Page, site: Site) -> None:
    sign_in(page, site, "regulator")
    assert page.evaluate("sessionStorage.getItem('chainaudit.apiKey')") == site.tokens["regulator"]
    page.reload()
    expect(page.locator("#session-role")).to_have_text("regulator")
    page.click("#sign-out")
    expect(page.locator("#view-signin")).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('chainaudit.apiKey')") is None


@pytest.mark.parametrize(
    ("role", "may_anchor", "may_append"),
    [
        ("auditor", False, False),
        ("regulator", False, False),
        ("partner", False, True),
        ("operator", True, True),
        ("admin", True, True),
    ],
)
def test_actions_follow_the_role(
    page: Page, site: Site, role: str, may_anchor: bool, may_append: bool
) -> None:
    sign_in(page, site, role)
    anchor, append = page.locator("#anchor-now"), page.locator("#append")
    expect(anchor).to_be_visible() if may_anchor else expect(anchor).to_be_hidden()
    expect(append).to_be_visible() if may_append else expect(append).to_be_hidden()
    if role == "partner":  # a partner appends only as its own address
        expect(page.locator("#append-actor")).to_have_value(site.partner_address)
        expect(page.locator("#append-actor")).not_to_be_editable()


# -- overview -----------------------------------------------------------------------------------


def test_overview_shows_the_log_checkpoint_anchors_and_records(page: Page, site: Site) -> None:
    sign_in(page, site, "auditor")
    with site.client("auditor") as api:
        latest = api.get("/v1/checkpoints/latest").json()
        anchors = api.get("/v1/anchors").json()["items"]
    expect(page.locator("#stat-size")).to_have_text(f"{latest['tree_size']:,}")
    expect(page.locator("#stat-checkpoint-size")).to_have_text(str(latest["tree_size"]))
    expect(page.locator("#stat-checkpoint-root")).to_have_text(latest["root"])
    expect(page.locator("#stat-unanchored")).to_have_text(str(latest["unanchored_records"]))
    anchored = latest["latest_anchor"]
    expect(page.locator("#stat-anchor")).to_have_text(anchored["status"])

    rows = page.locator("#anchors-table tbody tr")
    expect(rows).to_have_count(len(anchors))
    first = page.locator(f'#anchors-table tr[data-anchor-id="{anchored["id"]}"]')
    expect(first).to_contain_text(anchored["status"])
    expect(first.locator("td").nth(2)).to_have_text(str(anchored["tree_size"]))
    expect(first.locator("td").nth(6).locator("code")).to_have_attribute(
        "title", anchored["tx_hash"]
    )

    for record_id in site.record_ids:
        row = page.locator(f'#records-table tr[data-record-id="{record_id}"]')
        expect(row).to_have_count(1)
    invoice = page.locator(f'#records-table tr[data-record-id="{BUNDLE_RECORD}"]')
    actor = invoice.locator("td").nth(3).locator("[data-full]")
    expect(actor).to_have_attribute("data-full", site.partner_address)  # shortened on screen
    expect(actor).to_have_attribute("title", site.partner_address)
    expect(invoice.locator("td").nth(4)).to_have_text("2026-11-17 14:05:00")


def test_operator_appends_a_record_and_anchors_it(page: Page, site: Site) -> None:
    sign_in(page, site, "operator")
    page.click("#append summary")
    page.fill("#append-id", "po-2026-0100")
    page.fill("#append-actor", "buyer:acme-retail")
    page.fill("#append-payload", '{"type": "purchase_order", "amount": 880000}')
    page.click("#append-form button[type=submit]")
    expect(page.locator("#append-message")).to_contain_text("Appended po-2026-0100 at leaf")
    expect(page.locator('#records-table tr[data-record-id="po-2026-0100"]')).to_have_count(1)
    unanchored = int(page.locator("#stat-unanchored").inner_text())
    assert unanchored >= 1

    page.click("#anchor-now")
    message = page.locator("#overview-message")
    expect(message).to_contain_text("Anchored: checkpoint", timeout=40_000)
    with site.client("operator") as api:
        latest = api.get("/v1/checkpoints/latest").json()
        record = api.get("/v1/records/po-2026-0100").json()
    anchored = latest["latest_anchor"]
    assert anchored["tree_size"] > record["leaf_index"]
    expect(message).to_contain_text(f"checkpoint {anchored['checkpoint_seq']}")
    expect(page.locator(f'#anchors-table tr[data-anchor-id="{anchored["id"]}"]')).to_have_count(1)
    screenshot(page, "overview")


def test_a_payload_with_decimals_is_refused_with_the_servers_reason(page: Page, site: Site) -> None:
    sign_in(page, site, "operator")
    page.click("#append summary")
    page.fill("#append-id", "po-2026-0200")
    page.fill("#append-actor", "buyer:acme-retail")
    page.fill("#append-payload", '{"amount": 12.5}')
    page.click("#append-form button[type=submit]")
    message = page.locator("#append-message")
    expect(message).to_contain_text("floating-point")
    expect(message).to_have_class("message message-error")


# -- verifying bundles in the browser -----------------------------------------------------------


def test_a_valid_bundle_passes_every_check_in_the_browser(page: Page, site: Site) -> None:
    requests: list[Request] = []

    def seen(request: Request) -> None:  # a bound builtin cannot be a Playwright handler
        requests.append(request)

    page.on("request", seen)
    open_verifier(page, site)  # no key: verifying needs only the bundle and a chain endpoint
    expect(page.locator("#expected-contract")).to_have_value(site.contract)
    expect(page.locator("#expected-chain")).to_have_value(str(site.chain_id))

    statuses = verify_in_page(page, site.bundle)

    assert statuses == dict.fromkeys(ALL_CHECKS, "pass")
    assert page.locator("#verdict").get_attribute("data-verdict") == "valid"
    expect(page.locator("#verdict-title")).to_have_text("Valid: every check passed")
    assert site.bundle["leaf_hash"] in detail(page, "record")
    assert f"leaf {site.bundle['leaf_index']} is in the tree of size" in detail(page, "inclusion")
    seq = site.bundle["anchor"]["checkpoint_seq"]
    assert f"checkpoint {seq} on chain is (size {site.bundle['tree_size']}" in detail(
        page, "checkpoint"
    )
    assert "canonical with" in detail(page, "block")
    assert verify_bundle(site.bundle, chain=Chain(site.rpc_url)).valid  # the reference agrees

    # The verdict came from the chain: the page called the chain endpoint directly and asked
    # this server only for the page itself and its public configuration.
    to_server = {r.url.removeprefix(site.url) for r in requests if r.url.startswith(site.url)}
    assert to_server <= {"/", "/web/app.css", "/web/app.js", "/v1/config", "/#verify"}, to_server
    chain_calls = [
        json.loads(r.post_data or "{}")
        for r in requests
        if r.url.rstrip("/") == site.rpc_url.rstrip("/") and r.method == "POST"
    ]
    methods = {call["method"] for call in chain_calls}
    assert {"eth_chainId", "eth_getCode", "eth_call", "eth_getBlockByNumber"} <= methods
    calls = [c for c in chain_calls if c["method"] == "eth_call"]
    assert calls[0]["params"][0]["data"] == CHECKPOINT_SELECTOR + f"{seq:064x}"
    screenshot(page, "verify-valid")


def test_a_records_bundle_is_fetched_then_verified_in_the_browser(page: Page, site: Site) -> None:
    requests: list[str] = []

    def seen(request: Request) -> None:
        requests.append(request.url)

    page.on("request", seen)
    sign_in(page, site, "auditor")
    page.click(f'#records-table tr[data-record-id="{BUNDLE_RECORD}"] button')
    expect(page.locator("#view-verify")).to_be_visible()
    assert wait_for_verdict(page) == dict.fromkeys(ALL_CHECKS, "pass")
    shown = json.loads(page.locator("#bundle-input").input_value())
    assert shown["record"]["id"] == BUNDLE_RECORD
    assert shown["leaf_hash"] == site.bundle["leaf_hash"]
    assert f"{site.url}/v1/records/{BUNDLE_RECORD}/bundle" in requests
    assert not any(url.startswith(f"{site.url}/v1/verify") for url in requests)


def test_a_record_not_yet_anchored_has_no_bundle_yet(page: Page, site: Site) -> None:
    record = {
        "id": "po-2026-0300",
        "kind": "transaction",
        "timestamp": "2026-11-21T10:00:00Z",
        "actor": "buyer:acme-retail",
        "payload": {"type": "purchase_order", "amount": 5},
    }
    with site.client("operator") as api:
        assert api.post("/v1/records", json=record).status_code == 201
    sign_in(page, site, "auditor")
    page.click('#records-table tr[data-record-id="po-2026-0300"] button')
    expect(page.locator("#verdict-title")).to_have_text("No bundle for po-2026-0300")
    expect(page.locator("#verdict-detail")).to_contain_text("not anchored yet")
    expect(page.locator("#verdict-detail")).not_to_contain_text("chainaudit anchor")
    expect(page.locator("#verdict button")).to_have_count(0)  # an auditor may not anchor
    expect(page.locator("#checks li")).to_have_count(0)


def test_an_operator_anchors_a_pending_record_from_its_verdict(page: Page, site: Site) -> None:
    record = {
        "id": "po-2026-0301",
        "kind": "transaction",
        "timestamp": "2026-11-21T11:00:00Z",
        "actor": "buyer:acme-retail",
        "payload": {"type": "purchase_order", "amount": 6},
    }
    with site.client("operator") as api:
        assert api.post("/v1/records", json=record).status_code == 201
    sign_in(page, site, "operator")
    page.click('#records-table tr[data-record-id="po-2026-0301"] button')
    expect(page.locator("#verdict-title")).to_have_text("No bundle for po-2026-0301")
    expect(page.locator("#verdict-detail")).to_contain_text("Anchor now")
    page.locator("#verdict").get_by_role("button", name="Anchor now").click()
    expect(page.locator("#verdict-title")).to_have_text("Valid: every check passed", timeout=60_000)
    shown = json.loads(page.locator("#bundle-input").input_value())
    assert shown["record"]["id"] == "po-2026-0301"


def _payload_changed(bundle: Bundle) -> None:
    bundle["record"]["payload"]["amount"] += 1_000_000


def _proof_hash_flipped(bundle: Bundle) -> None:
    bundle["inclusion_proof"][0] = flip(bundle["inclusion_proof"][0])


def _checkpoint_root_wrong(bundle: Bundle) -> None:
    bundle["checkpoint"]["root"] = flip(bundle["checkpoint"]["root"])


TAMPERING: list[tuple[str, Callable[[Bundle], None], list[str], str]] = [
    ("payload-changed", _payload_changed, ["record"], "the record was altered"),
    ("proof-hash-flipped", _proof_hash_flipped, ["inclusion"], "the proof leads to root"),
    (
        "checkpoint-root-wrong",
        _checkpoint_root_wrong,
        ["inclusion", "checkpoint", "transaction"],
        "on chain, checkpoint",
    ),
]


@pytest.mark.parametrize(
    ("tamper", "failing", "says"),
    [pytest.param(t, f, s, id=name) for name, t, f, s in TAMPERING],
)
def test_a_tampered_bundle_fails_the_check_that_sees_it(
    page: Page,
    site: Site,
    tamper: Callable[[Bundle], None],
    failing: list[str],
    says: str,
    request: pytest.FixtureRequest,
) -> None:
    bundle = copy.deepcopy(site.bundle)
    tamper(bundle)
    open_verifier(page, site)
    statuses = verify_in_page(page, bundle)

    failed = [name for name in ALL_CHECKS if statuses[name] == "fail"]
    assert failed == failing, statuses
    assert all(statuses[name] == "pass" for name in ALL_CHECKS if name not in failing)
    # the browser agrees with chainaudit's own verifier, check by check
    assert list(verify_bundle(bundle, chain=Chain(site.rpc_url)).failed) == failing
    assert page.locator("#verdict").get_attribute("data-verdict") == "invalid"
    expect(page.locator("#verdict-title")).to_have_text(f"Not valid: {', '.join(failing)} failed")
    assert says in detail(page, failing[-1] if failing[-1] != "transaction" else failing[1])
    for name in failing:
        item = page.locator(f'#checks li[data-check="{name}"]')
        expect(item.locator(".check-badge")).to_have_text("fail")
    if request.node.callspec.id == "payload-changed":
        screenshot(page, "verify-tampered")


def test_a_bundle_with_a_consistency_proof_is_checked_for_it(page: Page, site: Site) -> None:
    bundle = site.consistency_bundle
    open_verifier(page, site)
    statuses = verify_in_page(page, bundle)
    assert list(statuses) == ["record", "inclusion", "consistency", *ALL_CHECKS[2:]]
    assert set(statuses.values()) == {"pass"}
    old = bundle["consistency"]["from_tree_size"]
    assert f"extends the tree of size {old}" in detail(page, "consistency")
    assert verify_bundle(bundle, chain=Chain(site.rpc_url)).valid

    tampered = copy.deepcopy(bundle)
    tampered["consistency"]["proof"][0] = flip(tampered["consistency"]["proof"][0])
    statuses = verify_in_page(page, tampered)
    assert [name for name, status in statuses.items() if status == "fail"] == ["consistency"]
    assert list(verify_bundle(tampered, chain=Chain(site.rpc_url)).failed) == ["consistency"]


def test_a_dropped_bundle_file_is_verified(page: Page, site: Site) -> None:
    open_verifier(page, site)
    page.evaluate(
        """text => {
            const transfer = new DataTransfer();
            transfer.items.add(new File([text], "bundle.json", {type: "application/json"}));
            document.getElementById("dropzone").dispatchEvent(
                new DragEvent("drop", {dataTransfer: transfer, bubbles: true, cancelable: true}));
        }""",
        json.dumps(site.bundle),
    )
    assert wait_for_verdict(page) == dict.fromkeys(ALL_CHECKS, "pass")
    assert json.loads(page.locator("#bundle-input").input_value()) == site.bundle


def test_a_chosen_bundle_file_is_verified(page: Page, site: Site, tmp_path: Path) -> None:
    path = tmp_path / "bundle.json"
    bundle = copy.deepcopy(site.bundle)
    _payload_changed(bundle)
    path.write_text(json.dumps(bundle), encoding="utf-8")
    open_verifier(page, site)
    page.set_input_files("#bundle-file", str(path))
    statuses = wait_for_verdict(page)
    assert [name for name in ALL_CHECKS if statuses[name] == "fail"] == ["record"]


def test_a_bundle_naming_another_contract_than_the_trusted_one_fails(
    page: Page, site: Site
) -> None:
    open_verifier(page, site)
    page.fill("#expected-contract", "0x" + "ab" * 20)
    statuses = verify_in_page(page, site.bundle)
    assert statuses["contract"] == "fail"
    assert statuses["checkpoint"] == "skip"
    assert "you expect 0x" + "ab" * 20 in detail(page, "contract")


def test_an_unreachable_chain_proves_nothing(page: Page, site: Site) -> None:
    open_verifier(page, site)
    page.fill("#rpc-url", "http://127.0.0.1:9/")  # discard port: nothing listens
    statuses = verify_in_page(page, site.bundle)
    assert statuses == {
        "record": "pass",
        "inclusion": "pass",
        **dict.fromkeys(ALL_CHECKS[2:], "skip"),
    }
    assert page.locator("#verdict").get_attribute("data-verdict") == "error"
    expect(page.locator("#verdict-title")).to_have_text("Not verified: the chain could not be read")


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("not json at all", "not valid JSON"),
        ("[1, 2]", "a bundle is a JSON object"),
        ('{"version": 2}', "only bundle version 1"),
    ],
)
def test_input_that_is_not_a_bundle_is_refused(
    page: Page, site: Site, text: str, says: str
) -> None:
    open_verifier(page, site)
    assert verify_in_page(page, text) == {}
    expect(page.locator("#verdict-title")).to_have_text("This is not a proof bundle")
    expect(page.locator("#verdict-detail")).to_contain_text(says)


# -- amounts ------------------------------------------------------------------------------------


def test_amounts_show_the_tokens_precision_and_never_throw(page: Page, site: Site) -> None:
    """The page's ``units`` (exposed as ``chainauditPage.units``) for 0-, 6- and 18-decimal
    tokens, exact for strings of digits, marked approximate for JSON numbers past 2^53 (which
    ``String()`` would have turned into ``7.5e+22``, refused by ``BigInt``)."""
    page.goto("/")
    cases: list[tuple[str | int | float | None, int, str]] = [
        ("12", 0, "12"),
        (1234567, 0, "1,234,567"),
        ("1234567", 6, "1.234567"),
        ("1500000", 6, "1.50"),
        (9876540000, 6, "9,876.54"),
        (75000000000, 6, "75,000.00"),
        ("0", 6, "0.00"),
        ("75000000000000000000000", 18, "75,000.00"),
        ("1234567890123456789", 18, "1.234567890123456789"),
        ("100000000000000000", 18, "0.10"),
        (7.5e22, 18, "≈75,000.00"),  # a JSON number: String() gives "7.5e+22"
        (7.5e22, 0, "≈75,000,000,000,000,000,000,000"),
        (2**53 - 1, 0, "9,007,199,254,740,991"),  # the largest exact JSON number
        (None, 6, "—"),
    ]
    shown = page.evaluate(
        "cases => cases.map(([v, d]) => chainauditPage.units(v, d))",
        [[value, decimals] for value, decimals, _ in cases],
    )
    assert shown == [want for _, _, want in cases]
