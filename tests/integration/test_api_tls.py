"""`api.tls_cert` / `api.tls_key`: the API listener (and the console on it) serves HTTPS
with a certificate made here (self-signed, for 127.0.0.1); a signed action works over it
and plain HTTP is not answered."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from pathlib import Path

import httpx
import pytest
from tests.conftest import TEST_AK, TEST_SK, start_node

from liverelay.sdk import LiveService

x509 = pytest.importorskip("cryptography.x509")
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402

LOOPBACK = "127.0.0.1"


def self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "api.crt", directory / "api.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


def test_api_listener_serves_https(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    node = start_node(tmp_path / "node", config=f'[api]\ntls_cert = "{cert}"\ntls_key = "{key}"\n')
    try:
        trust = ssl.create_default_context(cafile=str(cert))
        with httpx.Client(verify=trust, timeout=10) as client:
            page = client.get(f"https://127.0.0.1:{node.api_port}/console/")
            assert page.status_code == 200 and "liverelay console" in page.text
            assert "default-src 'self'" in page.headers["Content-Security-Policy"]
            sdk = LiveService(f"127.0.0.1:{node.api_port}", TEST_AK, TEST_SK, scheme="https", max_retries=0)
            prepared = sdk.prepare("DescribeNodeStatus", {})
            sdk.close()
            answer = client.post(prepared.url, content=prepared.content, headers=prepared.headers)
            assert answer.status_code == 200, answer.text
            assert answer.json()["Result"]["Listeners"]["api"].startswith("https://")
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{node.api_port}/console/", timeout=5)
        assert f"api   https://127.0.0.1:{node.api_port}/" in node.log()
    finally:
        node.kill()


def test_a_key_without_a_certificate_is_a_config_error(tmp_path: Path) -> None:
    _, key = self_signed(tmp_path)
    from liverelay.config import ConfigError
    from liverelay.node import _tls_context

    with pytest.raises(ConfigError, match="together"):
        _tls_context("", str(key))
    with pytest.raises(ConfigError, match="cannot load"):
        _tls_context(str(tmp_path / "missing.crt"), str(key))
    assert _tls_context("", "") is None
