"""The API client against a real local HTTP server answering like Kubecost / OpenCost."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from exporter_testlib import FakeKubecost, Reply, fixture_bytes

from kubecost_allocation_exporter.config import Config, load
from kubecost_allocation_exporter.kubecost import (
    AllocationClient,
    ApiError,
    candidate_endpoints,
)
from kubecost_allocation_exporter.redact import redact_url

pytestmark = pytest.mark.unit

HOUR = "2026-11-26T16:00:00Z,2026-11-26T17:00:00Z"


def cfg(url: str, *extra: str) -> Config:
    return load(
        [
            "--kubecost-url",
            url,
            "--cluster-name",
            "c1",
            "--tenant-id",
            "t1",
            "--retry-backoff",
            "0",
            *extra,
        ],
        {},
    )


def fetch_error(client: AllocationClient) -> ApiError:
    with pytest.raises(ApiError) as info:
        list(client.query(HOUR, "namespace"))
    return info.value


def test_query_is_explicit_about_every_parameter(kubecost: FakeKubecost) -> None:
    kubecost.set_fixture("/model/allocation", "kubecost2_namespace.json")
    client = AllocationClient(cfg(kubecost.url, "--share-idle", "none"))
    [page] = client.query(HOUR, "namespace")
    assert len(page.sets) == 1
    assert "__idle__" in page.sets[0]
    params = kubecost.seen[-1].params
    assert params == {
        "window": HOUR,
        "aggregate": "namespace",
        "accumulate": "true",
        "idle": "true",
        "includeIdle": "true",
        "shareIdle": "false",
        "offset": "0",
        "limit": "5000",  # the default --page-size
    }


def test_share_idle_weighted_sends_true_and_multi_cluster_splits_idle(
    kubecost: FakeKubecost,
) -> None:
    kubecost.set_fixture("/model/allocation", "multi_cluster.json")
    client = AllocationClient(cfg(kubecost.url, "--multi-cluster"))
    list(client.query(HOUR, "cluster,namespace", split_idle=True))
    params = kubecost.seen[-1].params
    assert params["shareIdle"] == "true"
    assert params["splitIdle"] == "true"
    assert params["aggregate"] == "cluster,namespace"


def test_auto_detects_opencost_when_model_path_is_missing(
    kubecost: FakeKubecost, caplog: pytest.LogCaptureFixture
) -> None:
    kubecost.set_fixture("/allocation", "opencost_sample.json")
    client = AllocationClient(cfg(kubecost.url))
    caplog.set_level("INFO")
    list(client.query(HOUR, "namespace"))
    list(client.query(HOUR, "namespace"))
    assert client.endpoint is not None
    assert client.endpoint.flavour == "opencost"
    assert [s.path for s in kubecost.seen] == ["/model/allocation", "/allocation", "/allocation"]
    chosen = [r for r in caplog.records if "Allocation API at" in r.getMessage()]
    assert len(chosen) == 1  # logged once
    assert "opencost" in chosen[0].getMessage()


def test_auto_detects_kubecost_frontend_first(kubecost: FakeKubecost) -> None:
    kubecost.set_fixture("/model/allocation", "kubecost2_namespace.json")
    kubecost.set_fixture("/allocation", "ui_index.html")
    client = AllocationClient(cfg(kubecost.url))
    list(client.query(HOUR, "namespace"))
    assert client.endpoint is not None
    assert client.endpoint.flavour == "kubecost"
    assert [s.path for s in kubecost.seen] == ["/model/allocation"]


def test_auto_detection_failure_names_what_was_tried(kubecost: FakeKubecost) -> None:
    err = fetch_error(AllocationClient(cfg(kubecost.url)))
    assert err.reason == "http_status"
    assert "/model/allocation" in str(err)
    assert "/allocation" in str(err)


def test_endpoint_choice_per_version_and_flavour() -> None:
    frontend = "http://kubecost-cost-analyzer.kubecost:9090"
    aggregator = "http://kubecost-aggregator.kubecost:9004"
    kc3 = "http://kubecost-frontend.kubecost:9090"
    opencost = "http://opencost.opencost:9003"
    assert candidate_endpoints(frontend, "kubecost")[0].url == frontend + "/model/allocation"
    assert candidate_endpoints(kc3, "kubecost")[0].url == kc3 + "/model/allocation"
    assert candidate_endpoints(aggregator, "kubecost")[0].url == aggregator + "/allocation"
    assert candidate_endpoints(aggregator, "auto")[0].flavour == "kubecost"
    assert candidate_endpoints(opencost, "opencost")[0].url == opencost + "/allocation"
    assert [e.url for e in candidate_endpoints(opencost, "auto")] == [
        opencost + "/model/allocation",
        opencost + "/allocation",
    ]
    explicit = candidate_endpoints(opencost + "/allocation/compute", "auto")
    assert explicit[0].url == opencost + "/allocation/compute"
    assert explicit[0].flavour == "opencost"


def test_code_500_inside_http_200_is_an_api_error(kubecost: FakeKubecost) -> None:
    kubecost.set_fixture("/model/allocation", "code500_http200.json")
    err = fetch_error(AllocationClient(cfg(kubecost.url, "--api", "kubecost")))
    assert err.reason == "api_error"
    assert str(err).startswith("API error code 500 from ")
    assert "context deadline exceeded" in str(err)


def test_http_500_with_json_message_is_an_http_status_error(kubecost: FakeKubecost) -> None:
    kubecost.set_fixture("/allocation", "opencost_nodata_500.json", status=500)
    err = fetch_error(AllocationClient(cfg(kubecost.url, "--api", "opencost")))
    assert err.reason == "http_status"
    assert "HTTP 500" in str(err)
    assert "error accumulating" in str(err)


def test_plain_text_error_body_with_http_400(kubecost: FakeKubecost) -> None:
    kubecost.set_fixture("/allocation", "plain_text_error.txt", status=400)
    err = fetch_error(AllocationClient(cfg(kubecost.url, "--api", "opencost")))
    assert err.reason == "http_status"
    assert "HTTP 400 from http://127.0.0.1" in str(err)
    assert 'invalid window "foo"' in str(err)


def test_plain_text_body_with_http_200_is_not_json(kubecost: FakeKubecost) -> None:
    kubecost.set_fixture("/allocation", "plain_text_error.txt")
    err = fetch_error(AllocationClient(cfg(kubecost.url, "--api", "opencost")))
    assert err.reason == "not_json"
    assert "is not JSON" in str(err)
    assert "\n" not in str(err)


@pytest.mark.parametrize(
    "name", ["empty_list.json", "empty_set.json", "null_set.json", "null_data.json"]
)
def test_empty_data_is_not_an_error(kubecost: FakeKubecost, name: str) -> None:
    kubecost.set_fixture("/model/allocation", name)
    pages = AllocationClient(cfg(kubecost.url, "--api", "kubecost")).query(HOUR, "namespace")
    assert all(not s for page in pages for s in page.sets)


def test_non_object_json_and_missing_data_are_bad_responses(kubecost: FakeKubecost) -> None:
    kubecost.set("/model/allocation", Reply(body=b"[1, 2]"))
    assert fetch_error(AllocationClient(cfg(kubecost.url, "--api", "kubecost"))).reason == (
        "bad_response"
    )
    kubecost.set("/model/allocation", Reply(body=b'{"code": 200, "status": "success"}'))
    err = fetch_error(AllocationClient(cfg(kubecost.url, "--api", "kubecost")))
    assert err.reason == "bad_response"
    assert "no 'data'" in str(err)


def test_several_sets_with_nulls_are_kept_in_order(kubecost: FakeKubecost) -> None:
    kubecost.set_fixture("/model/allocation", "several_sets.json")
    [page] = AllocationClient(cfg(kubecost.url, "--api", "kubecost")).query(HOUR, "namespace")
    assert len(page.sets) == 3  # the null set dropped, the empty one kept
    assert page.skipped == 1


def test_read_timeout_is_bounded_and_retried(kubecost: FakeKubecost) -> None:
    body = fixture_bytes("kubecost2_namespace.json")
    kubecost.set("/model/allocation", Reply(body=body, delay=1.0))
    client = AllocationClient(
        cfg(kubecost.url, "--api", "kubecost", "--request-timeout", "0.2", "--retries", "1")
    )
    started = time.monotonic()
    err = fetch_error(client)
    assert time.monotonic() - started < 3.0
    assert err.reason == "timeout"
    assert "within 0.2s" in str(err)
    assert len(kubecost.seen) == 2  # first try + one retry


def test_transient_503_is_retried_then_succeeds(kubecost: FakeKubecost) -> None:
    kubecost.set(
        "/model/allocation",
        Reply(503, b"upstream connect error", "text/plain"),
        Reply(502, b"bad gateway", "text/plain"),
        Reply(body=fixture_bytes("kubecost2_namespace.json")),
    )
    client = AllocationClient(cfg(kubecost.url, "--api", "kubecost", "--retries", "2"))
    [page] = client.query(HOUR, "namespace")
    assert "default" in page.sets[0]
    assert len(kubecost.seen) == 3


def test_retry_after_cannot_stall_a_refresh(kubecost: FakeKubecost) -> None:
    kubecost.set(
        "/model/allocation",
        Reply(503, b"busy", "text/plain", headers={"Retry-After": "3600"}),
        Reply(body=fixture_bytes("kubecost2_namespace.json")),
    )
    started = time.monotonic()
    list(
        AllocationClient(cfg(kubecost.url, "--api", "kubecost", "--retries", "1")).query(
            HOUR, "namespace"
        )
    )
    assert time.monotonic() - started < 5
    assert len(kubecost.seen) == 2


def test_retries_are_bounded(kubecost: FakeKubecost) -> None:
    kubecost.set("/model/allocation", Reply(503, b"unavailable", "text/plain"))
    err = fetch_error(AllocationClient(cfg(kubecost.url, "--api", "kubecost", "--retries", "2")))
    assert err.reason == "http_status"
    assert "HTTP 503" in str(err)
    assert len(kubecost.seen) == 3


def test_connection_refused_says_so() -> None:
    client = AllocationClient(cfg("http://127.0.0.1:9", "--api", "kubecost", "--retries", "0"))
    err = fetch_error(client)
    assert err.reason == "connection"
    assert "cannot connect to http://127.0.0.1:9/model/allocation" in str(err)
    assert "Connection refused" in str(err) or "Errno" in str(err)


def test_bearer_token_and_api_key_are_read_from_files(
    kubecost: FakeKubecost, tmp_path: Path
) -> None:
    token, key = tmp_path / "token", tmp_path / "key"
    token.write_text("s3cr3t-token\n")
    key.write_text("kc-api-key")
    kubecost.set_fixture("/model/allocation", "kubecost2_namespace.json")
    client = AllocationClient(
        cfg(
            kubecost.url,
            "--api",
            "kubecost",
            "--auth-token-file",
            str(token),
            "--api-key-file",
            str(key),
        )
    )
    list(client.query(HOUR, "namespace"))
    headers = {k.lower(): v for k, v in kubecost.seen[-1].headers.items()}
    assert headers["authorization"] == "Bearer s3cr3t-token"
    assert headers["x-api-key"] == "kc-api-key"
    token.write_text("rotated")  # re-read on every request
    list(client.query(HOUR, "namespace"))
    headers = {k.lower(): v for k, v in kubecost.seen[-1].headers.items()}
    assert headers["authorization"] == "Bearer rotated"


def test_a_vanished_token_file_is_an_auth_error(kubecost: FakeKubecost, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("x")
    client = AllocationClient(
        cfg(kubecost.url, "--api", "kubecost", "--auth-token-file", str(token))
    )
    token.unlink()
    err = fetch_error(client)
    assert err.reason == "auth"
    assert "x" not in str(err).split("file")[-1].replace(str(token), "")


def test_credentials_in_the_url_are_never_shown(kubecost: FakeKubecost) -> None:
    url = kubecost.url.replace("http://", "http://user:hunter2@")
    kubecost.set_fixture("/model/allocation", "code500_http200.json")
    err = fetch_error(AllocationClient(cfg(url, "--api", "kubecost")))
    assert "hunter2" not in str(err)
    assert redact_url("https://u:p@h:1/x?y=1") == "https://h:1/x?y=<redacted>"
