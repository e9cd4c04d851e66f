"""Daemon configuration (`config/voxd.yaml`): validated, frozen, with defaults a
newcomer can rely on. Every field is optional; an empty file is a valid config."""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from ruamel.yaml import YAML

from voxd.config.cluster import RedisConfig, StoreConfig
from voxd.config.local_llm import LocalLLMConfig
from voxd.config.redaction import RedactionConfig
from voxd.config.sip import (
    RegistrationConfig,
    SessionTimerConfig,
    SipDnsConfig,
    SipTlsConfig,
    SipTraceConfig,
    SrtpPolicy,
    TrunkOutboundConfig,
    codec_list,
)
from voxd.config.tools import ToolsConfig
from voxd.core.egress import AllowRule, EgressPolicy
from voxd.core.secrets import VENDOR_SECRETS, DeclaredSecret, Outbound, SecretBook

_ORG_ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")  # as voxd.agents.orgs.ORG_ID_RE


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class HttpConfig(_Model):
    host: str = Field("127.0.0.1", description="Control API, /healthz, websocket media and WebRTC signalling.")
    port: int = Field(8080, ge=0, le=65535)
    enabled: bool = True
    public_url: str | None = Field(
        None,
        description="scheme://host callers and Twilio use to reach this server behind a proxy "
        "(e.g. https://voice.example.com); default: the request's Host and X-Forwarded-* headers. "
        "$VOXD_PUBLIC_URL overrides.",
    )

    max_connections: int = Field(512, ge=0, description="Open HTTP connections in total (websockets included); beyond: 503 and close. 0: no cap.")
    max_connections_per_source: int = Field(
        64, ge=0, description="Open connections from one address (behind a reverse proxy: the proxy's); beyond: 503. 0: no cap.")
    header_timeout_s: float = Field(10.0, gt=0, le=300, description="A new connection must complete its request head within this (slowloris).")
    keepalive_timeout_s: float = Field(15.0, gt=0, le=3600, description="An idle kept-alive connection is closed after this; a next request head must complete within it.")
    body_timeout_s: float = Field(30.0, gt=0, le=3600, description="A request body that sends nothing for this long ends the connection.")
    access_log: bool = Field(True, description="One structured line per HTTP request on logger voxd.access "
                             "(method, path, masked query, status, size, time, client, principal; no header values).")
    media_unauthenticated: bool = Field(
        False,
        description="Let /media/voxd and /media/twilio take calls without an API key or token (they count "
                    "against calls.unauthenticated_*). Only for a listener bound to loopback.")

    @model_validator(mode="after")
    def _anonymous_media_on_loopback_only(self) -> HttpConfig:
        if self.media_unauthenticated and not _is_loopback(self.host):
            raise ValueError(f"media_unauthenticated needs a loopback http.host (127.0.0.1, ::1), not {self.host!r}: "
                             "callers elsewhere must send an API key or a web token")
        return self

    @field_validator("public_url")
    @classmethod
    def _scheme_and_host(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"https?://[^/\s]+/?", v):
            raise ValueError("expected scheme://host[:port], e.g. https://voice.example.com")
        return v


class IceServerConfig(_Model):
    """A STUN or TURN server the browser and voxd use to find a path through NAT."""

    urls: str | list[str] = Field(description="stun:host:3478 or turn:host:3478?transport=udp (one or a list).")
    username: str | None = None
    credential_env: str | None = Field(
        None, description="Environment variable holding the TURN credential (never the credential itself)."
    )

    def resolved(self) -> dict[str, Any]:
        """As RTCPeerConnection takes it: {"urls", "username", "credential"}."""
        out: dict[str, Any] = {"urls": self.urls}
        if self.username is not None:
            out["username"] = self.username
        if self.credential_env:
            out["credential"] = os.environ.get(self.credential_env, "")
        return out


class WebRtcConfig(_Model):
    enabled: bool = Field(True, description="POST /webrtc/offer and the /talk/<agent> playground.")
    hosts: list[str] | None = Field(
        None,
        description="Addresses offered as ICE host candidates. Default: the HTTP listener's address "
        "(every interface when it listens on 0.0.0.0 or ::). $VOXD_WEBRTC_HOSTS overrides.",
    )
    ice_servers: list[IceServerConfig] = Field(
        default_factory=list,
        description="STUN/TURN servers for deployments behind NAT. None by default: no outside server is contacted.",
    )


