"""`voxd test --text`: the same scenarios through text conversations
(`voxd.call.conversations`), the agent's LLM, tools and dialog without audio.

Steps with no text equivalent (digits, speaking over the bot) and expectations only a
call can meet (a transfer, not being interrupted) make the scenario skipped, with the
reason; `wait:` and `silence:` pass no time in text.
"""

from __future__ import annotations

import time

from voxd.call.conversations import ConversationManager
from voxd.suites.expect import check, mark, window_since
from voxd.suites.model import LoadedSuite, Scenario
from voxd.suites.results import ScenarioResult, StepResult, transcript_of


def audio_only(scenario: Scenario) -> str | None:
    """Why ``scenario`` cannot run as text (None: it can)."""
    if scenario.only == "audio":
        return "only: audio"
    for j, step in enumerate(scenario.steps, 1):
        if step.dtmf is not None:
            return f"step {j}: dtmf has no text equivalent"
        if isinstance(step.say, list):
            return f"step {j}: pauses inside speech need audio"
        if step.interrupt is not None:
            return f"step {j}: interrupt needs audio"
        if step.audio is not None and step.text is None:
            return f"step {j}: audio without text:"
        if step.transferred:
            return f"step {j}: text conversations cannot transfer"
        if step.no_interruption or step.interrupted:
            return f"step {j}: interruptions need audio"
        if step.max_latency_ms is not None:
            return f"step {j}: max_latency_ms is measured on calls"
        if (step.silence is not None or step.wait is not None) and (
                step.no_reply is False or step.reply_contains or step.reply_matches or step.expect or step.hung_up):
            return f"step {j}: what the bot does after silence needs a call"
    return None


async def run_conversation(manager: ConversationManager, agent_name: str, loaded: LoadedSuite, index: int,
                           scenario: Scenario) -> ScenarioResult:
    res = ScenarioResult(str(loaded.path), agent_name, scenario.name, "text", loaded.line_of(index), scenario.tags)
    why = audio_only(scenario)
    if why is not None:
        res.status, res.note = "skipped", why
        return res
    t0 = time.perf_counter()
    conv = await manager.open(agent_name, {"test_scenario": scenario.name})
    try:
        for j, step in enumerate(scenario.steps):
            sr = StepResult(j, step.action, step.words, loaded.line_of(index, j))
            res.steps.append(sr)
            if conv.closed:
                sr.failures.append(f"the conversation had already ended ({conv.record.end_reason}) before this step")
                break
            m = mark(conv.record, [])
            if step.words is not None:
                await manager.send(conv.record.id, step.words)
            sr.window = window_since(m, conv.record, [], conv.closed and conv.record.ended_by == "agent")
            sr.failures += check(step, sr.window)
    finally:
        if not conv.closed:
            await manager.end(conv.record.id, "test_done", "caller")
        res.seconds = time.perf_counter() - t0
        res.transcript = transcript_of(conv.record.turns)
    return res
