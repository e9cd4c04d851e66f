"""Outbound rules for tests whose servers (fake vendors, receivers) listen on 127.0.0.1."""

from __future__ import annotations

from voxd.core.egress import EgressPolicy
from voxd.core.secrets import DeclaredSecret, Outbound, SecretBook


def local_outbound(**secrets: str) -> Outbound:
    """Loopback allowed; the vendor secrets may also go to 127.0.0.1 (the fake vendors), and
    each ``name=ENV_VAR`` is declared as a secret for 127.0.0.1."""
    vendors = {n: DeclaredSecret(n, (*s.hosts, "127.0.0.1"), env=s.env) for n, s in SecretBook.vendors().secrets.items()}
    declared = {n: DeclaredSecret(n, ("127.0.0.1",), env=env) for n, env in secrets.items()}
    return Outbound(EgressPolicy.open_to("127.0.0.0/8"), SecretBook({**vendors, **declared}))


LOCAL = local_outbound()
