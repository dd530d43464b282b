"""The page's verifier core, run in Chromium and compared with chainaudit's Python reference:
RFC 8785 canonical form, leaf hashes and RFC 9162 inclusion folding (including tree sizes past
2^32, where JavaScript's bitwise operators would overflow)."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from chainaudit.core import merkle
from chainaudit.core.bundle import loads_bundle
from chainaudit.core.canonical import canonicalize
from chainaudit.core.errors import InputError, RecordError, VerificationError
from chainaudit.verify.verifier import verify_bundle
from tests.web.conftest import Site

CANONICAL_CASES = [
    '{"b": 1, "a": 2, "A": 3, "_": 4, "aa": 5, "": 6, "a\\u0000": 7}',
    # U+1F600 is D83D DE00 in UTF-16 and sorts before U+FFFD, unlike in code-point order
    '{"\\ud83d\\ude00": 1, "\\ufffd": 2, "\\u00e9": 3, "z": 4, "\\u20ac": 5}',
    '["\\u0000\\u001f\\b\\t\\n\\u000b\\f\\r\\"\\\\/", "\\u2028\\u2029\\u007f", "</script>"]',
    '{"text": "\\u00e9\\u2713\\ud83d\\ude00 \\u0627\\u0644", "empty": "", '
    '"nested": {"z": [], "y": {}}}',
    "[0, -1, 9007199254740991, -9007199254740991, true, false, null, [[[]]], "
    '{"k": [1, {"b": 2, "a": 1}]}]',
    '{"id": "inv-1", "kind": "transaction", "timestamp": "2026-11-21T09:30:00Z", "actor": "x", '
    '"payload": {"amount": 100, "currency": "USD"}, "salt": "00000000000000000000000000000001"}',
    "[" * 32 + "]" * 32,  # the deepest nesting allowed
]
REFUSED_CASES = [
    ('{"amount": 1.5}', "floating-point"),
    ('{"amount": 9007199254740992}', "outside"),
    ('{"amount": 1e300}', "outside"),
    ('"\\ud800"', "lone surrogate"),
    ('{"\\udc00": 1}', "lone surrogate"),
    ("[" * 33 + "]" * 33, "nesting deeper"),
]


@pytest.fixture
def verifier(page: Page, site: Site) -> Page:
    page.goto("/#verify")
    page.wait_for_selector("body[data-ready='true']", state="attached")  # no eval: CSP
    return page


def _canonical_in_browser(page: Page, texts: list[str]) -> list[dict[str, str]]:
    result: list[dict[str, str]] = page.evaluate(
        """texts => texts.map(text => {
            try { return {ok: chainauditVerifier.canonicalJson(JSON.parse(text))}; }
            catch (error) { return {error: error.message}; }
        })""",
        texts,
    )
    return result


def test_canonical_form_matches_the_python_reference(verifier: Page) -> None:
    results = _canonical_in_browser(verifier, CANONICAL_CASES)
    for text, result in zip(CANONICAL_CASES, results, strict=True):
        assert result == {"ok": canonicalize(json.loads(text)).decode("utf-8")}, text


def test_values_outside_the_domain_are_refused_like_the_python_reference(
    verifier: Page,
) -> None:
    results = _canonical_in_browser(verifier, [text for text, _ in REFUSED_CASES])
    for (text, says), result in zip(REFUSED_CASES, results, strict=True):
        assert says in result.get("error", ""), (text, result)
        with pytest.raises(RecordError):
            canonicalize(json.loads(text))


def test_leaf_hashes_match_the_python_reference(verifier: Page) -> None:
    records: list[Any] = [json.loads(text) for text in CANONICAL_CASES]
    hashes = verifier.evaluate(
        "values => Promise.all(values.map(v => chainauditVerifier.leafHash(v)))", records
    )
    assert hashes == ["0x" + merkle.hash_leaf(canonicalize(r)).hex() for r in records]


def _fold_in_browser(page: Page, cases: list[tuple[str, int, int, list[str]]]) -> list[str]:
    result: list[str] = page.evaluate(
        """cases => Promise.all(cases.map(([leaf, index, size, proof]) =>
            chainauditVerifier.rootFromInclusionProof(leaf, index, size, proof)
                .catch(error => "error: " + error.message)))""",
        cases,
    )
    return result


def test_inclusion_folding_matches_the_python_reference_for_every_leaf(verifier: Page) -> None:
    leaves = [merkle.hash_leaf(f"leaf {i}".encode()) for i in range(40)]
    cases, roots = [], []
    for size in range(1, 41):
        root = "0x" + merkle.root_hash(leaves[:size]).hex()
        for index in range(size):
            proof = ["0x" + h.hex() for h in merkle.inclusion_proof(leaves[:size], index)]
            cases.append(("0x" + leaves[index].hex(), index, size, proof))
            roots.append(root)
    assert _fold_in_browser(verifier, cases) == roots


def test_proofs_of_the_wrong_length_or_position_are_refused(verifier: Page) -> None:
    leaves = [merkle.hash_leaf(bytes([i])) for i in range(13)]
    proof = ["0x" + h.hex() for h in merkle.inclusion_proof(leaves, 6)]
    leaf = "0x" + leaves[6].hex()
    results = _fold_in_browser(
        verifier,
        [
            (leaf, 6, 13, proof[:-1]),
            (leaf, 6, 13, [*proof, "0x" + "11" * 32]),
            (leaf, 13, 13, proof),
        ],
    )
    assert results == [
        "error: the inclusion proof is too short",
        "error: the inclusion proof is too long",
        "error: leaf index 13 is outside a tree of 13",
    ]


def test_inclusion_folding_past_32_bits_matches_the_python_reference(verifier: Page) -> None:
    rng = random.Random(9162)
    cases, roots = [], []
    for index, size in [
        (2**40, 2**40 + 1),
        (2**32 + 5, 2**33 + 3),
        (2**47 - 1, 2**48 - 1),
        (123_456_789_012, 2**48 - 1),
        (0, 2**47 + 1),
    ]:
        leaf = rng.randbytes(32)
        for length in range(70):  # the proof's length is fixed by the shape; find it
            proof = [rng.randbytes(32) for _ in range(length)]
            try:
                root = merkle.root_from_inclusion_proof(leaf, index, size, proof)
            except VerificationError:
                continue
            cases.append(("0x" + leaf.hex(), index, size, ["0x" + p.hex() for p in proof]))
            roots.append("0x" + root.hex())
            break
    assert len(cases) == 5
    assert _fold_in_browser(verifier, cases) == roots


def test_consistency_checking_matches_the_python_reference(verifier: Page) -> None:
    leaves = [merkle.hash_leaf(f"entry {i}".encode()) for i in range(24)]
    cases: list[tuple[int, int, list[str], str, str]] = []
    expected: list[str] = []
    for n in range(1, 25):
        new_root = merkle.root_hash(leaves[:n])
        for m in range(1, n + 1):
            old_root = merkle.root_hash(leaves[:m])
            proof = merkle.consistency_proof(leaves[:n], m)
            cases.append((m, n, ["0x" + h.hex() for h in proof], old_root.hex(), new_root.hex()))
            expected.append("ok")
            if proof:  # the same proof with its last hash flipped must fail in both
                bad = [*proof[:-1], bytes([proof[-1][0] ^ 1]) + proof[-1][1:]]
                with pytest.raises(VerificationError):
                    merkle.verify_consistency(m, n, bad, old_root, new_root)
                cases.append((m, n, ["0x" + h.hex() for h in bad], old_root.hex(), new_root.hex()))
                expected.append("refused")
    results = verifier.evaluate(
        """cases => Promise.all(cases.map(([m, n, proof, oldRoot, newRoot]) =>
            chainauditVerifier.verifyConsistency(m, n, proof, "0x" + oldRoot, "0x" + newRoot)
                .then(() => "ok", () => "refused")))""",
        cases,
    )
    assert results == expected


# -- what JSON.parse would silently resolve is refused before parsing (issue 14) --------------


def _verify_text(page: Page, site: Site, text: str) -> None:
    page.goto("/#verify")
    expect(page.locator("#rpc-url")).to_have_value(site.rpc_url)  # /v1/config has loaded
    page.fill("#bundle-input", text)
    page.click("#verify-button")
    expect(page.locator("#verdict")).to_be_visible()


def _refused(page: Page, says: str) -> None:
    assert page.locator("#verdict").get_attribute("data-verdict") == "error"
    expect(page.locator("#verdict-title")).to_have_text("This is not a proof bundle")
    expect(page.locator("#verdict-detail")).to_contain_text(says)
    assert page.locator("#checks li").count() == 0
    expect(page.locator("#hashed")).to_be_hidden()


def test_a_bundle_with_a_duplicate_record_key_is_refused(page: Page, site: Site) -> None:
    """A forged record first and the genuine one last: JSON.parse keeps the last, so the
    page used to show the forged one and judge the genuine one valid."""
    forged = {**site.bundle["record"], "payload": {"type": "invoice", "amount": 1}}
    text = '{"record": ' + json.dumps(forged) + ", " + json.dumps(site.bundle)[1:]
    assert json.loads(text) == site.bundle  # what a last-key-wins parser sees
    _verify_text(page, site, text)
    _refused(page, 'the key "record" appears twice in one object')
    # the Python verifier refuses the same text
    with pytest.raises(InputError, match="duplicate JSON key 'record'"):
        loads_bundle(text)


def test_a_duplicate_key_hidden_by_an_escape_is_refused(page: Page, site: Site) -> None:
    text = json.dumps(site.bundle).replace('"leaf_index"', '"leaf_index": 0, "leaf\\u005findex"')
    _verify_text(page, site, text)
    _refused(page, 'the key "leaf_index" appears twice')


def test_a_chosen_file_with_a_duplicate_key_is_refused(
    page: Page, site: Site, tmp_path: Path
) -> None:
    path = tmp_path / "twice.json"
    path.write_text('{"version": 1, ' + json.dumps(site.bundle)[1:], encoding="utf-8")
    page.goto("/#verify")
    expect(page.locator("#rpc-url")).to_have_value(site.rpc_url)
    page.set_input_files("#bundle-file", str(path))
    expect(page.locator("#verdict")).to_be_visible()
    _refused(page, 'the key "version" appears twice')


def test_an_amount_that_is_not_an_exact_integer_is_refused(page: Page, site: Site) -> None:
    """124999.99999999999999 is 125000 to JSON.parse: the browser used to hash 125000 (valid)
    while chainaudit's verifier refuses the float (invalid)."""
    with site.client("auditor") as http:
        bundle = http.get("/v1/records/po-2026-0001/bundle").json()
    assert bundle["record"]["payload"]["amount"] == 125_000
    text = json.dumps(bundle).replace('"amount": 125000', '"amount": 124999.99999999999999')
    assert json.loads(text)["record"]["payload"]["amount"] == 124999.99999999999999 == 125000.0
    _verify_text(page, site, text)
    _refused(page, "the number 124999.99999999999999")
    expect(page.locator("#verdict-detail")).to_contain_text("is not an exact integer")
    assert not verify_bundle(loads_bundle(text), chain=None).valid  # the reference agrees


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (("leaf_index", "{}e0"), "e0 (at character"),
        (("tree_size", "9007199254740993"), "the number 9007199254740993"),
        (("version", "{}.0"), "the number 1.0"),
    ],
)
def test_other_inexact_numbers_are_refused(
    page: Page, site: Site, change: tuple[str, str], says: str
) -> None:
    field, literal = change
    value = site.bundle[field]
    text = json.dumps(site.bundle).replace(
        f'"{field}": {value}', f'"{field}": {literal.format(value)}', 1
    )
    json.loads(text)  # valid JSON: only the scan before parsing refuses it
    _verify_text(page, site, text)
    _refused(page, says)


