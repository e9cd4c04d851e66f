"""A stand-in for voxd.providers.llm.local.worker speaking the same pipe protocol, for
supervisor tests without a model: it replies with the text after the last "REPLY:" in
the prompt, one character every DELAY seconds, exits on "CRASH", and honours cancel."""

from __future__ import annotations

import json
import os
import sys
import threading
import time

DELAY = 0.02
cancelled: set[int] = set()
lock = threading.Lock()
inbox: list[dict] = []
ready = threading.Condition(lock)


def send(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def read() -> None:
    for line in sys.stdin:
        msg = json.loads(line)
        with lock:
            if msg.get("op") == "cancel":
                cancelled.add(msg["id"])
            else:
                inbox.append(msg)
                ready.notify()
    os._exit(0)


def main() -> None:
    if os.environ.get("FAKE_WORKER_FAIL_START"):
        sys.exit(7)
    threading.Thread(target=read, daemon=True).start()
    send({"ready": True, "n_ctx": 4096, "load_ms": 1.0, "pid": os.getpid()})
    while True:
        with lock:
            while not inbox:
                ready.wait()
            msg = inbox.pop(0)
        rid = msg["id"]
        prompt = msg["prompt"]
        if "CRASH" in prompt:
            os._exit(3)
        reply = prompt.rsplit("REPLY:", 1)[-1] if "REPLY:" in prompt else '{"say": "ok"}'
        n, stopped = 0, False
        for ch in reply if msg.get("op") != "warm" else "":
            with lock:
                stopped = rid in cancelled
            if stopped:
                break
            send({"id": rid, "text": ch})
            n += 1
            time.sleep(DELAY)
        send({"id": rid, "done": True, "cancelled": stopped, "prompt_tokens": len(prompt) // 4,
              "completion_tokens": n, "first_token_ms": 1.0, "total_ms": 1.0})


if __name__ == "__main__":
    main()
