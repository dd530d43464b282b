"""Transport (issue 18): `chainaudit serve` terminates TLS itself, and production refuses plain
HTTP off loopback unless it sits behind a proxy. Real processes, a certificate made here."""

from __future__ import annotations

import datetime
import ipaddress
import os
import signal
import ssl
import subprocess
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from chainaudit.api.server import check_transport, loopback
from chainaudit.app.settings import Settings
from chainaudit.chain.devnet import Devnet, free_port
from chainaudit.core.errors import InputError
from tests.api.conftest import make_settings
from tests.api.test_hostile_input import settings_env
from tests.cli.test_cli_edges import NO_DATA_ENV, assert_one_line, chainaudit


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def make_ca_and_server(directory: Path) -> tuple[Path, Path, Path]:
    """A throw-away CA and a server certificate it signed for 127.0.0.1 and localhost;
    returns the CA certificate, the server certificate and the server key files."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("chainaudit test CA"))
        .issuer_name(_name("chainaudit test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    server = (
        x509.CertificateBuilder()
        .subject_name(_name("127.0.0.1"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([x509.OID_SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_file, cert_file, key_file = (directory / n for n in ("ca.pem", "server.pem", "key.pem"))
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(server.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return ca_file, cert_file, key_file


def test_serve_over_tls_with_a_certificate_the_client_verifies(
    tmp_path: Path, anvil: Devnet
) -> None:
    ca_file, cert_file, key_file = make_ca_and_server(tmp_path)
    settings = make_settings(tmp_path, anvil)
    port = free_port()
    env = {
        **settings_env(settings),
        "CHAINAUDIT_TLS_CERT_FILE": str(cert_file),
        "CHAINAUDIT_TLS_KEY_FILE": str(key_file),
    }
    process = subprocess.Popen(
        chainaudit("serve", "--port", str(port)),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # blocks until the server accepts connections
        url = f"https://127.0.0.1:{port}"
        assert line == f"serving the API at {url} (docs at /docs); Ctrl-C stops it\n", line
        trusting = ssl.create_default_context(cafile=str(ca_file))
        response = httpx.get(f"{url}/healthz", verify=trusting, timeout=10)
        assert response.status_code == 200, response.text
        # a client that does not trust the CA refuses the certificate
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            httpx.get(f"{url}/healthz", verify=ssl.create_default_context(), timeout=10)
        # and plain HTTP is not served on the TLS port
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


def test_production_refuses_plain_http_off_loopback_and_unusable_certificates(
    tmp_path: Path,
) -> None:
    _, cert_file, _ = make_ca_and_server(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    _, _, other_key = make_ca_and_server(other)  # a key that does not match the certificate
    env = {**NO_DATA_ENV, "CHAINAUDIT_DATA_DIR": str(tmp_path / "data")}
    production = {**env, "CHAINAUDIT_ENVIRONMENT": "production"}
    refused = subprocess.run(
        chainaudit("serve", "--host", "0.0.0.0", "--port", "0"),
        check=False, env=production, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert assert_one_line(refused) == (
        "chainaudit: refusing to serve plain HTTP on 0.0.0.0 in production: set tls_cert_file "
        "and tls_key_file (CHAINAUDIT_TLS_CERT_FILE, CHAINAUDIT_TLS_KEY_FILE), or "
        "behind_proxy=true when a TLS-terminating proxy is in front"
    )
    assert refused.stdout == ""
    mismatched = subprocess.run(
        chainaudit("serve", "--port", "0"),
        env={**env, "CHAINAUDIT_TLS_CERT_FILE": str(cert_file),
             "CHAINAUDIT_TLS_KEY_FILE": str(other_key)},
        check=False, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert assert_one_line(mismatched).startswith(
        f"chainaudit: cannot serve TLS with certificate {cert_file} and key {other_key}: "
    )

    # the rule itself, without starting servers: loopback, a proxy in front, or TLS
    base = Settings(data_dir=tmp_path / "data", environment="production")
    assert check_transport(base, "127.0.0.1") == "http"
    assert check_transport(base, "::1") == "http" and loopback("localhost")
    assert check_transport(base.model_copy(update={"behind_proxy": True}), "0.0.0.0") == "http"
    with pytest.raises(InputError, match=r"refusing to serve plain HTTP on 10\.0\.0\.5"):
        check_transport(base, "10.0.0.5")
    assert (
        check_transport(Settings(data_dir=tmp_path, environment="development"), "0.0.0.0") == "http"
    )
    with pytest.raises(ValueError, match="tls_cert_file and tls_key_file go together"):
        Settings(data_dir=tmp_path, tls_cert_file=cert_file)
