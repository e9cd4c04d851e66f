"""RFC 3263 with TLS, over real sockets: dnsmasq answers ``_sips._tcp.carrier.test`` with
a closed port first and a TLS carrier second (its SRV target ``edge.carrier.test``);
voxd's `transport: tls` trunk passes over the refused connection and verifies the
carrier's certificate against the configured name ``carrier.test``, which is all the
certificate carries (not the SRV target's name)."""

from __future__ import annotations

import asyncio
import datetime
import shutil
import socket
import ssl
from pathlib import Path

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.daemons import start_daemon, time_agent
from tests.net.test_sip_tls import make_ca
from tests.net.test_sip_tls_out import Carrier, TlsCarrier
from tests.net.test_sip_trunk import poll
from tests.servers import DNSMASQ, dnsmasq
from voxd.api.keys_cli import create_key

pytestmark = pytest.mark.skipif(shutil.which(DNSMASQ) is None, reason="dnsmasq (Debian dnsmasq-base) not installed")


def issue_for(ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey], folder: Path, name: str) -> tuple[Path, Path]:
    ca_cert, ca_key = ca
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca_cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    crt, pem = folder / "carrier.crt", folder / "carrier.key"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
    return crt, pem


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens once it is closed


@pytest.mark.timeout(60)
async def test_tls_trunk_skips_a_refused_target_and_verifies_the_configured_name(tmp_path: Path) -> None:
    ca = make_ca()
    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(ca[0].public_bytes(serialization.Encoding.PEM))
    crt, key = issue_for(ca, tmp_path, "carrier.test")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(str(crt), str(key))
    port, dead = closed_port(), closed_port()
    carrier = Carrier(port)
    server = await asyncio.get_running_loop().create_server(lambda: TlsCarrier(carrier), "127.0.0.1", port,
                                                            ssl=server_ctx)
    records = [
        f"srv-host=_sips._tcp.carrier.test,down.carrier.test,{dead},5,0",
        f"srv-host=_sips._tcp.carrier.test,edge.carrier.test,{port},10,0",
        "host-record=down.carrier.test,127.0.0.1",
        "host-record=edge.carrier.test,127.0.0.1",
    ]
    with dnsmasq(records) as dns_port:
        daemon = await start_daemon(tmp_path, {"front": time_agent()}, sip={
            "port": 0, "rtp_port_min": 33400, "rtp_port_max": 33500, "tls": {"ca_file": str(ca_file)},
            "dns": {"nameservers": [f"127.0.0.1:{dns_port}"]},
            "trunks": [{"name": "carrier", "outbound": {"domain": "carrier.test", "transport": "tls"}}]})
        try:
            api_key = await create_key(daemon.db, "t", ["calls:write", "calls:read"])
            url = f"http://127.0.0.1:{daemon.http_port}/api/v1/calls"
            async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {api_key}"}) as http:
                async with http.post(url, json={"agent": "front", "to": "+15551234567", "trunk": "carrier"}) as r:
                    assert r.status == 202, await r.text()
                    call_id = (await r.json())["id"]

                async def ringing() -> bool:
                    return bool(carrier.invites)

                await poll(ringing)
                invite = carrier.messages[0].decode()
                assert invite.startswith("INVITE sip:+15551234567@carrier.test;user=phone;transport=tls SIP/2.0")
                assert "Via: SIP/2.0/TLS " in invite
                async with http.get(f"{url}/{call_id}") as r:
                    meta = (await r.json())["metadata"]
                assert meta["sip_failover"].startswith(f"127.0.0.1:{dead}/tls unreachable")
                assert daemon.sip is not None
                conn = daemon.sip.tcp_peers.get(("127.0.0.1", port))
                assert conn is not None and conn.tls and "carrier.test" in conn.tls_names and "edge.carrier.test" not in conn.tls_names
                async with http.post(f"{url}/{call_id}/end") as r:
                    assert r.status == 202
        finally:
            await daemon.stop()
            server.close()
