"""SIP over TLS: a CA and server certificates made in the test; a TLS client verifies
the daemon's certificate, sends OPTIONS and gets 200 on the same connection (which
joins the SIP connection table); SIGHUP's reload presents a renewed certificate to new
connections and keeps the running one when the new pair is broken."""

from __future__ import annotations

import asyncio
import datetime
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.daemons import start_daemon, time_agent
from voxd.config import VoxdConfig


def make_ca() -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "voxd test CA")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return cert, key


def issue(ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey], folder: Path, serial: int) -> tuple[Path, Path]:
    ca_cert, ca_key = ca
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_cert.subject).public_key(key.public_key()).serial_number(serial)
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    crt, pem = folder / "sip.crt", folder / "sip.key"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
    return crt, pem


OPTIONS = ("OPTIONS sip:voxd@localhost SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.1:5999;branch=z9hG4bKtls{n}\r\n"
           "Max-Forwards: 70\r\nFrom: <sip:probe@localhost>;tag=t{n}\r\nTo: <sip:voxd@localhost>\r\n"
           "Call-ID: tls-{n}@localhost\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n")


async def probe(port: int, ca_file: Path, n: int) -> tuple[int, bytes]:
    """(the server certificate's serial, the response)"""
    ctx = ssl.create_default_context(cafile=str(ca_file))
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname="localhost")
    try:
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        writer.write(OPTIONS.format(n=n).encode())
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        return x509.load_der_x509_certificate(der).serial_number, head
    finally:
        writer.close()


@pytest.mark.timeout(60)
async def test_tls_listener_answers_and_reloads_its_certificate(tmp_path: Path) -> None:
    ca = make_ca()
    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(ca[0].public_bytes(serialization.Encoding.PEM))
    crt, key = issue(ca, tmp_path, serial=1001)
    sip = {"port": 0, "rtp_port_min": 32600, "rtp_port_max": 32700,
           "tls": {"enabled": True, "port": 0, "cert_file": str(crt), "key_file": str(key)}}
    daemon = await start_daemon(tmp_path, {"front": time_agent()}, sip=sip)
    try:
        port = daemon.sip_tls.port
        serial, head = await probe(port, ca_file, 1)
        assert serial == 1001 and head.startswith(b"SIP/2.0 200 ")
        assert b"Via: SIP/2.0/TLS 127.0.0.1:5999;branch=z9hG4bKtls1" in head
        # renewed in place (same paths), then SIGHUP
        issue(ca, tmp_path, serial=1002)
        daemon.config_loader = lambda: daemon.cfg
        await daemon.reload_now()
        serial, head = await probe(port, ca_file, 2)
        assert serial == 1002 and head.startswith(b"SIP/2.0 200 ")
        # a broken key file: the running pair stays
        key.write_text("not a key")
        await daemon.reload_now()
        serial, _ = await probe(port, ca_file, 3)
        assert serial == 1002 and daemon.sip_tls.reloads == 1
        # an untrusted client sees a verification failure, not SIP
        with pytest.raises(ssl.SSLCertVerificationError):
            await probe(port, tmp_path / "sip.crt", 4)
    finally:
        await daemon.stop()


def test_tls_needs_its_files() -> None:
    with pytest.raises(ValueError, match="cert_file and key_file"):
        VoxdConfig.model_validate({"sip": {"tls": {"enabled": True}}})
