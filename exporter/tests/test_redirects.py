"""A redirect to another origin (scheme, host or port) is refused, not followed, whatever credential
is configured: no header reaches the other origin and its answer is never taken for Kubecost's.

Real local servers: the Kubecost URL answers 302 with a Location on another port, on another host
name for the same server (`localhost` instead of `127.0.0.1`), or, from HTTPS, on plain HTTP. Each
runs with a bearer token file (`Authorization: Bearer`), an API key file (`X-API-KEY`) and
user:password in the URL (`Authorization: Basic`). Before this was guarded, requests followed all
of them: it dropped `Authorization` but sent `X-API-KEY` to the new origin and accepted its answer.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest
from exporter_testlib import FakeKubecost, Reply, self_signed_cert, serve_fake

from kubecost_allocation_exporter.config import SETTINGS, Config, load
from kubecost_allocation_exporter.kubecost import AllocationClient, ApiError

pytestmark = pytest.mark.unit

HOUR = "2026-11-26T16:00:00Z,2026-11-26T17:00:00Z"
PATH = "/model/allocation"
ELSEWHERE = "/elsewhere/model/allocation"  # the path only a followed redirect would ask for
TOKEN = "tok-7c1e9a"
API_KEY = "key-3b8d55"
PASSWORD = "pw-92fa0c"


@dataclass
class Credential:
    flags: list[str]
    url: Callable[[str], str]  # the Kubecost URL as configured
    secret: str  # what must reach no other origin
    header: tuple[str, str]  # how the origin receives it


def credential(kind: str, tmp_path: Path) -> Credential:
    if kind == "bearer-token-file":
        (tmp_path / "token").write_text(TOKEN)
        return Credential(
            ["--auth-token-file", str(tmp_path / "token")],
            lambda u: u,
            TOKEN,
            ("Authorization", f"Bearer {TOKEN}"),
        )
    if kind == "api-key-file":
        (tmp_path / "key").write_text(API_KEY)
        return Credential(
            ["--api-key-file", str(tmp_path / "key")], lambda u: u, API_KEY, ("X-API-KEY", API_KEY)
        )
    basic = base64.b64encode(f"kci:{PASSWORD}".encode()).decode()
    return Credential(
        [],
        lambda u: u.replace("://", f"://kci:{PASSWORD}@"),
        basic,
        ("Authorization", f"Basic {basic}"),
    )


KINDS = ["bearer-token-file", "api-key-file", "url-user-password"]


def cfg(url: str, *extra: str) -> Config:
    return load(
        [
            *("--kubecost-url", url, "--api", "kubecost", "--cluster-name", "c1"),
            *("--tenant-id", "t1", "--window", HOUR, "--retries", "0", *extra),
        ],
        {},
    )


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[dict[str, FakeKubecost]]:
    cert, key = self_signed_cert(tmp_path)
    with ExitStack() as stack:
        yield {
            "origin": stack.enter_context(serve_fake()),
            "other": stack.enter_context(serve_fake()),
            "https-origin": stack.enter_context(serve_fake(tls=(cert, key))),
        }
    # REQUESTS_CA_BUNDLE is set per test (monkeypatch) where the HTTPS origin is used


def target_url(where: str, servers: dict[str, FakeKubecost]) -> tuple[FakeKubecost, str]:
    """(the server asked first, the Location it answers with)."""
    origin, other = servers["origin"], servers["other"]
    if where == "another-port":
        return origin, other.url + ELSEWHERE
    if where == "another-host":  # the same server under another name: only the host differs
        return origin, origin.url.replace("127.0.0.1", "localhost") + ELSEWHERE
    return servers["https-origin"], other.url + ELSEWHERE  # https -> http, a downgrade


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("where", ["another-port", "another-host", "https-to-http"])
def test_a_redirect_to_another_origin_is_refused_with_every_credential(
    kind: str,
    where: str,
    servers: dict[str, FakeKubecost],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cred = credential(kind, tmp_path)
    first, location = target_url(where, servers)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tmp_path / "cert.pem"))
    first.set(PATH, Reply(302, b"moved\n", "text/plain", headers={"Location": location}))
    for fake in servers.values():
        fake.set_fixture(ELSEWHERE, "kubecost2_namespace.json")
    client = AllocationClient(cfg(cred.url(first.url) + PATH, *cred.flags))
    with pytest.raises(ApiError) as info:
        list(client.query(HOUR, "namespace"))
    err = info.value
    assert err.reason == "http_status"
    assert "redirects to another origin" in str(err), str(err)
    assert "not followed" in str(err), str(err)
    assert cred.secret not in str(err)
    assert PASSWORD not in str(err)
    # the origin got the credential; nothing reached the other origin
    [asked] = first.seen
    assert asked.path == PATH
    assert asked.headers.get(cred.header[0]) == cred.header[1]
    for fake in servers.values():
        assert [s.path for s in fake.seen if s.path == ELSEWHERE] == []


@pytest.mark.parametrize("kind", KINDS)
def test_a_redirect_within_the_origin_is_followed_with_the_credential(
    kind: str, servers: dict[str, FakeKubecost], tmp_path: Path
) -> None:
    cred = credential(kind, tmp_path)
    origin = servers["origin"]
    origin.set(PATH, Reply(307, b"", "text/plain", headers={"Location": ELSEWHERE}))
    origin.set_fixture(ELSEWHERE, "kubecost2_namespace.json")
    client = AllocationClient(cfg(cred.url(origin.url) + PATH, *cred.flags))
    assert [s for page in client.query(HOUR, "namespace") for s in page.sets]
    assert [s.path for s in origin.seen] == [PATH, ELSEWHERE]
    assert origin.seen[1].headers.get(cred.header[0]) == cred.header[1]


def test_the_refusal_is_the_line_the_exporter_prints(
    servers: dict[str, FakeKubecost], tmp_path: Path
) -> None:
    """`--once` (and the daemon's "refresh failed" warning) print the refusal, URLs redacted."""
    origin, other = servers["origin"], servers["other"]
    (tmp_path / "key").write_text(API_KEY)
    location = other.url.replace("://", "://u:hunter2@") + ELSEWHERE + "?token=abc123"
    origin.set(PATH, Reply(301, b"", "text/plain", headers={"Location": location}))
    other.set_fixture(ELSEWHERE, "kubecost2_namespace.json")
    env = {k: v for k, v in os.environ.items() if k not in {s.env for s in SETTINGS}}
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "kubecost_allocation_exporter", "--once"),
            *("--kubecost-url", origin.url + PATH, "--api", "kubecost", "--cluster-name", "c"),
            *("--tenant-id", "t", "--window", HOUR, "--retries", "0"),
            *("--api-key-file", str(tmp_path / "key")),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1
    assert proc.stdout == ""
    [line] = proc.stderr.splitlines()
    assert "HTTP 301 from" in line, line
    assert "redirects to another origin" in line, line
    assert f"{other.url}{ELSEWHERE}?token=<redacted>" in line, line
    for secret in (API_KEY, "hunter2", "abc123"):
        assert secret not in line
    assert other.seen == []
