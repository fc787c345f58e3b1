#!/usr/bin/env python3
"""`make image`: check the exporter image as the chart runs it, and write its SBOM.

    scripts/image_check.py [--image REF] [--sbom PATH]

Checks (each prints one line, the first failure stops with its reason):
- `--version` prints the exporter's version, run as the image's user 65532:65532;
- with `--read-only --cap-drop ALL`, the image serves `/metrics` with `scrape_success 1` and namespace costs read
  from the Kubecost API simulator on this machine (host network, loopback only);
- no installer in the final image: pip, setuptools and wheel are not importable, no `*.whl` lies anywhere, and no
  compiler or linker is on PATH;
- the size (uncompressed, and gzip-compressed as a registry would store it).
Then a CycloneDX 1.6 SBOM of the image's Python environment (the dist-info of every installed distribution in
/opt/exporter), validated against the CycloneDX schema, is written to `--sbom`.
"""

from __future__ import annotations

import argparse
import gzip
import importlib.metadata
import io
import json
import os
import re
import socket
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from cyclonedx.model.bom import Bom
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.model.license import LicenseExpression
from cyclonedx.output.json import JsonV1Dot6
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from packageurl import PackageURL

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests-e2e"))
from simulator.cluster import default_cluster  # noqa: E402
from simulator.server import serve  # noqa: E402

CACHE = Path(os.environ.get("KCI_CACHE") or Path.home() / ".cache" / "kubecost-integration")
SITE = "/opt/exporter/lib/python3.11/site-packages"
REQ_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def version() -> str:
    text = (ROOT / "exporter/src/kubecost_allocation_exporter/__init__.py").read_text()
    return text.split('__version__ = "', 1)[1].split('"', 1)[0]


def docker(*args: str, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=True, **kw)  # type: ignore[call-overload, no-any-return]


def ok(what: str) -> None:
    print(f"==> image: ok  {what}", flush=True)


def fail(what: str) -> None:
    raise SystemExit(f"==> image: FAILED  {what}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def check_version(image: str, want: str) -> None:
    user = docker("image", "inspect", image, "--format", "{{.Config.User}}").stdout.strip()
    if user != "65532:65532":
        fail(f"image user is {user!r}, not 65532:65532")
    out = docker("run", "--rm", "--read-only", "--cap-drop", "ALL", image, "--version").stdout
    if want not in out:
        fail(f"--version printed {out.strip()!r}, not {want}")
    ok(f"--version {want} as uid 65532")


def check_serves_metrics(image: str) -> None:
    sim = serve("127.0.0.1", 0, cluster=default_cluster("image-check"))
    threading.Thread(target=sim.serve_forever, daemon=True).start()
    port = free_port()
    name = f"kci-image-check-{os.getpid()}"
    docker(
        "run",
        "--detach",
        "--name",
        name,
        "--read-only",
        "--cap-drop",
        "ALL",
        "--network",
        "host",
        "--security-opt",
        "no-new-privileges",
        image,
        "--kubecost-url",
        sim.url,
        "--listen-address",
        f"127.0.0.1:{port}",
        "--tenant-id",
        "image-check",
        "--cluster-name",
        "image-check",
    )
    try:
        deadline, text = time.monotonic() + 60, ""
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
                    text = resp.read().decode()
                if (
                    "\ncloudtuner_kubecost_scrape_success{" in text
                    and "} 1.0" in text.split("scrape_success{", 1)[1][:300]
                ):
                    break
            except OSError:
                pass
            time.sleep(1)
        namespaces = text.count("cloudtuner_kubecost_namespace_total_cost{")
        if namespaces == 0:
            logs = subprocess.run(["docker", "logs", name], capture_output=True, text=True, check=False).stderr[-2000:]
            fail(f"no namespace costs on /metrics within 60 s; exporter log:\n{logs}")
        ok(f"/metrics read-only, no capabilities: scrape_success 1, {namespaces} namespace cost series")
    finally:
        subprocess.run(["docker", "rm", "--force", name], capture_output=True, check=False)
        sim.shutdown()
        sim.server_close()


def check_no_installer(image: str) -> None:
    script = (
        "import importlib.util as u, shutil, pathlib; "
        'mods = [m for m in ("pip", "setuptools", "wheel", "ensurepip") if u.find_spec(m)]; '
        'tools = [t for t in ("gcc", "cc", "c++", "g++", "ld", "make", "pip", "pip3") if shutil.which(t)]; '
        'wheels = [str(p) for d in ("/usr", "/opt") for p in pathlib.Path(d).rglob("*.whl")]; '
        "print(mods, tools, wheels)"
    )
    out = docker("run", "--rm", "--entrypoint", "python", image, "-c", script).stdout.strip()
    if out != "[] [] []":
        fail(f"installer or compiler in the final image (modules, tools, wheels): {out}")
    ok("no pip, setuptools, wheel, ensurepip, *.whl or compiler in the final image")


def size(image: str) -> tuple[int, int]:
    raw = int(docker("image", "inspect", image, "--format", "{{.Size}}").stdout.strip())
    save = subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE)
    assert save.stdout is not None
    compressed = 0
    with tarfile.open(fileobj=save.stdout, mode="r|") as tar:
        for member in tar:
            f = tar.extractfile(member)
            if f is None:
                continue
            buf = io.BytesIO()
            with gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=6) as gz:
                while chunk := f.read(1 << 20):
                    gz.write(chunk)
            compressed += buf.tell()
    if save.wait() != 0:
        fail("docker save failed")
    return raw, compressed


