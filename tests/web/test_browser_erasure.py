"""The page's verifier accepts a bundle of an erased record, says "erased", and refuses a forged
erasure section: the same checks as chainaudit's Python verifier, in Chromium, against the
session's Anvil."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from eth_account import Account
from playwright.sync_api import Page

from chainaudit.app.deploy import deploy_contracts
from chainaudit.chain.chain import Chain
from chainaudit.chain.devnet import Devnet
from chainaudit.core.records import prepare
from chainaudit.log.store import Log
from chainaudit.service import erasure
from chainaudit.service.anchoring import AnchorBook, Anchorer, AnchorPolicy
from chainaudit.service.bundling import build_bundle
from chainaudit.verify.verifier import verify_bundle
from tests.web.conftest import Site


def erased_bundle(anvil: Devnet, data_dir: Path) -> dict[str, Any]:
    chain = Chain(anvil.rpc_url)
    account = Account.from_key(anvil.accounts[0].private_key)
    contract = deploy_contracts(chain, account)["AuditAnchor"].address
    with Log.open(data_dir) as log:
        anchorer = Anchorer(log, chain, account, contract, policy=AnchorPolicy(finality=10_000))
        log.append(
            [
                prepare(
                    {
                        "id": f"tx-{i}",
                        "kind": "transaction",
                        "timestamp": "2026-11-21T09:30:00Z",
                        "actor": "supplier:acme",
                        "payload": {"contact": "Li Lei", "amount": i},
                    }
                )
                for i in range(5)
            ]
        )
        erasure.erase(
            log,
            "tx-2",
            reason="asked",
            basis="GDPR Art. 17",
            requested_by="key:aaaaaaaaaaaa",
            approved_by="key:bbbbbbbbbbbb",
        )
        anchorer.anchor_now(timeout=60)
        book = AnchorBook(log)
        bundle = build_bundle(log, book, "tx-2")
        book.close()
        anchorer.close()
    return bundle


def run_in_browser(page: Page, site: Site, bundle: dict[str, Any]) -> dict[str, Any]:
    page.goto("/#verify")
    page.wait_for_selector("body[data-ready='true']", state="attached")
    result: dict[str, Any] = page.evaluate(
        """async ([text, rpcUrl]) => {
            try {
                const r = await chainauditVerifier.verifyBundleText(text, {rpcUrl,
                    expectedChainId: null, expectedContract: null, confirmations: 1});
                return {valid: r.valid, checks: r.checks.map(c => [c.name, c.status, c.detail])};
            } catch (error) { return {error: error.message}; }
        }""",
        [json.dumps(bundle), site.rpc_url],
    )
    return result


def test_the_browser_verifies_an_erased_bundle_like_python(
    page: Page, site: Site, anvil: Devnet, tmp_path: Path
) -> None:
    bundle = erased_bundle(anvil, tmp_path)
    python = verify_bundle(bundle, chain=Chain(anvil.rpc_url))
    browser = run_in_browser(page, site, bundle)
    assert browser.get("valid") is True, browser
    assert [(n, s) for n, s, _ in browser["checks"]] == [(c.name, c.status) for c in python.checks]
    statuses = {name: (status, detail) for name, status, detail in browser["checks"]}
    assert statuses["erasure"][0] == "pass" and "erased" in statuses["erasure"][1]
    assert statuses["record"][0] == "skip" and "erased" in statuses["record"][1]

    forged = json.loads(json.dumps(bundle))
    forged["erasure"]["record"]["payload"]["leaf_index"] = 3
    result = run_in_browser(page, site, forged)
    assert result["valid"] is False
    assert [n for n, s, _ in result["checks"] if s == "fail"] == ["erasure"]

    both = {**bundle, "record": bundle["erasure"]["record"]}
    assert "not both" in run_in_browser(page, site, both)["error"]
