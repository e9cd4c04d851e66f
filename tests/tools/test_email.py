"""send_email through a real aiosmtpd server on 127.0.0.1 with STARTTLS and AUTH."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import os
import socket
import ssl
from collections.abc import AsyncIterator, Iterator
from email import message_from_bytes
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.tools.conftest import Ctx
from voxd.config.tools import EmailConfig, ToolsConfig
from voxd.tools.library import ToolLibrary


def self_signed(folder: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@pytest.fixture(autouse=True)
async def _smtp_connections_closed() -> AsyncIterator[None]:
    """aiosmtplib closes its TLS connection without waiting for the close to finish; the
    daemon's loop runs on and finishes it, but a test's loop ends at once. Wait (up to 5 s)
    until the process has no more descriptors open than before the test."""
    before = len(os.listdir("/proc/self/fd"))
    yield
    for _ in range(250):
        if len(os.listdir("/proc/self/fd")) <= before:
            return
        await asyncio.sleep(0.02)
    pytest.fail("a connection is still open 5 s after the test")


class Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[Envelope, Any]] = []

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        assert isinstance(envelope.content, bytes)
        self.messages.append((envelope, message_from_bytes(envelope.content, policy=default_policy)))
        return "250 OK"


def authenticator(server: Any, session: Session, envelope: Envelope, mechanism: str, auth_data: Any) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (b"voxd", b"hunter22")
    return AuthResult(success=ok, handled=False)


@pytest.fixture
def smtp(tmp_path: Path) -> Iterator[tuple[Controller, Inbox, Path]]:
    cert, key = self_signed(tmp_path)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    inbox = Inbox()
    with socket.socket() as s:  # aiosmtpd's readiness probe needs the real port up front
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctl = Controller(inbox, hostname="127.0.0.1", port=port, tls_context=tls, require_starttls=True,
                     authenticator=authenticator, auth_required=True, auth_require_tls=True,
                     ready_timeout=10)
    ctl.start()
    try:
        yield ctl, inbox, cert
    finally:
        ctl.stop()


def config(ctl: Controller, cert: Path, **kw: Any) -> ToolsConfig:
    base = {"host": "127.0.0.1", "port": ctl.port, "security": "starttls", "username": "voxd",
            "password_env": "VOXD_TEST_SMTP_PASSWORD", "from_addr": "bot@shop.example", "ca_file": str(cert)}
    return ToolsConfig(email=EmailConfig.model_validate(base | kw))


async def test_send_email_with_starttls_and_auth(smtp: tuple[Controller, Inbox, Path], tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    ctl, inbox, cert = smtp
    monkeypatch.setenv("VOXD_TEST_SMTP_PASSWORD", "hunter22")
    lib = ToolLibrary(config(ctl, cert), base_dir=tmp_path, embedder=None)
    args = {"to": "ann@customer.example", "subject": "Your booking", "body": "See you Tuesday at 3 PM."}
    res = await lib.base.execute("send_email", args, Ctx())
    assert res.error is None, res.error
    assert res.result["sent"] is True
    envelope, msg = inbox.messages[0]
    assert envelope.mail_from == "bot@shop.example" and envelope.rcpt_tos == ["ann@customer.example"]
    assert msg["Subject"] == "Your booking" and msg["X-Voxd-Call-Id"] == "call_test"
    assert msg.get_content().strip() == "See you Tuesday at 3 PM."
    assert msg["Message-ID"] == res.result["message_id"]


async def test_wrong_password_and_disallowed_domain(smtp: tuple[Controller, Inbox, Path], tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    ctl, inbox, cert = smtp
    monkeypatch.setenv("VOXD_TEST_SMTP_PASSWORD", "wrong")
    lib = ToolLibrary(config(ctl, cert), base_dir=tmp_path, embedder=None)
    args = {"to": "ann@customer.example", "subject": "s", "body": "b"}
    bad_login = await lib.base.execute("send_email", args, Ctx())
    limited = await lib.base.execute("send_email", args, Ctx({"send_email": {"allowed_domains": ["shop.example"]}}))
    # an agent cannot redirect the daemon's credentials to another server
    moved = await lib.base.execute("send_email", args, Ctx({"send_email": {"host": "10.0.0.1", "allowed_domains": []}}))
    assert bad_login.error == "the mail server refused voxd's login"
    assert limited.error == "emails to customer.example are not allowed for this agent"
    assert moved.error == "the mail server refused voxd's login"  # still 127.0.0.1
    assert inbox.messages == []


async def test_unconfigured_email_says_so(tmp_path: Path) -> None:
    lib = ToolLibrary(base_dir=tmp_path, embedder=None)
    res = await lib.base.execute("send_email", {"to": "a@b.example", "subject": "s", "body": "b"}, Ctx())
    assert res.error == "email is not set up on this server (tools.email.host)"
