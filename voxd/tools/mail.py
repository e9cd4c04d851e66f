"""send_email: one plain-text message through the configured SMTP server (aiosmtplib)."""

from __future__ import annotations

import ssl
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Any

import aiosmtplib

from voxd.config.tools import EmailConfig, merged
from voxd.tools.registry import Tool, ToolContext, ToolError

AGENT_FIELDS = ("from_addr", "allowed_domains")

PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "to": {"type": "string", "pattern": r"^[^@\s,;<>]+@[^@\s,;<>]+\.[^@\s,;<>]+$", "maxLength": 254},
        "subject": {"type": "string", "minLength": 1, "maxLength": 200},
        "body": {"type": "string", "minLength": 1, "maxLength": 10000},
    },
    "required": ["to", "subject", "body"],
    "additionalProperties": False,
}


def build_message(cfg: EmailConfig, args: dict[str, Any], call_id: str) -> EmailMessage:
    if not cfg.from_addr:
        raise ToolError("send_email has no sender address configured (tools.email.from_addr)")
    to = str(args["to"]).strip()
    domain = to.rsplit("@", 1)[-1].lower()
    if cfg.allowed_domains and domain not in {d.lower() for d in cfg.allowed_domains}:
        raise ToolError(f"emails to {domain} are not allowed for this agent")
    msg = EmailMessage()
    msg["From"] = cfg.from_addr
    msg["To"] = to
    msg["Subject"] = str(args["subject"]).replace("\n", " ")
    msg["Message-ID"] = make_msgid(domain=cfg.from_addr.rsplit("@", 1)[-1])
    if call_id:
        msg["X-Voxd-Call-Id"] = call_id
    msg.set_content(str(args["body"]))
    return msg


def email_tool(base: EmailConfig) -> Tool:
    async def send_email(args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
        cfg: EmailConfig = merged(base, ctx.options_for("send_email"), AGENT_FIELDS)
        if not cfg.host:
            raise ToolError("email is not set up on this server (tools.email.host)")
        msg = build_message(cfg, args, ctx.call_id)
        context = ssl.create_default_context(cafile=cfg.ca_file) if cfg.security != "none" else None
        try:
            await aiosmtplib.send(
                msg,
                hostname=cfg.host,
                port=cfg.port,
                username=cfg.username,
                password=cfg.password() if cfg.username else None,
                use_tls=cfg.security == "tls",
                start_tls=cfg.security == "starttls",
                tls_context=context,
                timeout=cfg.timeout_s,
            )
        except aiosmtplib.SMTPRecipientsRefused:
            raise ToolError(f"the mail server refused the address {args['to']}") from None
        except aiosmtplib.SMTPAuthenticationError:
            raise ToolError("the mail server refused voxd's login") from None
        except (aiosmtplib.SMTPException, OSError) as e:
            raise ToolError(f"the email could not be sent ({type(e).__name__})") from None
        return {"sent": True, "to": msg["To"], "message_id": msg["Message-ID"]}

    return Tool(
        "send_email",
        "Send a short email, e.g. a confirmation or a summary the caller asked for. Confirm the address first.",
        PARAMETERS, send_email, timeout_s=base.timeout_s + 5, interruptible=False,
    )
