"""Places N concurrent streamdouble calls from one process (the load side of test_streamdouble).

    python tests/interop/sd_load.py URL SCENARIO N KEY=VALUE...

Prints one JSON line per call: exit code, violations, failed expectations.
streamdouble's own `-n` places calls one after another; this runs them at once.
"""

from __future__ import annotations

import asyncio
import json
import sys

from streamdouble import api
from streamdouble.session import SessionConfig


async def main(url: str, scenario: str, n: int, params: dict[str, str]) -> None:
    config = SessionConfig(response_timeout_s=20.0, quiet_period_s=1.5, max_drain_s=20.0, custom_parameters=params)
    reports = await asyncio.gather(*(api.run_scenario(url, scenario, config=config) for _ in range(n)),
                                   return_exceptions=True)
    for r in reports:
        if isinstance(r, BaseException):
            print(json.dumps({"exit_code": -1, "error": repr(r)}))
        else:
            print(json.dumps({"exit_code": r.exit_code, "violations": r.violations,
                              "failed": list(r.result.failed_expectations)}))


if __name__ == "__main__":
    url, scenario, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    params = dict(a.split("=", 1) for a in sys.argv[4:])
    asyncio.run(main(url, scenario, n, params))
