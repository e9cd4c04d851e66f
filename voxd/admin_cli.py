"""``voxd orgs``, ``voxd users`` and ``voxd audit``: organisations, people and the audit
log, from the command line, on the daemon's database (every change is audited as ``cli``).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TextIO

from voxd.store.repos import Store

ROLES = ("owner", "admin", "developer", "viewer")


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    o = sub.add_parser("orgs", help="organisations (tenants): create, list")
    o.add_argument("--config", "-c")
    osub = o.add_subparsers(dest="orgs_cmd", required=True)
    oc = osub.add_parser("create", help="create an organisation")
    oc.add_argument("name", help="1-63 lowercase letters, digits and '-'")
    osub.add_parser("list", help="list organisations")
    ol = osub.add_parser("limits", help="show or set an organisation's limits (a value of 'none' removes one)")
    ol.add_argument("name")
    for opt in ("--api-requests-per-minute", "--calls-concurrent", "--calls-per-day"):
        ol.add_argument(opt, type=_limit_value, metavar="N|none")
    orr = osub.add_parser("retention", help="show or set how many days an organisation keeps each kind of data "
                          "('none': for ever); the daemon purges older data")
    orr.add_argument("name")
    for opt in ("--transcripts-days", "--recordings-days", "--function-logs-days", "--audit-days"):
        orr.add_argument(opt, type=_limit_value, metavar="DAYS|none")
    oe = osub.add_parser("export", help="everything of one organisation as JSON lines: agents, members, key "
                         "metadata, functions, webhooks, calls with transcripts, conversations, audit log")
    oe.add_argument("name")
    oe.add_argument("--out", "-o", help="write to this file (0600) instead of standard output")
    o.set_defaults(fn=lambda a: _run(a, _orgs))

    u = sub.add_parser("users", help="people who sign in: create, list")
    u.add_argument("--config", "-c")
    usub = u.add_subparsers(dest="users_cmd", required=True)
    uc = usub.add_parser("create", help="create a user (password from a prompt, or stdin when not a terminal)")
    uc.add_argument("--org", required=True)
    uc.add_argument("--email", required=True)
    uc.add_argument("--role", required=True, choices=ROLES)
    ul = usub.add_parser("list", help="users and their roles")
    ul.add_argument("--org")
    ur = usub.add_parser("reset-totp", help="remove a user's second factor (a lost phone); they sign in with "
                         "the password alone and can set up a new one")
    ur.add_argument("--email", required=True)
    u.set_defaults(fn=lambda a: _run(a, _users))

    au = sub.add_parser("audit", help="the audit log: verify its hash chain, export it")
    au.add_argument("--config", "-c")
    ausub = au.add_subparsers(dest="audit_cmd", required=True)
    ausub.add_parser("verify", help="check the hash chain; exit 1 naming the first tampered row")
    ae = ausub.add_parser("export", help="one organisation's rows as JSON lines")
    ae.add_argument("--org", default="default")
    au.set_defaults(fn=lambda a: _run(a, _audit))


def _run(args: argparse.Namespace, fn: Callable[[argparse.Namespace, Store], Awaitable[int]]) -> int:
    from voxd.config import ConfigError, load_config
    from voxd.store.backends import open_store

    try:
        cfg, base = load_config(args.config)
    except ConfigError as e:
        print(e, file=sys.stderr)
        return 2

    args.agents_root = base / cfg.agents_dir  # an absolute agents_dir stays itself

    async def go() -> int:
        db = await open_store(cfg.store.resolved_url(), default_path=cfg.resolved_database(),
                              state_dir=cfg.resolved_state_dir())
        try:
            return await fn(args, db)
        finally:
            await db.close()

    return int(asyncio.run(go()))


async def _orgs(args: argparse.Namespace, db: Store) -> int:
    if args.orgs_cmd == "create":
        try:
            org = await db.orgs().create(args.name)
        except ValueError as e:
            print(f"voxd orgs: {e}", file=sys.stderr)
            return 2
        await db.for_org(org["id"]).audit().append(actor="cli", action="org_create", target=org["id"], after=org)
        print(org["id"])
    elif args.orgs_cmd == "export":
        return await _export(args, db)
    elif args.orgs_cmd == "limits":
        return await _limits(args, db)
    elif args.orgs_cmd == "retention":
        return await _retention(args, db)
    else:
        for org in await db.orgs().list():
            print(json.dumps(org))
    return 0


def _limit_value(text: str) -> int | str:
    if text == "none":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("a whole number, or 'none' to remove the limit") from None


async def _limits(args: argparse.Namespace, db: Store) -> int:
    names = ("api_requests_per_minute", "calls_concurrent", "calls_per_day")
    given = {n: getattr(args, n) for n in names if getattr(args, n) is not None}
    org = await db.orgs().get(args.name)
    if org is None:
        print(f"voxd orgs: no organisation {args.name!r}", file=sys.stderr)
        return 2
    if given:
        before = org["limits"]
        try:
            org = await db.orgs().set_limits(args.name, {n: None if v == "none" else v for n, v in given.items()})
        except ValueError as e:
            print(f"voxd orgs: {e}", file=sys.stderr)
            return 2
        await db.for_org(args.name).audit().append(actor="cli", action="org_limits", target=args.name,
                                                   before=before, after=org["limits"])
    print(json.dumps(org["limits"], sort_keys=True))
    return 0


async def _retention(args: argparse.Namespace, db: Store) -> int:
    from voxd.store.orgs import RETENTION

    given = {n: getattr(args, n) for n in RETENTION if getattr(args, n) is not None}
    days = await db.orgs().retention(args.name)
    if days is None:
        print(f"voxd orgs: no organisation {args.name!r}", file=sys.stderr)
        return 2
    if given:
        before = days
        try:
            days = await db.orgs().set_retention(args.name, {n: None if v == "none" else v
                                                             for n, v in given.items()})
        except ValueError as e:
            print(f"voxd orgs: {e}", file=sys.stderr)
            return 2
        await db.for_org(args.name).audit().append(actor="cli", action="org_retention", target=args.name,
                                                   before=before, after=days)
    print(json.dumps(days, sort_keys=True))
    return 0


async def _export(args: argparse.Namespace, db: Store) -> int:
    from voxd.store.export import org_export

    org = args.name
    if await db.orgs().get(org) is None:
        print(f"voxd orgs: no organisation {org!r}", file=sys.stderr)
        return 2
    out: TextIO
    if args.out:
        fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        out = os.fdopen(fd, "w", encoding="utf-8")
    else:
        out = sys.stdout
    try:
        folder = Path(args.agents_root) / ("" if org == "default" else org)
        for path in sorted(folder.glob("*.yaml")) if folder.is_dir() else []:
            out.write(json.dumps({"kind": "agent_file", "file": path.name, "yaml": path.read_text()}) + "\n")
        async for row in org_export(db, org):
            out.write(json.dumps(row, default=str) + "\n")
    finally:
        if out is not sys.stdout:
            out.close()
    await db.for_org(org).audit().append(actor="cli", action="org_export", target=org)
    return 0


def read_password() -> str:
    if sys.stdin.isatty():
        first = getpass.getpass("password: ")
        if getpass.getpass("again: ") != first:
            raise ValueError("the passwords differ")
        return first
    return sys.stdin.readline().rstrip("\r\n")


async def _users(args: argparse.Namespace, db: Store) -> int:
    if args.users_cmd == "list":
        for row in await db.users().list(args.org):
            print(json.dumps(row))
        return 0
    if args.users_cmd == "reset-totp":
        return await _reset_totp(args.email, db)
    if await db.orgs().get(args.org) is None:
        print(f"voxd users: no organisation {args.org!r}", file=sys.stderr)
        return 2
    try:
        password = read_password()
        if len(password) < 8:
            raise ValueError("a password needs at least 8 characters")
        user = await db.users().create(args.email, password)
    except ValueError as e:
        print(f"voxd users: {e}", file=sys.stderr)
        return 2
    await db.users().set_role(user.id, args.org, args.role)
    await db.for_org(args.org).audit().append(actor="cli", action="user_create", target=user.id,
                                              after={"email": user.email, "role": args.role})
    print(user.id)
    return 0


async def _reset_totp(email: str, db: Store) -> int:
    from voxd.core.sealing import Sealer

    user = await db.users().by_email(email)
    if user is None:
        print(f"voxd users: no user {email!r}", file=sys.stderr)
        return 2
    removed = await db.totp(Sealer.load(Path(str(db.path)).parent)).disable(user.id)
    for org, _ in await db.users().memberships(user.id):
        await db.for_org(org).audit().append(actor="cli", action="totp_reset", target=user.id)
    print("second factor removed" if removed else "the user had no second factor")
    return 0


async def _audit(args: argparse.Namespace, db: Store) -> int:
    if args.audit_cmd == "export":
        for row in await db.for_org(args.org).audit().export():
            print(json.dumps(row))
        return 0
    bad = await db.audit().verify()
    if bad is not None:
        print(f"voxd audit: row {bad.seq} was tampered with: {bad.why}", file=sys.stderr)
        return 1
    print("audit log intact")
    return 0
