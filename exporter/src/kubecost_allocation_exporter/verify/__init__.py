"""`kubecost-allocation-exporter verify`: check every link of a live install, report, exit 0
only when all pass (a warning does not fail).

Links, in order (docs/troubleshooting.md maps each failure to its fix):

  exporter      GET <exporter>/metrics: reachable, `scrape_success 1`, cost series present.
  target        The Prometheus that scrapes the exporter (the chart's agent) has the target `up`
                (GET <prometheus>/api/v1/targets, served in agent mode too, which has no query API).
  remote-write  The sender's own /metrics, read twice `--sample-seconds` apart: the queue
                `--remote-name` has sent (its highest-sent timestamp exists), no samples failed or
                were retried in between, and appended-minus-sent lag is at most `--max-lag`.
  thanos        Thanos Query returns `cloudtuner_kubecost_*` series for this cluster AND tenant,
                the newest at most `--max-age` old.
  sums          In the exporter's snapshot: namespace_total_cost summed + cluster_idle_cost ==
                cluster_total_cost.
  accuracy      Warns (with the figure and what it usually means) when the numbers cover part of
                the requested window, refreshes were refused with window_mismatch, a cluster's idle
                cost is negative, or allocations incl. idle are more than `--assets-drift` (5 %)
                away from the assets' cost (cluster_assets_cost{type="total"}).
  kubecost      The exporter's cluster total equals Kubecost's own `aggregate=cluster` answer for
                the same window within `--tolerance` (default 0.5 %).

URLs come from flags (or env vars, see --help), or from a kube context: `--kube-namespace NS`
(optional `--kube-context`, `--release`) finds the chart's exporter and agent Services and the
exporter's KUBECOST_URL and opens `kubectl port-forward`s to them (each must start within
`--timeout`; kubectl's errors are added to the check that failed through it). Thanos Query is
outside the cluster: always a URL.

The package: `checks` (one function per link), `thanos` (the Thanos Query link), `accuracy`
(the check that warns), `kube` (Services and `kubectl port-forward`s of a release), `cli`
(arguments, report, exit code).
"""

from kubecost_allocation_exporter.verify.cli import main

__all__ = ["main"]
