"""The model processes of one packaged model, and the queue for them.

Each `ModelProcess` is one slot: a child process (``worker``) that loads the model
once and generates one reply at a time. It is restarted with exponential backoff
when it exits, and every request it was serving fails with a retryable
ProviderError (the fallback engine answers that turn). `Runtime` holds the slots of
one model: a reply borrows a free slot for at most ``queue_timeout_s`` of waiting,
else it is refused as busy, so a second call never stalls silently behind the first.

The children talk over pipes, not sockets: no port, no loopback traffic, nothing
for the egress policy to allow.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from voxd.config.local_llm import LocalLLMConfig
from voxd.providers.base import ProviderError

log = logging.getLogger("voxd.providers.local_llm")
NAME = "local"


@dataclass
class Stats:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    first_token_ms: float = 0.0
    total_ms: float = 0.0
    cancelled: bool = False


@dataclass
class _Request:
    queue: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)


class ModelProcess:
    def __init__(self, model_path: Path, settings: LocalLLMConfig, label: str) -> None:
        self.model_path = model_path
        self.settings = settings
        self.label = label
        self.state = "stopped"  # starting | ready | restarting | failed | stopped
        self.restarts = 0
        self.pid: int | None = None
        self.last_error = ""
        self._proc: asyncio.subprocess.Process | None = None
        self._ready = asyncio.Event()
        self._pending: dict[int, _Request] = {}
        self._ids = itertools.count(1)
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def command(self) -> list[str]:
        s = self.settings
        return [sys.executable, "-m", "voxd.providers.llm.local.worker", "--model", str(self.model_path),
                "--threads", str(s.threads), "--context", str(s.context), "--cache-mb", str(s.prompt_cache_mb)]

    def start(self) -> None:
        if self._task is None:
            self._stopping = False
            self._task = asyncio.create_task(self._supervise(), name=f"llm-{self.label}")

    async def wait_ready(self, within_s: float) -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ready.wait(), within_s)
        return self._ready.is_set()

    async def _supervise(self) -> None:
        first, longest = self.settings.restart_backoff_s
        delay = first
        while not self._stopping:
            self.state = "starting" if self.restarts == 0 else "restarting"
            started = time.monotonic()
            try:
                await self._run_once()
            except Exception as e:  # spawn failure: missing interpreter or library
                self.last_error = f"{type(e).__name__}: {e}"
            self._ready.clear()
            self._fail_pending(self.last_error or "the model process exited")
            if self._stopping:
                break
            if time.monotonic() - started > 60:
                delay = first  # it ran a good while: start the backoff over
            self.restarts += 1
            self.state = "restarting"
            log.error("local model %s exited (%s); restarting in %.1f s", self.label, self.last_error, delay)
            await asyncio.sleep(delay)
            delay = min(longest, delay * 2)
        self.state = "stopped"

    async def _run_once(self) -> None:
        proc = await asyncio.create_subprocess_exec(
            *self.command(), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        self._proc, self.pid = proc, proc.pid
        assert proc.stdout is not None and proc.stderr is not None
        errors = asyncio.create_task(self._drain_stderr(proc.stderr))
        try:
            while line := await proc.stdout.readline():
                try:
                    msg = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if msg.get("ready"):
                    self.state = "ready"
                    self._ready.set()
                    log.info("local model %s ready (pid %d, %.0f ms to load)", self.label, proc.pid, msg["load_ms"])
                    continue
                req = self._pending.get(int(msg.get("id", -1)))
                if req is not None:
                    req.queue.put_nowait(msg)
            code = await proc.wait()
            self.last_error = f"exit code {code}"
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            errors.cancel()
            self._proc = None

    async def _drain_stderr(self, stream: asyncio.StreamReader) -> None:
        while line := await stream.readline():
            text = line.decode(errors="replace").rstrip()
            if text:
                self.last_error = text[-300:]
                log.debug("%s: %s", self.label, text)

    def _fail_pending(self, why: str) -> None:
        for req in self._pending.values():
            req.queue.put_nowait({"error": f"model process failed: {why}", "restart": True})

    def _send(self, obj: dict[str, Any]) -> None:
        proc = self._proc
        if proc is None or proc.stdin is None or proc.returncode is not None:
            raise ProviderError(NAME, f"model {self.label} is not running", retryable=True)
        proc.stdin.write((json.dumps(obj) + "\n").encode())

    async def warm(self, prompt: str) -> None:
        """Evaluate a prompt prefix (system prompt + tool block) and keep its state."""
        async for _ in self.complete(prompt, None, 1, op="warm", first_token_timeout_s=300):
            pass

    async def complete(self, prompt: str, schema: str | None, max_tokens: int, *, op: str = "complete",
                       stats: Stats | None = None, first_token_timeout_s: float | None = None) -> AsyncIterator[str]:
        if not self._ready.is_set():
            raise ProviderError(NAME, f"model {self.label} is {self.state}", retryable=True)
        rid = next(self._ids)
        req = self._pending[rid] = _Request()
        done = False
        try:
            self._send({"op": op, "id": rid, "prompt": prompt, "schema": schema, "max_tokens": max_tokens})
            timeout = first_token_timeout_s or self.settings.first_token_timeout_s
            while True:
                try:
                    msg = await asyncio.wait_for(req.queue.get(), timeout)
                except TimeoutError:
                    self.restart(f"no output for {timeout:.0f} s")
                    raise ProviderError(NAME, f"model {self.label} silent for {timeout:.0f} s", retryable=True) from None
                if "error" in msg:
                    done = True
                    raise ProviderError(NAME, str(msg["error"]), retryable=True)
                if msg.get("done"):
                    done = True
                    if stats is not None:
                        for k in ("prompt_tokens", "completion_tokens", "first_token_ms", "total_ms", "cancelled"):
                            setattr(stats, k, msg.get(k, getattr(stats, k)))
                    return
                yield str(msg.get("text", ""))
        finally:
            self._pending.pop(rid, None)
            if not done:  # barge-in or an error on our side: stop generating now
                with contextlib.suppress(ProviderError, ConnectionError, RuntimeError):
                    self._send({"op": "cancel", "id": rid})

    def restart(self, why: str) -> None:
        self.last_error = why
        if self._proc is not None and self._proc.returncode is None:
            self._proc.kill()

    async def stop(self) -> None:
        self._stopping = True
        self.restart("stopping")
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        self.state = "stopped"

    def health(self) -> dict[str, Any]:
        return {"state": self.state, "pid": self.pid, "restarts": self.restarts,
                **({"last_error": self.last_error} if self.state != "ready" and self.last_error else {})}


class Runtime:
    """The slots of one model, shared by every call of every agent that uses it."""

    def __init__(self, name: str, model_path: Path, settings: LocalLLMConfig) -> None:
        self.name = name
        self.settings = settings
        self.procs = [ModelProcess(model_path, settings, f"{name}#{i}") for i in range(settings.slots)]
        self._free: asyncio.Queue[ModelProcess] = asyncio.Queue()
        for p in self.procs:
            self._free.put_nowait(p)
        self.warmed: set[str] = set()
        self.loop = asyncio.get_running_loop()

    def start(self) -> None:
        for p in self.procs:
            p.start()

    async def wait_ready(self, within_s: float) -> bool:
        results = await asyncio.gather(*(p.wait_ready(within_s) for p in self.procs))
        return any(results)

    @contextlib.asynccontextmanager
    async def slot(self, timeout_s: float | None = None) -> AsyncIterator[ModelProcess]:
        self.start()
        wait = self.settings.queue_timeout_s if timeout_s is None else timeout_s
        try:
            proc = await asyncio.wait_for(self._free.get(), wait)
        except TimeoutError:
            raise ProviderError(NAME, f"busy: no free slot of {self.name} within {wait:.1f} s", retryable=True) from None
        try:
            if not await proc.wait_ready(max(wait, 1.0) if proc.restarts == 0 else 0.5):
                raise ProviderError(NAME, f"model {proc.label} is {proc.state}", retryable=True)
            yield proc
        finally:
            self._free.put_nowait(proc)

    async def warm(self, prefix: str) -> None:
        """Evaluate `prefix` once in every slot (each keeps its own prompt cache)."""
        if prefix in self.warmed:
            return
        self.warmed.add(prefix)
        for _ in self.procs:
            p = await self._free.get()  # the slot is busy while it warms: a reply meanwhile waits, then falls back
            try:
                if await p.wait_ready(120):
                    await p.warm(prefix)
            except ProviderError as e:
                log.warning("prompt warm-up on %s failed: %s", p.label, e)
            finally:
                self._free.put_nowait(p)

    def health(self) -> dict[str, Any]:
        slots = [p.health() for p in self.procs]
        return {"ready": any(s["state"] == "ready" for s in slots), "slots": slots}

    async def stop(self) -> None:
        for p in self.procs:
            await p.stop()