class TwilioConfig(_Model):
    enabled: bool = Field(True, description="GET /media/twilio (Media Streams) and /twiml/<agent>.")
    auth_token_env: str = Field(
        "VOXD_TWILIO_AUTH_TOKEN",
        description="Environment variable holding the Twilio auth token. When it is set, /twiml checks "
        "X-Twilio-Signature and /media/twilio only takes streams carrying the token /twiml minted.",
    )

    api_base_url: str = Field(
        "https://api.twilio.com", pattern=r"^https?://[^/?#@]+$",
        description="Twilio's REST API. With the auth token set, transfer_call on a Twilio call updates the "
        "call with <Dial> TwiML there (egress use: providers).")

    def auth_token(self) -> str:
        return os.environ.get(self.auth_token_env, "") if self.auth_token_env else ""


class TrunkConfig(_Model):
    """Who may call in. A request is accepted if it matches any trunk (or if no
    trunks are configured at all, in which case only loopback callers are accepted
    unless sip.allow_any is set)."""

    name: str
    allow: list[str] = Field(default_factory=list, description="Source networks (CIDR), e.g. 203.0.113.0/24.")
    username: str | None = Field(None, description="Digest authentication user for this trunk.")
    password_env: str | None = Field(None, description="Environment variable holding the digest password.")
    realm: str = "voxd"
    algorithms: tuple[Literal["SHA-256", "MD5"], ...] = Field(
        ("SHA-256", "MD5"),
        description="Digest algorithms offered, strongest first (RFC 8760); some clients only read the first.")
    outbound: TrunkOutboundConfig | None = Field(
        None, description="Calls placed through this trunk (voxd/config/sip.py). A trunk with outbound and "
        "neither allow nor username is outbound-only: it admits no inbound calls.")
    srtp: SrtpPolicy | None = Field(
        None, description="SRTP (SDES) for this trunk's calls, both ways: off, optional (when the peer offers "
        "or accepts a=crypto) or required (never cleartext media: an offer without crypto gets 488). "
        "Default: sip.srtp.")
    codecs: list[str] | None = Field(
        None, description="Codec preference for this trunk's calls, both ways, best first: PCMU, PCMA, G722 "
        "(16 kHz wideband), opus (RFC 7587), e.g. [opus, G722, PCMU, PCMA]. Default: sip.codecs.")
    options_interval_s: float = Field(
        0.0, ge=0, le=3600, description="Send an OPTIONS keepalive to the trunk's proxy (or domain) this often "
        "and report its health (GET /api/v1/sip/trunks, voxd_sip_trunk_up); 0: never. Needs `outbound`.")
    orgs: tuple[str, ...] = Field(
        ("default",), description="Organisations whose API keys may place calls through this trunk "
        "(`POST /api/v1/calls` with `trunk`); to any other it does not exist (404). Default: only `default`.")

    @field_validator("orgs", mode="before")
    @classmethod
    def _org_names(cls, v: Any) -> Any:
        if not isinstance(v, list | tuple) or not all(isinstance(o, str) for o in v):
            raise ValueError("orgs must be a list of organisation names, e.g. [default, acme]")
        bad = [o for o in v if not _ORG_ID_RE.match(o) or o == "tests"]
        if bad:
            raise ValueError(f"not an organisation name: {', '.join(map(repr, bad))} "
                             "(lowercase letters, digits and '-', at most 63)")
        return tuple(v)

    @field_validator("codecs")
    @classmethod
    def _codecs(cls, v: list[str] | None) -> list[str] | None:
        return None if v is None else codec_list(v, "codecs")

    @property
    def outbound_only(self) -> bool:
        return self.outbound is not None and not self.allow and not self.username


