"""The `accuracy` check of verify: whether the exporter's numbers can be trusted as they stand.
It warns (exit code unchanged) with the figure and what it usually means; docs/metrics.md
"Windows", "Units and semantics" (idle) and "Assets" state the rules behind each finding."""

from __future__ import annotations

from typing import Any

from kubecost_allocation_exporter.verify.checks import Check, Context, P, _select


def check_accuracy(ctx: Context) -> Check:
    samples = ctx.exporter_samples
    if samples is None or not ctx.tenant:
        return Check("skip", "needs the exporter's metrics")
    info = _select(samples, P + "exporter_info", tenant_id=ctx.tenant)
    labels = info[0][1] if info else {}
    unit = "USD/h" if labels.get("metric_mode", "rate") == "rate" else "USD"
    found: list[str] = []
    details: dict[str, Any] = {"assets": labels.get("assets", "unknown")}
    refused = sum(
        s[2] for s in _select(samples, P + "scrape_errors_total", reason="window_mismatch")
    )
    if refused:
        found.append(
            f"{refused:.0f} refreshes refused with window_mismatch: Kubecost answered for another "
            "time than asked (a caching proxy, a replayed answer, a clock problem), the last good "
            "numbers were kept until the staleness limit"
        )
    for total in _select(samples, P + "cluster_total_cost", tenant_id=ctx.tenant):
        ids = {"cluster": total[1].get("cluster", ""), "tenant_id": ctx.tenant}
        name, mine = ids["cluster"], details.setdefault(ids["cluster"], {})
        for s in _select(samples, P + "window_coverage_ratio", **ids):
            mine["window_coverage_ratio"] = s[2]
            if s[2] < 1:
                found.append(
                    f"{name}: the numbers cover {s[2]:.1%} of the requested window (Kubecost has "
                    "no data for the rest: a new cluster, data lag, steps without data), so "
                    "rates are per covered hour"
                )
        for s in _select(samples, P + "cluster_idle_cost", **ids):
            mine["idle"] = s[2]
            if s[2] < 0:
                found.append(
                    f"{name}: idle cost is negative ({s[2]:.4f} {unit}): the allocations are "
                    "priced above the assets, usually custom pricing that disagrees with the "
                    "nodes' cost (the sums still add up)"
                )
        assets = _select(samples, P + "cluster_assets_cost", type="total", **ids)
        if assets and assets[0][2] > 0:
            share = mine["allocations_over_assets"] = total[2] / assets[0][2]
            if abs(share - 1) > ctx.args.assets_drift:
                found.append(
                    f"{name}: allocations incl. idle are {share:.2%} of the assets' cost "
                    f"({total[2]:.4f} vs {assets[0][2]:.4f} {unit}, more than "
                    f"{ctx.args.assets_drift:.0%} apart): cluster management or cloud costs not "
                    "allocated, idle left out, or reconciliation not run yet"
                )
    if details["assets"] == "failed":
        found.append("the Assets API query fails (assets=failed): see the exporter's log")
    if found:
        return Check("warn", "; ".join(found), details)
    shares = [
        v["allocations_over_assets"] for v in details.values() if "allocations_over_assets" in v
    ]
    assets_text = (
        "allocations / assets " + ", ".join(f"{s:.2%}" for s in shares)
        if shares
        else f"no asset costs (assets={details['assets']})"
    )
    return Check("pass", f"window fully covered, idle >= 0, {assets_text}", details)
