"""The `thanos` check of `verify`: Thanos Query has this cluster's and tenant's series, recent,
from every store."""

from __future__ import annotations

from typing import Any

import requests
from cloudtuner_kubecost_queries import QueryError, ThanosClient, selector

from kubecost_allocation_exporter.hints import ThanosWarnings, connection_hint
from kubecost_allocation_exporter.verify.checks import Check, Context, P, _err


def check_thanos(ctx: Context) -> Check:
    url = ctx.links.thanos
    if not url:
        return Check("skip", "no Thanos Query URL (--thanos-url)")
    if not ctx.cluster or not ctx.tenant:
        return Check("skip", "cluster/tenant unknown (pass --cluster-name and --tenant-id)")
    warnings = ThanosWarnings()
    session = requests.Session()
    session.hooks["response"].append(warnings.collect)
    client = ThanosClient(
        url, headers=dict(ctx.args.thanos_header), timeout=ctx.args.timeout, session=session
    )
    sel = selector(ctx.cluster, ctx.tenant).replace("{", f'{{__name__=~"{P}.+",', 1)
    details: dict[str, Any] = {"url": url, "cluster": ctx.cluster, "tenant_id": ctx.tenant}
    check = _check_thanos_series(ctx, client, sel, details)
    if warnings.seen:
        # A partial answer: Thanos Query could not reach a store (Receive, a store gateway), so
        # "no series" or an old newest sample may only mean that store's data is missing.
        details["thanos_warnings"] = warnings.seen
        return Check(
            "fail",
            f"{check.summary}; Thanos Query warned (partial answer: is Thanos Receive or a store "
            f"down?): {'; '.join(warnings.seen)[:500]}",
            details,
        )
    return check


def _check_thanos_series(
    ctx: Context, client: ThanosClient, sel: str, details: dict[str, Any]
) -> Check:
    assert ctx.cluster is not None
    assert ctx.tenant is not None
    url = client.url
    try:
        names = client.instant(f"count by (__name__) ({sel})")
        if not names:
            others = client.instant(
                f'count by (tenant_id) ({{__name__=~"{P}.+",cluster="{ctx.cluster}"}})'
            )
            where = sorted(m.get("tenant_id", "") for m, _ in others)
            hint = (
                f"; the cluster's series are there under tenant_id {where}: the tenant header or "
                "tenantId differs"
                if where
                else "; none under any tenant either (is the agent's remote_write, Thanos Receive "
                "or the store Thanos Query reads down?)"
            )
            return Check(
                "fail",
                f"no {P}* series for cluster={ctx.cluster} tenant_id={ctx.tenant}{hint}",
                details,
            )
        age = client.instant(
            f"time() - max(timestamp({P}scrape_success{selector(ctx.cluster, ctx.tenant)}))"
        )
    except QueryError as exc:
        cause = exc.__cause__
        if isinstance(cause, requests.RequestException):
            # not the library's message: it carries the whole URL-encoded query
            hint = connection_hint(url, cause, flag="--thanos-url")
            return Check(
                "fail", f"Thanos Query at {url} is unreachable: {_err(cause)}{hint}", details
            )
        return Check("fail", str(exc), details)
    details["series_names"] = len(names)
    details["newest_sample_age_seconds"] = round(age[0][1], 1) if age else None
    if not age or age[0][1] > ctx.args.max_age:
        return Check(
            "fail",
            f"{len(names)} series names, but the newest scrape_success sample is "
            + (f"{age[0][1]:.0f}s old" if age else "missing")
            + f" (> {ctx.args.max_age:g}s): data stopped arriving",
            details,
        )
    return Check(
        "pass",
        f"{len(names)} {P}* series names for this cluster and tenant, "
        f"newest sample {age[0][1]:.0f}s old",
        details,
    )
