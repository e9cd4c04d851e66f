"""Hold and attended transfer against sipp (a third-party SIP client).

- A sipp caller holds (a=sendonly, then a=inactive) and resumes (a=sendrecv): each
  200 carries the mirrored direction (the scenario checks it), and the call's record
  counts one hold.
- Attended transfer: a sipp caller presses 4 (RFC 4733); voxd holds it (re-INVITE
  a=sendonly), calls a second sipp playing the target, speaks the summary, REFERs the
  caller with Refer-To carrying Replaces, and on the NOTIFY 200 ends both legs. The
  Replaces' Call-ID and tags are compared with the target's dialog as both sipp
  instances logged it.
"""

from __future__ import annotations

import asyncio
import re
import shutil
from pathlib import Path
from urllib.parse import unquote

import pytest

from tests.interop.test_sipp import free_udp_port, records, run_sipp, scenario
from voxd.app import Daemon
from voxd.config import VoxdConfig
from voxd.proto.sip.replaces import Replaces

pytestmark = [pytest.mark.interop, pytest.mark.skipif(not shutil.which("sipp"), reason="sipp not installed")]


def agent_yaml(target_port: int) -> str:
    return f"""
greeting: Hello.
stt: {{engine: fake, options: {{transcripts: ["hello"]}}}}
llm: {{engine: dialog}}
voice: {{engine: fake}}
turn: {{detector: silence, max_silence_ms: 400}}
sip: {{numbers: ["2000"]}}
dtmf:
  main_menu: main
  start_menu: true
  menus:
    main:
      prompt: Press four.
      timeout_ms: 60000
      options:
        "4": {{say: Connecting you., then: transfer, target: "sip:target@127.0.0.1:{target_port}",
              mode: attended, summary: "A caller about an invoice."}}
"""


async def start(tmp_path: Path, target_port: int) -> Daemon:
    agents = tmp_path / "agents"
    agents.mkdir()
    (agents / "front.yaml").write_text(agent_yaml(target_port))
    cfg = VoxdConfig.model_validate({
        "state_dir": str(tmp_path / "state"), "agents_dir": str(agents), "default_agent": "front",
        "http": {"enabled": False}, "engines": {"preload": False, "silero_confirm": False},
        "sip": {"port": free_udp_port(), "rtp_port_min": 31700, "rtp_port_max": 31800, "ring_ms": 0, "srtp": "off"},
    })
    d = Daemon(cfg, tmp_path)
    await d.start()
    return d


async def test_hold_and_unhold_are_answered_with_the_mirrored_direction(tmp_path: Path) -> None:
    d = await start(tmp_path, free_udp_port())
    try:
        await run_sipp(d, scenario(tmp_path, "hold_unhold.xml", USER="2000"), tmp_path, limit_s=30)
        (rec,) = await records(d)
        assert rec["end_reason"] == "caller_hangup" and rec["metadata"]["holds"] == 1
    finally:
        await d.stop()


def messages(log: Path) -> list[str]:
    """The SIP messages of a sipp -trace_msg log."""
    text = log.read_text(errors="replace")
    out = []
    for block in re.split(r"-{20,}[^\n]*\n", text):
        _, sep, msg = block.partition(":\n")  # "UDP message sent (545 bytes):" / "... received [275] bytes :"
        if sep and msg.strip():
            out.append(msg.strip())
    return out


def header(msg: str, name: str) -> str:
    found = re.search(rf"^{name}:\s*(.*)$", msg, re.M | re.I)
    assert found is not None, f"no {name} in {msg[:200]}"
    return found.group(1).strip()


def tag(value: str) -> str:
    found = re.search(r";tag=([^;>\s]+)", value)
    assert found is not None
    return found.group(1)


async def test_attended_transfer_refers_the_caller_to_the_target_with_replaces(tmp_path: Path) -> None:
    target_port = free_udp_port()
    d = await start(tmp_path, target_port)
    target_log = tmp_path / "target_messages.log"
    target = await asyncio.create_subprocess_exec(
        "sipp", "-sf", str(scenario(tmp_path, "attended_target.xml")), "-i", "127.0.0.1", "-p", str(target_port),
        "-mi", "127.0.0.1", "-mp", str(free_udp_port()), "-m", "1", "-timeout", "60", "-timeout_error", "-nostdin",
        "-trace_msg", "-message_file", str(target_log), cwd=tmp_path,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    try:
        caller_log = tmp_path / "caller_messages.log"
        await run_sipp(d, scenario(tmp_path, "attended_caller.xml", USER="2000"), tmp_path,
                       "-trace_msg", "-message_file", str(caller_log), limit_s=60)
        _, err = await asyncio.wait_for(target.communicate(), 30)
        assert target.returncode == 0, f"target sipp failed: {err.decode()[-1000:]}"
        (rec,) = await records(d)
        assert rec["end_reason"] == "transferred" and rec["ended_by"] == "agent"
        note = rec["metadata"]["transfer"]
        assert note["outcome"] == "transferred" and note["progress"] == [200]

        refer = next(m for m in messages(caller_log) if m.startswith("REFER "))
        refer_to = header(refer, "Refer-To")
        uri = refer_to.strip("<>")
        assert uri.startswith(f"sip:target@127.0.0.1:{target_port}?Replaces=")
        rep = Replaces.parse(unquote(uri.split("?Replaces=", 1)[1]))
        invite = next(m for m in messages(target_log) if m.startswith("INVITE "))
        answered = next(m for m in messages(target_log) if m.startswith("SIP/2.0 200") and "INVITE" in header(m, "CSeq"))
        assert rep.call_id == header(invite, "Call-ID")
        assert rep.to_tag == tag(header(answered, "To"))  # the target's own tag
        assert rep.from_tag == tag(header(invite, "From"))  # voxd's tag on the consultation
        assert not rep.early_only
    finally:
        if target.returncode is None:
            target.kill()
            await target.wait()
        await d.stop()


async def test_an_invite_replacing_no_dialog_gets_481(tmp_path: Path) -> None:
    d = await start(tmp_path, free_udp_port())
    try:
        log = tmp_path / "messages.log"
        await run_sipp(d, scenario(tmp_path, "replaces_unknown.xml", USER="2000"), tmp_path,
                       "-trace_msg", "-message_file", str(log), limit_s=20)
        assert await records(d) == []  # no call was created
        sent = messages(log)
        invite = next(m for m in sent if m.startswith("INVITE "))
        ack = next(m for m in sent if m.startswith("ACK "))
        assert header(ack, "Via") == header(invite, "Via")  # the ACK of a non-2xx is in the INVITE's transaction
        assert [m for m in sent if m.startswith("SIP/2.0 481")]
    finally:
        await d.stop()
