"""`python -m simulator --port 9090` — run the Kubecost API simulator (a test double) in the foreground."""

from __future__ import annotations

import argparse
import signal
import sys

from simulator.cluster import default_cluster
from simulator.server import API_CHOICES, FAULT_MODES, Fault, serve


def _stop(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m simulator", description=__doc__)
    ap.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    ap.add_argument("--port", type=int, default=9090, help="port to bind, 0 = any free port (default 9090)")
    ap.add_argument("--cluster-name", default="cluster-one", help="the synthetic cluster's id (default cluster-one)")
    ap.add_argument(
        "--api",
        choices=sorted(API_CHOICES),
        default="both",
        help="serve Kubecost (/model/allocation), OpenCost (/allocation) or both (default)",
    )
    ap.add_argument("--scale", type=float, default=1.0, help="cost multiplier (default 1.0 = about $0.27/hour)")
    ap.add_argument("--fault", choices=FAULT_MODES, default="none", help="start with this fault switched on")
    ap.add_argument("--verbose", action="store_true", help="log every request to stderr")
    args = ap.parse_args(argv)
    try:
        server = serve(
            args.host,
            args.port,
            cluster=default_cluster(args.cluster_name),
            api=args.api,
            scale=args.scale,
            verbose=args.verbose,
        )
    except OSError as err:
        print(f"simulator: cannot listen on {args.host}:{args.port}: {err.strerror or err}", file=sys.stderr)
        return 1
    server.state.fault = Fault(mode=args.fault)
    signal.signal(signal.SIGTERM, _stop)
    print(f"Kubecost API simulator (test double) for cluster {args.cluster_name!r} on {server.url}", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
