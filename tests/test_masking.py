"""Masking personal fields (pure): JSON pointers into the payload, copies not changes, and
who is masked."""

from __future__ import annotations

import copy

from chainaudit.core.datapolicy import DataPolicy
from chainaudit.service.keys import ApiKey
from chainaudit.service.masking import MASK, mask_document, mask_payload, masked_reader

PAYLOAD = {
    "po_number": "PO-1",
    "contact": {"name": "Ada", "email": "ada@example.invalid"},
    "signers": [{"name": "Bo"}, {"name": "Cy"}],
    "a/b": "slash",
    "t~x": "tilde",
}


def test_pointers_mask_nested_fields_list_items_and_escaped_names_in_a_copy() -> None:
    before = copy.deepcopy(PAYLOAD)
    masked, changed = mask_payload(
        PAYLOAD, ["/contact/email", "/signers/1/name", "/a~1b", "/t~0x", "/missing/x"]
    )
    assert changed and before == PAYLOAD  # the input is not changed
    assert masked == {
        "po_number": "PO-1",
        "contact": {"name": "Ada", "email": MASK},
        "signers": [{"name": "Bo"}, {"name": MASK}],
        "a/b": MASK,
        "t~x": MASK,
    }
    # a whole object can be personal; pointers that do not resolve mask nothing
    assert mask_payload(PAYLOAD, ["/contact"])[0]["contact"] == MASK
    for pointer in ("/nope", "/signers/2/name", "/signers/01/name", "/po_number/x"):
        assert mask_payload(PAYLOAD, [pointer]) == (PAYLOAD, False)


def test_documents_are_masked_by_their_kind_for_auditors_and_regulators_only() -> None:
    policy = DataPolicy.parse('{"kinds": {"transaction": {"personal": ["/contact/name"]}}}')
    document = {"id": "po-1", "kind": "transaction", "payload": PAYLOAD}
    shown, masked = mask_document(policy, "transaction", document)
    assert masked and shown["payload"]["contact"]["name"] == MASK and shown["id"] == "po-1"
    assert mask_document(policy, "document", document) == (document, False)

    def key(role: str, personal: bool = False) -> ApiKey:
        return ApiKey("0123456789ab", role, role, None, 0, None, personal_data=personal)

    assert masked_reader(key("auditor")) and masked_reader(key("regulator"))
    assert not masked_reader(key("auditor", personal=True))
    assert not any(masked_reader(key(r)) for r in ("admin", "operator", "partner"))
