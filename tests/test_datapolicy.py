"""The data policy file: parsed strictly, every kind it does not name left open."""

from __future__ import annotations

from pathlib import Path

import pytest

from chainaudit.core import datapolicy
from chainaudit.core.errors import ConfigError

POLICY = """{"kinds": {"transaction": {"personal": ["/contact/name", "/a~1b"],
  "allowed": ["po", "contact"], "encrypt": true, "retention_days": 30}}}"""


def test_a_declared_kind_and_an_open_one() -> None:
    policy = datapolicy.DataPolicy.parse(POLICY)
    kind = policy.for_kind("transaction")
    assert kind.personal == ("/contact/name", "/a~1b")
    assert kind.encrypt and kind.retention_days == 30
    assert kind.undeclared({"po": 1, "contact": {}, "iban": "x", "extra": 2}) == ["extra", "iban"]
    assert policy.for_kind("document") is datapolicy.OPEN
    assert datapolicy.OPEN.undeclared({"anything": 1}) == []
    assert datapolicy.pointer_parts("/a~1b/c~0d") == ["a/b", "c~d"]


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("[]", "expected an object"),
        ('{"kinds": {"t": {"personal": ["name"]}}}', "JSON pointers"),
        ('{"kinds": {"t": {"allowed": "po"}}}', "'allowed'"),
        ('{"kinds": {"t": {"encrypt": 1}}}', "'encrypt'"),
        ('{"kinds": {"t": {"retention_days": 0}}}', "'retention_days'"),
        ('{"kinds": {"t": {"retain": 1}}}', "unknown keys ['retain']"),
        ('{"kinds": {"escrow_event": {"retention_days": 30}}}', "no retention period"),
        ("{", "not JSON"),
    ],
)
def test_a_malformed_policy_is_refused_with_what_is_wrong(text: str, says: str) -> None:
    with pytest.raises(ConfigError, match=says.replace("[", r"\[").replace("]", r"\]")):
        datapolicy.DataPolicy.parse(text)


def test_load_reads_a_file_or_gives_the_open_policy(tmp_path: Path) -> None:
    assert datapolicy.load(None).for_kind("transaction") is datapolicy.OPEN
    path = tmp_path / "policy.json"
    path.write_text(POLICY)
    assert datapolicy.load(path).for_kind("transaction").encrypt
    with pytest.raises(ConfigError, match="cannot read"):
        datapolicy.load(tmp_path / "missing.json")
