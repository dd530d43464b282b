"""docs/deploy.md's nginx site, exactly as written, in front of ``chainaudit serve --workers 2``.

A real nginx (Debian's, installed by ``make test``) terminates TLS with a certificate made for
the test and proxies to two real worker processes; only the addresses and the certificate's
paths are replaced, each of them asserted present, so the documented configuration cannot
drift from one that works.
"""

from __future__ import annotations

import datetime
import ipaddress
import re
import shutil
import signal
import socket
import ssl
import subprocess
import time
from pathlib import Path
from urllib.parse import urlparse

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from chainaudit.chain.devnet import Devnet, free_port
from tests.api.test_workers import record, serve_workers

DEPLOY = Path(__file__).resolve().parents[1] / "docs" / "deploy.md"


def _documented_site() -> str:
    blocks = re.findall(r"```nginx\n(.*?)```", DEPLOY.read_text(encoding="utf-8"), re.S)
    assert len(blocks) == 1, "docs/deploy.md shows one nginx site"
    return str(blocks[0])


def _certificate(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "audit.example.com")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("audit.example.com"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "fullchain.pem", directory / "privkey.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def _wait_for_port(port: int, process: subprocess.Popen[str], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[1]
        with socket.socket() as sock:
            sock.settimeout(0.2)
            if (
                sock.connect_ex(("127.0.0.1", port)) == 0
                and sock.getsockname() != sock.getpeername()
            ):
                return
        time.sleep(0.05)
    raise AssertionError(f"nginx did not listen on {port}")


def test_the_documented_nginx_site_serves_the_workers_over_tls(
    tmp_path: Path, anvil: Devnet
) -> None:
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    assert Path(nginx).exists(), "nginx is missing: `make test` installs Debian's nginx-light"
    cert, key = _certificate(tmp_path)
    with serve_workers(tmp_path / "api", anvil, 2) as served:
        port = free_port()
        site = _documented_site()
        for documented, here in {
            "server 127.0.0.1:8000;": f"server 127.0.0.1:{urlparse(served.url).port};",
            "listen 443 ssl;": f"listen 127.0.0.1:{port} ssl;",
            "/etc/chainaudit/tls/fullchain.pem": str(cert),
            "/etc/chainaudit/tls/privkey.pem": str(key),
        }.items():
            assert documented in site, f"docs/deploy.md's site no longer has {documented!r}"
            site = site.replace(documented, here)
        (tmp_path / "site.conf").write_text(site)
        temp = {name: tmp_path / name for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi")}
        for folder in temp.values():
            folder.mkdir()
        (tmp_path / "nginx.conf").write_text(
            f"daemon off;\nuser root;\nworker_processes 1;\npid {tmp_path}/nginx.pid;\n"
            f"error_log {tmp_path}/error.log warn;\nevents {{ worker_connections 256; }}\n"
            "http {\n    access_log off;\n"
            + "".join(f"    {name}_temp_path {path};\n" for name, path in temp.items()).replace(
                "body_temp_path", "client_body_temp_path"
            )
            + f"    include {tmp_path}/site.conf;\n}}\n"
        )
        proxy = subprocess.Popen(
            [nginx, "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            _wait_for_port(port, proxy)
            trust = ssl.create_default_context(cafile=str(cert))
            headers = {"Authorization": f"Bearer {served.tokens['operator']}"}
            with httpx.Client(
                base_url=f"https://127.0.0.1:{port}", verify=trust, headers=headers, timeout=30
            ) as client:
                assert client.get("/healthz").status_code == 200
                written = client.post("/v1/records", json=record("po-through-nginx"))
                assert written.status_code == 201, written.text
                read = client.get("/v1/records/po-through-nginx")
                assert read.status_code == 200, read.text
                assert read.json()["record_id"] == "po-through-nginx"
            # the proxy speaks only TLS on its port
            refused = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10)
            assert refused.status_code == 400
        finally:
            proxy.send_signal(signal.SIGQUIT)
            proxy.wait(timeout=20)
