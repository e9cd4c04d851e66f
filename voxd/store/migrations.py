"""Schema migrations, applied in order at start-up.

Each migration moves the database from ``version - 1`` to ``version``. Append new
ones at the end; never edit one that has shipped. ``tests/store/test_migrations.py``
builds a database at every earlier version and upgrades it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Migration:
    """``statements`` are written for SQLite; the PostgreSQL store runs them translated
    (``voxd.store.sql.pg_ddl``: types, identity columns) unless ``pg`` gives its own."""

    version: int
    name: str
    statements: tuple[str, ...]
    pg: tuple[str, ...] | None = None


# the tables whose rows belong to one organisation (migration 8 adds their ``org`` column)
ORG_TABLES = ("api_keys", "calls", "conversations", "function_executions", "agent_changes", "calendar_events",
              "webhook_endpoints", "webhook_messages")

MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "calls, turns, tool calls and DTMF",
        (
            """CREATE TABLE calls (
                id TEXT PRIMARY KEY,
                agent TEXT NOT NULL,
                agent_version TEXT NOT NULL,
                transport TEXT NOT NULL,
                from_uri TEXT NOT NULL DEFAULT '',
                to_uri TEXT NOT NULL DEFAULT '',
                direction TEXT NOT NULL,
                status TEXT NOT NULL,
                started_at REAL NOT NULL,
                answered_at REAL,
                ended_at REAL,
                end_reason TEXT,
                ended_by TEXT,
                interruptions INTEGER NOT NULL DEFAULT 0,
                metadata TEXT NOT NULL DEFAULT '{}'
            )""",
            "CREATE INDEX calls_started ON calls (started_at DESC, id DESC)",
            "CREATE INDEX calls_agent ON calls (agent, started_at DESC)",
            "CREATE INDEX calls_status ON calls (status, started_at DESC)",
            """CREATE TABLE turns (
                call_id TEXT NOT NULL REFERENCES calls (id) ON DELETE CASCADE,
                idx INTEGER NOT NULL,
                speaker TEXT NOT NULL,
                text TEXT NOT NULL,
                started_at REAL NOT NULL,
                ended_at REAL,
                interrupted INTEGER NOT NULL DEFAULT 0,
                heard_text TEXT,
                source TEXT NOT NULL,
                latency TEXT,
                barge_in_ms REAL,
                PRIMARY KEY (call_id, idx)
            )""",
            """CREATE TABLE tool_calls (
                call_id TEXT NOT NULL REFERENCES calls (id) ON DELETE CASCADE,
                turn_idx INTEGER NOT NULL,
                seq INTEGER NOT NULL,
                name TEXT NOT NULL,
                arguments TEXT NOT NULL,
                result TEXT,
                error TEXT,
                started_at REAL NOT NULL,
                duration_ms REAL NOT NULL,
                PRIMARY KEY (call_id, turn_idx, seq)
            )""",
            """CREATE TABLE dtmf (
                call_id TEXT NOT NULL REFERENCES calls (id) ON DELETE CASCADE,
                seq INTEGER NOT NULL,
                digit TEXT NOT NULL,
                at REAL NOT NULL,
                source TEXT NOT NULL,
                PRIMARY KEY (call_id, seq)
            )""",
        ),
    ),
    Migration(
        2,
        "API keys and usage",
        (
            """CREATE TABLE api_keys (
                id TEXT PRIMARY KEY,
                name TEXT NOT NULL,
                prefix TEXT NOT NULL,
                hash TEXT NOT NULL UNIQUE,
                scopes TEXT NOT NULL,
                created_by TEXT NOT NULL,
                created_at REAL NOT NULL,
                expires_at REAL,
                revoked_at REAL,
                last_used_at REAL,
                rate_limit_per_minute INTEGER,
                quota_per_day INTEGER,
                quota_per_month INTEGER
            )""",
            """CREATE TABLE key_usage (
                key_id TEXT NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
                day TEXT NOT NULL,
                endpoint TEXT NOT NULL,
                count INTEGER NOT NULL,
                PRIMARY KEY (key_id, day, endpoint)
            )""",
        ),
    ),
    Migration(
        3,
        "agent change log and custom functions",
        (
            """CREATE TABLE agent_changes (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                agent TEXT NOT NULL,
                version TEXT NOT NULL,
                action TEXT NOT NULL,
                actor TEXT NOT NULL,
                at REAL NOT NULL
            )""",
            "CREATE INDEX agent_changes_agent ON agent_changes (agent, id DESC)",
            """CREATE TABLE functions (
                name TEXT PRIMARY KEY,
                description TEXT NOT NULL,
                parameters TEXT NOT NULL,
                http TEXT NOT NULL,
                created_by TEXT NOT NULL,
                created_at REAL NOT NULL,
                updated_at REAL NOT NULL
            )""",
            """CREATE TABLE function_executions (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                name TEXT NOT NULL,
                arguments TEXT NOT NULL,
                result TEXT,
                error TEXT,
                duration_ms REAL NOT NULL,
                actor TEXT NOT NULL,
                at REAL NOT NULL
            )""",
            "CREATE INDEX function_executions_name ON function_executions (name, id DESC)",
        ),
    ),
    Migration(
        4,
        "in-call function executions and voxd's own calendar",
        (
            "ALTER TABLE function_executions ADD COLUMN call_id TEXT",
            "ALTER TABLE function_executions ADD COLUMN turn_idx INTEGER",
            "CREATE INDEX function_executions_call ON function_executions (call_id, id)",
            """CREATE TABLE calendar_events (
                uid TEXT PRIMARY KEY,
                agent TEXT NOT NULL DEFAULT '',
                call_id TEXT,
                summary TEXT NOT NULL,
                description TEXT NOT NULL DEFAULT '',
                location TEXT NOT NULL DEFAULT '',
                starts_at TEXT NOT NULL,
                ends_at TEXT NOT NULL,
                attendee TEXT,
                created_at REAL NOT NULL
            )""",
            "CREATE INDEX calendar_events_start ON calendar_events (starts_at)",
        ),
    ),
    Migration(
        5,
        "webhook endpoints, outbox, deliveries and attempts",
        (
            """CREATE TABLE webhook_endpoints (
                id TEXT PRIMARY KEY,
                url TEXT NOT NULL,
                description TEXT NOT NULL DEFAULT '',
                events TEXT NOT NULL,
                agents TEXT,
                enabled INTEGER NOT NULL DEFAULT 1,
                secret TEXT NOT NULL,
                previous_secret TEXT,
                previous_secret_until REAL,
                headers TEXT NOT NULL DEFAULT '{}',
                timeout_s REAL,
                retry_schedule TEXT,
                health TEXT NOT NULL DEFAULT 'healthy',
                consecutive_failures INTEGER NOT NULL DEFAULT 0,
                disabled_reason TEXT,
                created_by TEXT NOT NULL,
                created_at REAL NOT NULL,
                updated_at REAL NOT NULL
            )""",
            """CREATE TABLE webhook_messages (
                id TEXT PRIMARY KEY,
                type TEXT NOT NULL,
                agent TEXT,
                call_id TEXT,
                payload TEXT NOT NULL,
                created_at REAL NOT NULL
            )""",
            "CREATE INDEX webhook_messages_created ON webhook_messages (created_at)",
            """CREATE TABLE webhook_deliveries (
                id TEXT PRIMARY KEY,
                endpoint_id TEXT NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
                message_id TEXT NOT NULL REFERENCES webhook_messages (id),
                status TEXT NOT NULL,
                attempts INTEGER NOT NULL DEFAULT 0,
                next_attempt_at REAL,
                trigger TEXT NOT NULL DEFAULT 'event',
                last_status_code INTEGER,
                last_error TEXT,
                created_at REAL NOT NULL,
                updated_at REAL NOT NULL
            )""",
            "CREATE INDEX webhook_deliveries_due ON webhook_deliveries (status, next_attempt_at)",
            "CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (endpoint_id, created_at DESC)",
            """CREATE TABLE webhook_attempts (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                delivery_id TEXT NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
                attempt INTEGER NOT NULL,
                at REAL NOT NULL,
                status_code INTEGER,
                latency_ms REAL NOT NULL,
                response_excerpt TEXT,
                error TEXT
            )""",
            "CREATE INDEX webhook_attempts_delivery ON webhook_attempts (delivery_id, id)",
        ),
    ),
    Migration(
        6,
        "webhook deliveries due per endpoint",
        (
            "CREATE INDEX webhook_deliveries_endpoint_due ON webhook_deliveries "
            "(endpoint_id, status, next_attempt_at)",
        ),
    ),
    Migration(
        7,
        "text conversations and their turns",
        (
            """CREATE TABLE conversations (
                id TEXT PRIMARY KEY,
                agent TEXT NOT NULL,
                agent_version TEXT NOT NULL,
                channel TEXT NOT NULL,
                status TEXT NOT NULL,
                started_at REAL NOT NULL,
                ended_at REAL,
                end_reason TEXT,
                ended_by TEXT,
                metadata TEXT NOT NULL DEFAULT '{}'
            )""",
            "CREATE INDEX conversations_started ON conversations (started_at DESC, id DESC)",
            "CREATE INDEX conversations_agent ON conversations (agent, started_at DESC)",
            """CREATE TABLE conversation_turns (
                conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
                idx INTEGER NOT NULL,
                speaker TEXT NOT NULL,
                text TEXT NOT NULL,
                source TEXT NOT NULL,
                started_at REAL NOT NULL,
                ended_at REAL,
                latency TEXT,
                tool_calls TEXT NOT NULL DEFAULT '[]',
                PRIMARY KEY (conversation_id, idx)
            )""",
        ),
    ),
    Migration(
        8,
        "organisations (everything existing in 'default'), users, sign-in tokens, audit log",
        (
            """CREATE TABLE orgs (
                id TEXT PRIMARY KEY,
                created_at REAL NOT NULL
            )""",
            "INSERT INTO orgs (id, created_at) VALUES ('default', strftime('%s', 'now'))",
            *(f"ALTER TABLE {t} ADD COLUMN org TEXT NOT NULL DEFAULT 'default'" for t in ORG_TABLES),
            *(f"CREATE INDEX {t}_org ON {t} (org)" for t in ORG_TABLES),
            # custom function names are unique per organisation, not across them
            """CREATE TABLE functions_v8 (
                org TEXT NOT NULL DEFAULT 'default',
                name TEXT NOT NULL,
                description TEXT NOT NULL,
                parameters TEXT NOT NULL,
                http TEXT NOT NULL,
                created_by TEXT NOT NULL,
                created_at REAL NOT NULL,
                updated_at REAL NOT NULL,
                PRIMARY KEY (org, name)
            )""",
            "INSERT INTO functions_v8 (org, name, description, parameters, http, created_by, created_at, "
            "updated_at) SELECT 'default', name, description, parameters, http, created_by, created_at, "
            "updated_at FROM functions",
            "DROP TABLE functions",
            "ALTER TABLE functions_v8 RENAME TO functions",
            """CREATE TABLE users (
                id TEXT PRIMARY KEY,
                email TEXT NOT NULL UNIQUE,
                password_hash TEXT,
                created_at REAL NOT NULL,
                failed_logins INTEGER NOT NULL DEFAULT 0,
                locked_until REAL,
                disabled_at REAL
            )""",
            """CREATE TABLE memberships (
                user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
                org TEXT NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
                role TEXT NOT NULL,
                created_at REAL NOT NULL,
                PRIMARY KEY (user_id, org)
            )""",
            """CREATE TABLE user_tokens (
                hash TEXT PRIMARY KEY,
                kind TEXT NOT NULL,
                org TEXT NOT NULL,
                email TEXT NOT NULL,
                role TEXT,
                created_by TEXT NOT NULL,
                created_at REAL NOT NULL,
                expires_at REAL NOT NULL,
                used_at REAL
            )""",
            """CREATE TABLE refresh_tokens (
                hash TEXT PRIMARY KEY,
                family TEXT NOT NULL,
                user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
                org TEXT NOT NULL,
                created_at REAL NOT NULL,
                expires_at REAL NOT NULL,
                rotated_at REAL,
                revoked_at REAL
            )""",
            "CREATE INDEX refresh_tokens_family ON refresh_tokens (family)",
            """CREATE TABLE audit_log (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                at REAL NOT NULL,
                org TEXT NOT NULL,
                actor TEXT NOT NULL,
                ip TEXT,
                action TEXT NOT NULL,
                target TEXT NOT NULL,
                before_hash TEXT,
                after_hash TEXT,
                prev_hash TEXT NOT NULL,
                hash TEXT NOT NULL
            )""",
            "CREATE INDEX audit_log_org ON audit_log (org, seq)",
        ),
    ),
    Migration(
        9,
        "a second factor per user: a TOTP secret (sealed), confirmed once, and its last used time step",
        (
            """CREATE TABLE user_totp (
                user_id TEXT PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
                secret TEXT NOT NULL,
                created_at REAL NOT NULL,
                confirmed_at REAL,
                last_step INTEGER NOT NULL DEFAULT 0
            )""",
        ),
    ),
    Migration(
        10,
        "limits per organisation (API requests per minute, calls concurrent and per day)",
        ("ALTER TABLE orgs ADD COLUMN limits TEXT NOT NULL DEFAULT '{}'",),
    ),
    Migration(
        11,
        "per-call variables on call and conversation records",
        ("ALTER TABLE calls ADD COLUMN variables TEXT NOT NULL DEFAULT '{}'",
         "ALTER TABLE conversations ADD COLUMN variables TEXT NOT NULL DEFAULT '{}'"),
    ),
    Migration(
        12,
        "post-call analysis: the analysis of a call (and its indexed headline), durable analysis jobs",
        (
            "ALTER TABLE calls ADD COLUMN analysis TEXT",
            "ALTER TABLE calls ADD COLUMN outcome TEXT",
            "ALTER TABLE calls ADD COLUMN sentiment REAL",
            "ALTER TABLE calls ADD COLUMN mos REAL",
            "CREATE INDEX calls_org_outcome ON calls (org, outcome)",
            """CREATE TABLE analysis_jobs (
                call_id TEXT PRIMARY KEY,
                org TEXT NOT NULL DEFAULT 'default',
                status TEXT NOT NULL,
                attempts INTEGER NOT NULL DEFAULT 0,
                next_attempt_at REAL NOT NULL,
                last_error TEXT,
                created_at REAL NOT NULL,
                updated_at REAL NOT NULL
            )""",
            "CREATE INDEX analysis_jobs_due ON analysis_jobs (status, next_attempt_at)",
        ),
    ),
    Migration(
        13,
        "webhook deliveries claimed per attempt by one node",
        (
            "ALTER TABLE webhook_deliveries ADD COLUMN claimed_by TEXT",
            "ALTER TABLE webhook_deliveries ADD COLUMN claimed_until REAL",
        ),
    ),
    Migration(
        14,
        "single sign-on: an organisation's OpenID Connect provider, and the sign-ins under way (state, nonce, PKCE)",
        (
            """CREATE TABLE oidc_providers (
                org TEXT PRIMARY KEY REFERENCES orgs (id) ON DELETE CASCADE,
                issuer TEXT NOT NULL,
                client_id TEXT NOT NULL,
                client_secret TEXT,
                client_secret_name TEXT,
                default_role TEXT NOT NULL,
                allowed_domains TEXT NOT NULL,
                redirect_uri TEXT,
                updated_by TEXT NOT NULL,
                updated_at REAL NOT NULL
            )""",
            """CREATE TABLE oidc_logins (
                state_hash TEXT PRIMARY KEY,
                org TEXT NOT NULL,
                binding_hash TEXT NOT NULL,
                nonce TEXT NOT NULL,
                code_verifier TEXT NOT NULL,
                redirect_uri TEXT NOT NULL,
                created_at REAL NOT NULL,
                expires_at REAL NOT NULL,
                used_at REAL
            )""",
            "CREATE INDEX oidc_logins_expiry ON oidc_logins (expires_at)",
        ),
    ),
    Migration(
        15,
        "compliance: erased calls keep a tombstone, retention per organisation, the audit chain's purged part",
        (
            "ALTER TABLE calls ADD COLUMN erased_at REAL",
            "ALTER TABLE orgs ADD COLUMN retention TEXT NOT NULL DEFAULT '{}'",
            # where verification starts once the oldest rows are purged: the last purged row's seq and hash
            """CREATE TABLE audit_anchor (
                id INTEGER PRIMARY KEY,
                seq INTEGER NOT NULL,
                hash TEXT NOT NULL,
                purged_at REAL NOT NULL
            )""",
            # rows purged after a row still kept (another organisation's): only their links remain
            """CREATE TABLE audit_purged (
                seq INTEGER PRIMARY KEY,
                prev_hash TEXT NOT NULL,
                hash TEXT NOT NULL,
                purged_at REAL NOT NULL
            )""",
        ),
    ),
)