def sbom(image: str, dest: Path) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        cid = docker("create", image).stdout.strip()
        try:
            docker("cp", f"{cid}:{SITE}", tmp)
        finally:
            docker("rm", cid)
        dists = sorted(
            importlib.metadata.distributions(path=[str(Path(tmp) / "site-packages")]),
            key=lambda d: d.metadata["Name"].lower(),
        )
        bom = Bom()
        bom.metadata.component = Component(
            name="kubecost-allocation-exporter",
            version=version(),
            type=ComponentType.CONTAINER,
            description=f"the image {image}: its Python environment /opt/exporter",
        )
        components: dict[str, Component] = {}
        for d in dists:
            name, ver = d.metadata["Name"], d.version
            lic = d.metadata["License-Expression"]
            components[canonical(name)] = Component(
                name=name,
                version=ver,
                type=ComponentType.LIBRARY,
                bom_ref=f"pypi:{canonical(name)}@{ver}",
                purl=PackageURL(type="pypi", name=canonical(name), version=ver),
                licenses=[LicenseExpression(lic)] if lic else [],
            )
        bom.components.update(components.values())
        # The dependency graph from each distribution's own requirements (extras left out: not installed).
        for d in dists:
            needs = [
                components[canonical(m[0])]
                for r in d.requires or []
                if "extra ==" not in r and (m := REQ_NAME.match(r)) and canonical(m[0]) in components
            ]
            bom.register_dependency(components[canonical(d.metadata["Name"])], needs)
        bom.register_dependency(bom.metadata.component, [components["kubecost-allocation-exporter"]])
        text = JsonV1Dot6(bom).output_as_string(indent=2)
    error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(text)
    if error:
        fail(f"the SBOM does not validate against CycloneDX 1.6: {error}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(text)
    return len(json.loads(text)["components"])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--image", default=f"localhost/kubecost-allocation-exporter:{version()}")
    ap.add_argument(
        "--sbom", type=Path, default=CACHE / "images" / f"kubecost-allocation-exporter-{version()}.cdx.json"
    )
    args = ap.parse_args(argv)
    os.environ.setdefault("DOCKER_HOST", f"unix://{CACHE}/docker/docker.sock")
    check_version(args.image, version())
    check_serves_metrics(args.image)
    check_no_installer(args.image)
    raw, compressed = size(args.image)
    ok(f"size {raw / 1e6:.1f} MB uncompressed, {compressed / 1e6:.1f} MB compressed (gzip, as pushed)")
    n = sbom(args.image, args.sbom)
    ok(f"SBOM (CycloneDX 1.6, validated): {n} Python packages -> {args.sbom}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
