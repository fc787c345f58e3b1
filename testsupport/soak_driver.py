"""`python -m testsupport.soak_driver` — the exporter's own `serve()` with a sub-second refresh interval, for soaks.

The exporter refuses a refresh interval under 1 s (it would hammer Kubecost); a soak needs thousands of refresh
cycles in minutes, so this driver loads the configuration exactly as the console script does (flags and env), then
replaces only `refresh_interval` with `$SOAK_REFRESH_SECONDS` and runs the unchanged `serve()` (HTTP server,
background refresher, signal handling). Test-only: never shipped.
"""

from __future__ import annotations

import os
import sys
from dataclasses import replace

from kubecost_allocation_exporter.cli import serve
from kubecost_allocation_exporter.config import PROG, ConfigError, load


def main() -> int:
    try:
        cfg = load(sys.argv[1:], os.environ)
    except ConfigError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    cfg = replace(cfg, refresh_interval=float(os.environ.get("SOAK_REFRESH_SECONDS", "0.05")))
    return serve(cfg)


if __name__ == "__main__":
    sys.exit(main())