class SipListenConfig(_Model):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(5080, ge=0, le=65535, description="5060 under systemd.")
    tcp: bool = Field(True, description="Also listen on TCP.")
    public_host: str | None = Field(None, description="Address put in SDP/Contact (default: host).")
    rtp_port_min: int = Field(20000, ge=1024, le=65535)
    rtp_port_max: int = Field(20999, ge=1024, le=65535)
    max_calls: int = Field(200, ge=1, description="Concurrent calls in total; beyond: 503.")
    max_calls_per_source: int = Field(50, ge=1, description="Concurrent calls from one source address; beyond: 503.")
    ring_ms: int = Field(0, ge=0, le=60000, description="Ring (180) this long before answering.")
    early_media: bool = Field(
        False, description="While ringing (ring_ms): 183 Session Progress with SDP instead of 180, and the agent starts "
        "at once, so its greeting plays as early media (an announcement before the answer, RFC 3960).")
    rtp_timeout_s: float = Field(
        30.0, ge=0, le=3600,
        description="End a call (BYE, end reason media_timeout) after this long without RTP from the caller "
                    "while not on hold; 0: never.")
    tcp_max_connections: int = Field(1024, ge=1, description="SIP-over-TCP connections in total; beyond: refused.")
    tcp_max_per_source: int = Field(32, ge=1, description="SIP-over-TCP connections from one address; beyond: refused.")
    tcp_idle_s: float = Field(
        120.0, ge=1, le=86400,
        description="Close a SIP-over-TCP connection silent this long that carries no call "
                    "(keep-alive CRLFs count as traffic).")
    codecs: list[str] = Field(
        default_factory=lambda: ["PCMU", "PCMA"],
        description="Codec preference, best first, for calls not on a trunk with its own codecs: PCMU, PCMA, "
        "G722, opus. The default is G.711 only; add G722 / opus to offer and accept wideband.")
    hold_audio: str | None = Field(
        None, description="WAV file a caller hears while voxd holds it (an attended transfer's consultation); "
        "default: a soft two-tone pattern every 3 s (voxd/media/hold.py).")
    transfer_ring_s: float = Field(
        30.0, ge=1, le=300, description="Attended transfer: how long the target may ring before the caller "
        "is taken off hold and the agent told it did not answer.")
    trunks: list[TrunkConfig] = Field(default_factory=list)
    allow_any: bool = Field(False, description="Accept calls from any source when no trunk is configured.")
    srtp: SrtpPolicy = Field(
        "optional", description="SRTP (SDES, RFC 4568) for calls not on a trunk with its own srtp: off, "
        "optional or required (voxd/proto/secure_sdp.py).")
    tls: SipTlsConfig = Field(default_factory=lambda: SipTlsConfig(), description="SIP over TLS listener (voxd/net/sip_tls.py).")
    registrations: list[RegistrationConfig] = Field(
        default_factory=list, description="Registrars voxd registers with (RFC 3261 §10); calls to each AOR "
        "from its registrar go to the registration's agent.")
    session_timers: SessionTimerConfig = Field(default_factory=lambda: SessionTimerConfig(),
                                               description="RFC 4028 session timers (voxd/proto/sip/session_timer.py).")
    trace: SipTraceConfig = Field(default_factory=lambda: SipTraceConfig(),
                                  description="Per-call SIP traces (voxd/net/sip_trace.py).")
    dns: SipDnsConfig = Field(default_factory=lambda: SipDnsConfig(),
                              description="RFC 3263 resolution of trunk and registrar host names (voxd/net/sip_dns.py).")

    @field_validator("codecs")
    @classmethod
    def _codecs(cls, v: list[str]) -> list[str]:
        return codec_list(v, "codecs")

    def codecs_for(self, trunk: TrunkConfig | None) -> list[str]:
        """The codec preference of a call on ``trunk`` (None: no trunk)."""
        return trunk.codecs if trunk is not None and trunk.codecs is not None else self.codecs

    @model_validator(mode="after")
    def _unique_names(self) -> SipListenConfig:
        for what, names in (("trunks", [t.name for t in self.trunks]),
                            ("registrations", [r.name for r in self.registrations])):
            dup = sorted({n for n in names if names.count(n) > 1})
            if dup:
                raise ValueError(f"sip.{what}: names must be unique ({', '.join(dup)})")
        return self


class CallLimits(_Model):
    """Admission beyond sip.max_calls (the daemon-wide cap, whatever the transport)."""

    transport_shares: dict[str, float] = Field(
        default_factory=lambda: {"sip": 1.0, "twilio": 0.75, "webrtc": 0.5, "websocket": 0.5},
        description="Fraction of sip.max_calls each transport may hold, so one cannot starve the others "
                    "(a transport not named: 0.5).")
    unauthenticated_max_calls: int = Field(
        20, ge=0, description="Calls nobody authenticated (media endpoints opened to loopback clients without "
                              "a key), in total; beyond: refused.")
    unauthenticated_per_source: int = Field(4, ge=0, description="... from one address.")

    @field_validator("transport_shares")
    @classmethod
    def _fractions(cls, v: dict[str, float]) -> dict[str, float]:
        for name, share in v.items():
            if not 0 <= share <= 1:
                raise ValueError(f"transport_shares.{name}: a fraction from 0 to 1")
        return v

    def admission_args(self) -> dict[str, Any]:
        return {"shares": self.transport_shares, "unauthenticated_max_calls": self.unauthenticated_max_calls,
                "unauthenticated_per_source": self.unauthenticated_per_source}


