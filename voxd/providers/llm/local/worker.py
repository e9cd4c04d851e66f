"""The model process: llama.cpp (through llama-cpp-python) around one GGUF file,
serving one request at a time. Started by ``supervisor`` as
``python -m voxd.providers.llm.local.worker --model FILE ...``; a crash here never
takes the daemon down, and generation never runs on the daemon's event loop.

Protocol, one JSON object per line. In (stdin):
  {"op": "complete", "id": N, "prompt": str, "schema": str | null, "max_tokens": int,
   "temperature": float}                 generate, streaming pieces of text
  {"op": "warm", "id": N, "prompt": str}  evaluate a prompt prefix and keep its state
  {"op": "cancel", "id": N}               stop that request now (barge-in)
Out (the original stdout; fd 1 is pointed at stderr so library output cannot mix in):
  {"ready": true, "n_ctx": int, "load_ms": float}
  {"id": N, "text": str}                  a piece of the reply
  {"id": N, "done": true, "prompt_tokens": int, "completion_tokens": int,
   "first_token_ms": float, "total_ms": float, "cancelled": bool}
  {"id": N, "error": str}
The schema of a "complete" (a JSON Schema, as text) becomes a GBNF grammar that the
sampler must follow; compiled grammars are kept per schema.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import sys
import threading
import time
from typing import IO, Any


class _Out:
    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.lock = threading.Lock()

    def send(self, obj: dict[str, Any]) -> None:
        line = json.dumps(obj, separators=(",", ":")) + "\n"
        with self.lock:
            self.stream.write(line)
            self.stream.flush()


def _protocol_stdout() -> IO[str]:
    """Keep the real stdout for the protocol and send fd 1 to stderr."""
    fd = os.dup(1)
    os.dup2(2, 1)
    return os.fdopen(fd, "w", buffering=1)


class Worker:
    def __init__(self, llm: Any, out: _Out) -> None:
        self.llm = llm
        self.out = out
        self.inbox: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.cancelled: set[int] = set()
        self.lock = threading.Lock()
        self.grammars: dict[str, Any] = {}

    def read(self, stream: IO[str]) -> None:
        for line in stream:
            try:
                msg = json.loads(line)
            except json.JSONDecodeError:
                continue
            if msg.get("op") == "cancel":
                with self.lock:
                    self.cancelled.add(int(msg["id"]))
            else:
                self.inbox.put(msg)
        self.inbox.put(None)  # the daemon went away

    def is_cancelled(self, rid: int) -> bool:
        with self.lock:
            return rid in self.cancelled

    def grammar(self, schema: str) -> Any:
        from llama_cpp.llama_grammar import LlamaGrammar, json_schema_to_gbnf

        g = self.grammars.get(schema)
        if g is None:
            if len(self.grammars) > 32:
                self.grammars.clear()
            g = LlamaGrammar.from_string(json_schema_to_gbnf(schema), verbose=False)
            self._check(g)
            self.grammars[schema] = g
        return g

    def _check(self, grammar: Any) -> None:
        """llama.cpp returns no sampler for a grammar it cannot parse, and using that
        would crash this process: refuse the request instead."""
        import llama_cpp

        sampler = llama_cpp.llama_sampler_init_grammar(
            self.llm._model.vocab, grammar._grammar.encode("utf-8"), grammar._root.encode("utf-8"))
        if not sampler:
            raise ValueError("the action grammar does not compile (a function's JSON Schema uses "
                             "something llama.cpp's grammar cannot express)")
        llama_cpp.llama_sampler_free(sampler)

    def serve(self) -> None:
        while (msg := self.inbox.get()) is not None:
            rid = int(msg.get("id", 0))
            if self.is_cancelled(rid):
                self.out.send({"id": rid, "done": True, "cancelled": True, "prompt_tokens": 0,
                               "completion_tokens": 0, "first_token_ms": 0, "total_ms": 0})
                continue
            try:
                if msg.get("op") == "warm":
                    self.complete(rid, msg["prompt"], None, 1, 0.0, emit=False)
                else:
                    self.complete(rid, msg["prompt"], msg.get("schema"), int(msg.get("max_tokens", 160)),
                                  float(msg.get("temperature", 0.0)))
            except Exception as e:  # report, keep serving
                self.out.send({"id": rid, "error": f"{type(e).__name__}: {e}"})
            with self.lock:
                self.cancelled.discard(rid)

    def complete(self, rid: int, prompt: str, schema: str | None, max_tokens: int, temperature: float,
                 emit: bool = True) -> None:
        t0 = time.perf_counter()
        first: float | None = None
        n = 0
        cancelled = False
        it = self.llm.create_completion(
            prompt, max_tokens=max_tokens, temperature=temperature, top_k=1 if temperature == 0 else 40,
            stream=True, grammar=self.grammar(schema) if schema else None,
        )
        try:
            for chunk in it:
                if self.is_cancelled(rid):
                    cancelled = True
                    break
                text = chunk["choices"][0]["text"]
                n += 1
                if first is None:
                    first = time.perf_counter()
                if emit and text:
                    self.out.send({"id": rid, "text": text})
        finally:
            it.close()
        prompt_tokens = len(self.llm.tokenize(prompt.encode("utf-8"), special=True))
        self.out.send({
            "id": rid, "done": True, "cancelled": cancelled, "prompt_tokens": prompt_tokens,
            "completion_tokens": n, "first_token_ms": round(((first or time.perf_counter()) - t0) * 1000, 1),
            "total_ms": round((time.perf_counter() - t0) * 1000, 1),
        })


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="voxd-llm-worker")
    p.add_argument("--model", required=True)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--context", type=int, default=4096)
    p.add_argument("--cache-mb", type=int, default=256)
    args = p.parse_args(argv)
    out = _Out(_protocol_stdout())
    t0 = time.perf_counter()
    from llama_cpp.llama import Llama
    from llama_cpp.llama_cache import LlamaRAMCache

    llm = Llama(model_path=args.model, n_ctx=args.context, n_threads=args.threads, n_threads_batch=args.threads,
                n_batch=256, verbose=False)
    if args.cache_mb:
        llm.set_cache(LlamaRAMCache(capacity_bytes=args.cache_mb << 20))
    worker = Worker(llm, out)
    threading.Thread(target=worker.read, args=(sys.stdin,), daemon=True, name="stdin").start()
    out.send({"ready": True, "n_ctx": llm.n_ctx(), "load_ms": round((time.perf_counter() - t0) * 1000, 1)})
    worker.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