def test_nesting_beyond_the_limit_is_refused_before_parsing(page: Page, site: Site) -> None:
    text = json.dumps({**site.bundle, "record": {"deep": "x"}}).replace(
        '"x"', "[" * 200_000 + "]" * 200_000
    )
    _verify_text(page, site, text)
    _refused(page, "the JSON nests deeper than 64 levels")


def test_the_page_shows_the_canonical_record_it_hashed(page: Page, site: Site) -> None:
    record = site.bundle["record"]
    reordered = {"record": dict(reversed(list(record.items())))}
    text = json.dumps({**site.bundle, **reordered}, indent=4)
    _verify_text(page, site, text)
    assert page.locator("#verdict").get_attribute("data-verdict") == "valid"
    expect(page.locator("#hashed")).to_be_visible()
    shown = page.locator("#hashed-record").text_content()
    assert shown == canonicalize(record).decode("utf-8")
    assert merkle.hash_leaf(shown.encode()).hex() == site.bundle["leaf_hash"][2:]


def test_a_bundle_withholding_its_record_for_privacy_verifies_its_leaf(
    page: Page, site: Site
) -> None:
    """A bundle made for a reader without the personal-data permission (issue 18) carries
    ``withheld`` instead of the record: the page accepts the field and proves the leaf."""
    bundle = {k: v for k, v in site.bundle.items() if k != "record"}
    bundle["withheld"] = "personal data: not for this reader"
    _verify_text(page, site, json.dumps(bundle))
    assert page.locator("#verdict").get_attribute("data-verdict") == "valid"
    expect(page.locator("#checks")).to_contain_text("withheld")
    assert verify_bundle(loads_bundle(json.dumps(bundle)), chain=None).valid  # the reference