class ApiLimits(_Model):
    """Control-API rate limits (token buckets) and request size limits."""

    per_key_per_minute: int = Field(600, ge=1, description="Requests per key (a key's own limit wins).")
    per_ip_per_minute: int = Field(60, ge=1, description="Requests without a valid key, per client IP.")
    failed_auth_per_5min: int = Field(10, ge=1, description="Failed authentications per client IP before it is throttled.")
    read_per_minute: int = Field(1200, ge=1)
    write_per_minute: int = Field(120, ge=1)
    execute_per_minute: int = Field(60, ge=1)
    max_body_bytes: int = Field(256 * 1024, ge=1024)
    max_json_depth: int = Field(64, ge=4, le=512, description="Nested objects/arrays in a JSON body; deeper: 400.")
    trust_forwarded_for: bool = Field(False, description="Behind a reverse proxy: use X-Forwarded-For's first hop.")


class EnginesConfig(_Model):
    inference_threads: int = Field(2, ge=1, le=64, description="Worker threads shared by all model inference.")
    silero_confirm: bool = Field(True, description="Confirm webrtcvad onsets with Silero.")
    vad_aggressiveness: int = Field(2, ge=0, le=3, description="webrtcvad mode for the first stage (Silero confirms onsets).")
    preload: bool = Field(True, description="Load models at start-up instead of on the first call.")


class AnalysisSettings(_Model):
    """The post-call analysis worker (what each agent extracts is in its `analysis:` block)."""

    retry_schedule_s: list[float] = Field(
        default_factory=lambda: [5.0, 30.0, 120.0, 600.0], min_length=1, max_length=20,
        description="Delay before each retry of a failed analysis; the last attempt analyses without the model "
                    "(dialog slots, template summary) and keeps the model's error.")


class WebhooksConfig(_Model):
    allow_private_destinations: bool = Field(
        False, description="Allow endpoints on private, loopback and link-local addresses "
        "(also: env VOXD_WEBHOOKS_ALLOW_PRIVATE_DESTINATIONS=1).")
    retry_schedule_s: list[float] = Field(
        default_factory=lambda: [1.0, 5.0, 15.0, 60.0, 300.0, 1800.0, 7200.0], min_length=0, max_length=50,
        description="Delay before each retry; after the last one a delivery is marked failed. Endpoints may override.")
    retry_jitter: float = Field(0.1, ge=0, le=1, description="Each delay is scaled by a random factor in [1-j, 1+j].")
    concurrency_per_endpoint: int = Field(4, ge=1, le=256, description="Requests in flight to one endpoint.")
    timeout_s: float = Field(10.0, gt=0, le=120, description="Per request, unless the endpoint sets its own.")
    response_excerpt_bytes: int = Field(2048, ge=0, le=65536, description="How much of each response body is read and logged.")
    failing_after: int = Field(5, ge=1, description="Consecutive failed attempts before an endpoint is marked failing.")


class EgressRuleConfig(_Model):
    """Non-public destinations one kind of request may reach anyway (a CRM on the LAN, a
    local LLM server). Every part given must match; give hosts, networks or both."""

    hosts: list[str] = Field(default_factory=list, description="Host names (crm.office.lan) or globs (*.office.lan).")
    networks: list[str] = Field(default_factory=list, description="Addresses they may resolve to, or be (CIDR: 10.1.2.0/24, 127.0.0.1/32).")
    ports: list[int] = Field(default_factory=list, description="Ports allowed (default: any).")
    uses: list[Literal["webhooks", "functions", "providers", "tools", "lookups", "sso"]] = Field(
        default_factory=list, description="Which requests: webhooks, functions (HTTP functions), providers "
        "(hosted engines' base_url), tools (built-ins such as get_weather), lookups (agents' inbound_lookup), "
        "sso (an organisation's OpenID Connect provider). Default: all.")

    @field_validator("networks")
    @classmethod
    def _cidr(cls, v: list[str]) -> list[str]:
        for n in v:
            try:
                ipaddress.ip_network(n, strict=False)
            except ValueError:
                raise ValueError(f"{n!r} is not a network (e.g. 10.1.2.0/24)") from None
        return v

    @model_validator(mode="after")
    def _something(self) -> EgressRuleConfig:
        if not (self.hosts or self.networks):
            raise ValueError("an egress rule needs hosts, networks or both")
        return self

    def rule(self) -> AllowRule:
        return AllowRule(tuple(h.lower() for h in self.hosts),
                         tuple(ipaddress.ip_network(n, strict=False) for n in self.networks),
                         tuple(self.ports), tuple(self.uses))


