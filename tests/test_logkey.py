"""The log's identity (chainaudit/app/logkey.py): origin, signer key from the environment, an
encrypted keystore or the development key file; production refusals; ``chainaudit log-key``."""

from __future__ import annotations

import json
import re
import stat
from pathlib import Path

import pytest

from chainaudit.app.logkey import DEV_KEY_FILE, generate_keystore, log_signer, read_keystore
from chainaudit.app.settings import Settings, load_settings
from chainaudit.cli import main
from chainaudit.core import note
from chainaudit.core.errors import ConfigError

ORIGIN = "audit.example.com/chainaudit"
PASSWORD = "correct horse battery staple"


def settings(tmp_path: Path, **extra: object) -> Settings:
    return Settings(data_dir=tmp_path / "data", **extra)  # type: ignore[arg-type]


def test_keystore_round_trip_and_wrong_password(tmp_path: Path) -> None:
    path = tmp_path / "log.keystore"
    signer = generate_keystore(path, ORIGIN, PASSWORD)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert PASSWORD not in text and signer.encode() not in text
    document = json.loads(text)
    assert document["verifier"] == signer.verifier().encode() and document["name"] == ORIGIN
    assert read_keystore(path, PASSWORD).encode() == signer.encode()

    with pytest.raises(ConfigError, match="wrong password"):
        read_keystore(path, "not the password")
    with pytest.raises(ConfigError, match="exists"):
        generate_keystore(path, ORIGIN, PASSWORD)  # a key is never overwritten

    # The verifier is authenticated data: a keystore whose public key was swapped fails.
    other = note.Signer.generate(ORIGIN).verifier().encode()
    path.write_text(json.dumps({**document, "verifier": other}))
    with pytest.raises(ConfigError, match="wrong password, or the file was altered"):
        read_keystore(path, PASSWORD)
    path.write_text("{}")
    with pytest.raises(ConfigError, match="not a chainaudit log signing keystore"):
        read_keystore(path, PASSWORD)


def test_settings_resolve_the_keystore_and_refuse_a_key_of_another_origin(
    tmp_path: Path,
) -> None:
    path = tmp_path / "log.keystore"
    signer = generate_keystore(path, ORIGIN, PASSWORD)
    resolved = log_signer(
        settings(
            tmp_path,
            log_origin=ORIGIN,
            log_signing_keystore=path,
            log_signing_keystore_password=PASSWORD,
        )
    )
    assert resolved.verifier() == signer.verifier()

    with pytest.raises(ConfigError, match="needs its password"):
        log_signer(settings(tmp_path, log_origin=ORIGIN, log_signing_keystore=path))
    with pytest.raises(ConfigError, match=r"named 'audit.example.com/chainaudit' but the log"):
        log_signer(
            settings(
                tmp_path,
                log_origin="other.example/log",
                log_signing_keystore=path,
                log_signing_keystore_password=PASSWORD,
            )
        )
    stranger = note.Signer.generate("someone.else/log")
    with pytest.raises(ConfigError, match="origin") as refused:
        log_signer(settings(tmp_path, log_origin=ORIGIN, log_signing_key=stranger.encode()))
    assert stranger.encode() not in str(refused.value)
    witness = note.Signer.generate(ORIGIN, note.COSIGNATURE_V1)
    with pytest.raises(ConfigError, match="Ed25519 note key"):
        log_signer(settings(tmp_path, log_origin=ORIGIN, log_signing_key=witness.encode()))
    with pytest.raises(ConfigError, match="not a valid note signer key"):
        log_signer(settings(tmp_path, log_origin=ORIGIN, log_signing_key="PRIVATE+KEY+x"))
    with pytest.raises(ConfigError, match="not both"):
        log_signer(
            settings(
                tmp_path,
                log_origin=ORIGIN,
                log_signing_key=signer.encode(),
                log_signing_keystore=path,
            )
        )
    with pytest.raises(ConfigError, match="log_origin"):
        load_settings(log_origin="has a space")


def test_development_generates_one_key_and_reuses_it(tmp_path: Path) -> None:
    dev = settings(tmp_path)
    first = log_signer(dev)
    assert first.name == "localhost/chainaudit"
    key_file = dev.data_dir / DEV_KEY_FILE
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert log_signer(dev).encode() == first.encode()
    with pytest.raises(ConfigError, match="origin"):  # the stored key names another origin
        log_signer(settings(tmp_path, log_origin="renamed.example/log"))


def test_production_refuses_without_an_origin_or_a_key(tmp_path: Path) -> None:
    production = {"environment": "production", "rpc_url": "https://rpc.example"}
    with pytest.raises(ConfigError, match="no log origin"):
        log_signer(settings(tmp_path, **production))
    with pytest.raises(ConfigError, match="no log signing key"):
        log_signer(settings(tmp_path, log_origin=ORIGIN, **production))
    assert not (tmp_path / "data" / DEV_KEY_FILE).exists()
    key = note.Signer.generate(ORIGIN)
    chosen = settings(tmp_path, log_origin=ORIGIN, log_signing_key=key.encode(), **production)
    assert log_signer(chosen).verifier() == key.verifier()
    assert key.encode() not in repr(chosen)


def test_serve_refuses_to_start_in_production_without_a_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CHAINAUDIT_ENVIRONMENT", "production")
    monkeypatch.setenv("CHAINAUDIT_RPC_URL", "https://rpc.example")
    monkeypatch.setenv("CHAINAUDIT_LOG_ORIGIN", ORIGIN)
    assert main(["--data-dir", str(tmp_path / "data"), "serve", "--port", "0"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and "no log signing key" in err


def test_log_key_commands(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "log.keystore"
    monkeypatch.setenv("CHAINAUDIT_LOG_SIGNING_KEYSTORE_PASSWORD", PASSWORD)
    assert main(["log-key", "generate", "--origin", ORIGIN, "--keystore", str(path)]) == 0
    out = capsys.readouterr().out
    printed = out.strip().splitlines()[-1]
    verifier = note.Verifier.parse(printed)
    assert verifier.name == ORIGIN and PASSWORD not in out and "PRIVATE" not in out

    monkeypatch.setenv("CHAINAUDIT_LOG_ORIGIN", ORIGIN)
    monkeypatch.setenv("CHAINAUDIT_LOG_SIGNING_KEYSTORE", str(path))
    assert main(["--data-dir", str(tmp_path / "data"), "log-key", "verifier"]) == 0
    assert capsys.readouterr().out.strip() == printed

    bad = ["log-key", "generate", "--origin", "bad origin", "--keystore", str(tmp_path / "x")]
    assert main(bad) == 2
    assert "--origin" in capsys.readouterr().err


def test_the_readme_example_checkpoint_verifies_with_its_example_key() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme[readme.index("## For transparency-log users") :]
    vkey = re.search(r"\(e\.g\. `([^`]+)`\)", section)
    block = re.search(r"```text\n(.*?)```", section, re.S)
    assert vkey is not None and block is not None
    text = "\n".join(line.removeprefix("  ") for line in block.group(1).split("\n"))
    checkpoint, _ = note.open_checkpoint(text.rstrip("\n ") + "\n", note.Verifier.parse(vkey[1]))
    assert (checkpoint.origin, checkpoint.size) == (ORIGIN, 8)
