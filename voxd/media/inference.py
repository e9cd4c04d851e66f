"""Where model inference runs: one bounded thread pool per process, never the event loop.

Every engine (Silero, Smart Turn, whisper, piper, espeak) calls `run_inference`, so
the number of inferences running at once is bounded by one number for the whole
process, and a slow decode on one call cannot stall another call's audio. Model
sessions are created once per process (`shared`) and shared by every call; ONNX
sessions get small intra-op thread counts so the pool size, not each model, decides
how many cores inference may use.

Environment:
  VOXD_INFERENCE_WORKERS   threads in the pool (default 2)
  VOXD_INTRA_OP_THREADS    intra-op threads per ONNX / CTranslate2 session (default 1)
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import importlib.util
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import onnxruntime

T = TypeVar("T")

DEFAULT_WORKERS = 2
DEFAULT_INTRA_OP_THREADS = 1

_lock = threading.Lock()
_executor: ThreadPoolExecutor | None = None
_workers: int | None = None
_shared: dict[str, Any] = {}
_shared_locks: dict[str, threading.Lock] = {}


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError as e:
        raise ValueError(f"{name} must be a whole number, got {raw!r}") from e
    if value < 1:
        raise ValueError(f"{name} must be at least 1, got {value}")
    return value


def configure(workers: int | None = None) -> None:
    """Set the pool size before first use (config file beats the environment).

    Raises RuntimeError if the pool is already running with a different size.
    """
    global _workers
    with _lock:
        if workers is None:
            workers = _env_int("VOXD_INFERENCE_WORKERS", DEFAULT_WORKERS)
        wanted = workers
        if wanted < 1:
            raise ValueError(f"inference workers must be at least 1, got {wanted}")
        if _executor is not None and wanted != _workers:
            raise RuntimeError(
                f"inference pool already running with {_workers} workers; "
                "call configure() before first use"
            )
        _workers = wanted


def intra_op_threads() -> int:
    """Threads one model session may use inside one inference."""
    return _env_int("VOXD_INTRA_OP_THREADS", DEFAULT_INTRA_OP_THREADS)


def executor() -> ThreadPoolExecutor:
    """The process-wide inference pool (created on first use)."""
    global _executor, _workers
    with _lock:
        if _executor is None:
            if _workers is None:
                _workers = _env_int("VOXD_INFERENCE_WORKERS", DEFAULT_WORKERS)
            _executor = ThreadPoolExecutor(max_workers=_workers, thread_name_prefix="voxd-infer")
        return _executor


def pool_size() -> int:
    executor()
    assert _workers is not None
    return _workers


_backlog = 0
_fast: ThreadPoolExecutor | None = None


def backlog() -> int:
    """Inferences submitted to the main pool and not finished yet (queued or running)."""
    return _backlog


def _fast_executor() -> ThreadPoolExecutor:
    global _fast
    with _lock:
        if _fast is None:
            _fast = ThreadPoolExecutor(max_workers=1, thread_name_prefix="voxd-fast")
        return _fast


async def run_inference(fn: Callable[..., T], *args: Any) -> T:
    """Run `fn(*args)` in the inference pool and await its result.

    Cancelling the awaiting task does not interrupt an inference already running
    (threads cannot be killed); its result is simply dropped.
    """
    global _backlog
    loop = asyncio.get_running_loop()
    ctx = contextvars.copy_context()
    call = functools.partial(ctx.run, fn, *args)
    _backlog += 1
    try:
        return await loop.run_in_executor(executor(), call)
    finally:
        _backlog -= 1


async def run_fast(fn: Callable[..., T], *args: Any) -> T:
    """Run a short inference (milliseconds, e.g. a Silero confirmation) in its own
    lane, so it never queues behind whisper, piper or Smart Turn work."""
    loop = asyncio.get_running_loop()
    call = functools.partial(contextvars.copy_context().run, fn, *args)
    return await loop.run_in_executor(_fast_executor(), call)


def shared(key: str, factory: Callable[[], T]) -> T:
    """Return the process-wide object stored under `key`, building it once.

    Thread-safe and lazy: concurrent first callers wait for one `factory()` call;
    building different keys does not serialise (one lock per key).
    """
    try:
        return _shared[key]  # type: ignore[no-any-return]
    except KeyError:
        pass
    with _lock:
        key_lock = _shared_locks.setdefault(key, threading.Lock())
    with key_lock:
        if key not in _shared:
            _shared[key] = factory()
        return _shared[key]  # type: ignore[no-any-return]


def onnx_session(path: str, *, threads: int | None = None) -> onnxruntime.InferenceSession:
    """A CPU onnxruntime session with small, fixed thread counts, shared per path."""

    def build() -> onnxruntime.InferenceSession:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = threads or intra_op_threads()
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Don't spin idle worker threads: the cores are shared with every call.
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        return ort.InferenceSession(path, sess_options=so, providers=["CPUExecutionProvider"])

    return shared(f"onnx:{path}:{threads or intra_op_threads()}", build)


def package_file(package: str, *parts: str) -> str:
    """Path of a data file shipped inside an installed package, found from its spec.

    Unlike importlib.resources on a subpackage, this does not execute the package's
    __init__ (pipecat's logs a banner on import).
    """
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {package!r} is not installed")
    path = Path(next(iter(spec.submodule_search_locations)), *parts)
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the installed {package!r} package")
    return str(path)


def shutdown() -> None:
    """Stop the pool (tests, daemon exit). A later call to run_inference starts a new one."""
    global _executor, _fast
    with _lock:
        ex, _executor = _executor, None
        fast, _fast = _fast, None
    for pool in (ex, fast):
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