class EgressConfig(_Model):
    """Where voxd may send requests on an agent's or API client's behalf: webhooks, HTTP
    functions, get_weather, hosted engines. Public addresses only, unless a rule allows more."""

    allow: list[EgressRuleConfig] = Field(default_factory=list, description="Exceptions for private destinations; none by default.")
    max_redirects: int = Field(0, ge=0, le=10, description="Redirects followed (each checked again); 0: none.")


class SecretConfig(_Model):
    """A secret agents may name (api_key_secret, ${name} in HTTP function headers), and the
    only hosts it is ever sent to."""

    env: str | None = Field(None, description="Environment variable holding it (its NAME).")
    file: str | None = Field(None, description="File holding it (a mounted secret, a systemd credential).")
    hosts: list[str] = Field(min_length=1, description="Host names (or *.example.com globs) it may be sent to.")

    @model_validator(mode="after")
    def _one_source(self) -> SecretConfig:
        if (self.env is None) == (self.file is None):
            raise ValueError("a secret needs exactly one of env or file")
        if self.env is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", self.env):
            raise ValueError("env must be the NAME of an environment variable, not its value")
        return self


class RecordingsConfig(_Model):
    """Where call recordings are kept (agents turn recording on: `recording:` in agent YAML)."""

    directory: str | None = Field(None, description="Default: <state_dir>/recordings")
    sweep_interval_s: float = Field(3600.0, gt=0, description="How often expired recordings are deleted (retention_days).")
    org_retention_interval_s: float = Field(3600.0, gt=0, description="How often each organisation's retention "
                                            "(`voxd orgs retention`) purges transcripts, recordings, function logs and audit rows.")
    org_retention_batch: int = Field(500, ge=1, le=100_000, description="At most this many of each kind per "
                                     "organisation and run.")


def _vendor_secrets() -> dict[str, SecretConfig]:
    return {n: SecretConfig(env=env, hosts=list(hosts)) for n, (env, hosts) in VENDOR_SECRETS.items()}


class VoxdConfig(_Model):
    state_dir: str | None = Field(None, description="Default: $VOXD_STATE_DIR, else $STATE_DIRECTORY (systemd), else ./var")
    agents_dir: str = Field("agents", description="Folder of agent YAML files (relative to the config file's parent folder's parent, or absolute).")
    default_agent: str | None = Field(None, description="Agent for calls that name none.")
    database: str | None = Field(None, description="SQLite path; default <state_dir>/voxd.db")
    store: StoreConfig = Field(default_factory=lambda: StoreConfig(),
                               description="The database: SQLite (default) or PostgreSQL shared by several nodes.")
    redis: RedisConfig = Field(default_factory=lambda: RedisConfig())
    http: HttpConfig = Field(default_factory=lambda: HttpConfig())
    api: ApiLimits = Field(default_factory=lambda: ApiLimits())
    sip: SipListenConfig = Field(default_factory=lambda: SipListenConfig())
    calls: CallLimits = Field(default_factory=lambda: CallLimits())
    engines: EnginesConfig = Field(default_factory=lambda: EnginesConfig())
    local_llm: LocalLLMConfig = Field(
        default_factory=lambda: LocalLLMConfig(),
        description="Packaged local models (llm engine 'local'): models folder, threads, context, slots.")
    webhooks: WebhooksConfig = Field(default_factory=lambda: WebhooksConfig())
    analysis: AnalysisSettings = Field(default_factory=lambda: AnalysisSettings())
    recordings: RecordingsConfig = Field(default_factory=lambda: RecordingsConfig())
    redaction: RedactionConfig = Field(
        default_factory=lambda: RedactionConfig(),
        description="Personal data (cards, SSNs, emails, phone numbers, own patterns) replaced before anything "
                    "is written (voxd/config/redaction.py).")
    webrtc: WebRtcConfig = Field(default_factory=lambda: WebRtcConfig())
    twilio: TwilioConfig = Field(default_factory=lambda: TwilioConfig())
    tools: ToolsConfig = Field(default_factory=lambda: ToolsConfig(), description="Function library settings (weather, email, calendar, plugins, knowledge bases).")
    egress: EgressConfig = Field(default_factory=lambda: EgressConfig())
    secrets: dict[str, SecretConfig] = Field(
        default_factory=_vendor_secrets,
        description="Secrets agents may name, each bound to its hosts. openai, deepgram and elevenlabs are "
        "declared (their usual variables, their vendors' API hosts) unless overridden here or set to null.")
    log_level: str = Field("INFO", description="Root log level; per-module levels in log_levels.")
    log_levels: dict[str, str] = Field(default_factory=dict)
    reload_interval_s: float = Field(1.0, gt=0, description="How often agent files are checked for changes.")
    drain_timeout_s: float = Field(30.0, ge=0, description="On SIGTERM, how long active calls may go on before being closed.")
    drain_message: str = Field(
        "Sorry, this line is closing now. Please call again in a moment. Goodbye.",
        description="Said to calls still active when the drain timeout ends.",
    )

    @field_validator("secrets", mode="before")
    @classmethod
    def _with_vendors(cls, v: Any) -> Any:
        if not isinstance(v, dict):
            return v
        merged = {**_vendor_secrets(), **v}
        return {k: x for k, x in merged.items() if x is not None}

    @field_validator("secrets")
    @classmethod
    def _names(cls, v: dict[str, SecretConfig]) -> dict[str, SecretConfig]:
        for name in v:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,63}", name):
                raise ValueError(f"secret name {name!r}: letters, digits and _ only")
        return v

    def outbound(self) -> Outbound:
        """The egress policy and the declared secrets, as the daemon's parts use them."""
        private_ok = frozenset({"webhooks"}) if _webhooks_private(self.webhooks) else frozenset()
        policy = EgressPolicy(tuple(r.rule() for r in self.egress.allow), private_ok, self.egress.max_redirects)
        book = SecretBook({n: DeclaredSecret(n, tuple(s.hosts), s.env, s.file) for n, s in self.secrets.items()})
        return Outbound(policy, book)

    def resolved_state_dir(self) -> Path:
        return resolve_state_dir(self.state_dir)

    def resolved_database(self) -> Path:
        return Path(self.database) if self.database else self.resolved_state_dir() / "voxd.db"

    def resolved_recordings(self) -> Path:
        d = self.recordings.directory
        return Path(d) if d else self.resolved_state_dir() / "recordings"


def _webhooks_private(cfg: WebhooksConfig) -> bool:
    return cfg.allow_private_destinations or os.environ.get(WEBHOOKS_PRIVATE_ENV, "") in ("1", "true", "yes")


WEBHOOKS_PRIVATE_ENV = "VOXD_WEBHOOKS_ALLOW_PRIVATE_DESTINATIONS"


def resolve_state_dir(configured: str | None = None) -> Path:
    for candidate in (os.environ.get("VOXD_STATE_DIR"), configured, os.environ.get("STATE_DIRECTORY")):
        if candidate:
            return Path(candidate.split(":")[0])
    return Path("var")


class ConfigError(Exception):
    pass


def load_config(path: str | Path | None) -> tuple[VoxdConfig, Path]:
    """Returns the config and the base folder relative paths are resolved against."""
    if path is None:
        return VoxdConfig(), Path.cwd()
    p = Path(path)
    try:
        data: Any = YAML(typ="safe").load(p.read_text(encoding="utf-8")) or {}
    except OSError as e:
        raise ConfigError(f"{p}: cannot read: {e}") from None
    except Exception as e:
        raise ConfigError(f"{p}: YAML: {e}") from None
    try:
        cfg = VoxdConfig.model_validate(data)
    except ValidationError as e:
        lines = [f"{p}: {'.'.join(str(x) for x in err['loc'])}: {err['msg']}" for err in e.errors()]
        raise ConfigError("\n".join(lines)) from None
    base = p.resolve().parent
    if base.name == "config":
        base = base.parent
    return cfg, base
