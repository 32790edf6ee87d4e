"""OpenKruise's kruise-manager as a local process against an API-only cluster (the peer of the
scale benchmark: tools/scale_bench/peer_kruise.py).

kruise-manager comes from ``tools/testbed/kruise/build.sh`` (v1.9.0 from the Go module proxy),
which also caches what the module's kustomize install applies before the manager starts: the
CRDs, the CRD patches that turn on conversion webhooks, and the webhook configurations.

Webhooks stay on, as in a real install. kruise-manager manages them itself: it makes a CA and
a serving certificate, writes them, and fills the ``caBundle`` of its webhook configurations
and of the CRDs' conversion webhooks. With ``WEBHOOK_HOST`` set it does so for a URL,
``https://<host>:<WEBHOOK_PORT>/<path>``, instead of an in-cluster Service (its
``configuration.Ensure`` and ``crd.Ensure``), and keeps the certificates in
``WEBHOOK_CERT_DIR`` rather than in a Secret (the certificate has the host as an IP SAN). The
apiserver of an API-only cluster runs on this host, so ``WEBHOOK_HOST=127.0.0.1`` reaches it.
The manager only updates configurations that exist, so :meth:`KruiseManager.install` creates
them first from the module's manifests, named and selected as its kustomize overlay does.

Leader election is off; metrics, the health probe and the webhook listen on free ports.
``KruiseDaemon=false``: there is no kruise-daemon on kwok's fake nodes (it would run on each
node; CloneSet in-place image updates do not need it, the kubelet restarts the container);
every other feature gate keeps its default (the pod webhook on).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import yaml

from testbed.apicluster import free_ports
from testbed.components import http_ok
from testbed.daemons import Proc, wait_until
from testbed.errors import TestbedError
from testbed.kube import Kube, KubectlError
from testbed.kubebin import run_build_script
from testbed.repo import REPO

BUILD_SH = REPO / "tools" / "testbed" / "kruise" / "build.sh"
NAMESPACE = "kruise-system"  # the manager's own (POD_NAMESPACE), as the chart installs it
SERVICE = "kruise-webhook-service"  # named in the configurations; the URL replaces it
MUTATING = "kruise-mutating-webhook-configuration"  # the names the manager looks for
VALIDATING = "kruise-validating-webhook-configuration"
# the CloneSet controller's name, in controller-runtime's "Starting workers" line
CLONESET_CONTROLLER = "cloneset-controller"


def entry_dir() -> Path:
    """Run build.sh (a no-op when cached) and return its cache entry (bin/, crd/, ...)."""
    entry = run_build_script(BUILD_SH, "kruise build").parent
    if not (entry / "bin" / "kruise-manager").exists():
        raise TestbedError(f"kruise build: {entry}/bin lacks kruise-manager")
    return entry


def _documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def conversion_crds(entry: Path) -> set[str]:
    """The CRDs whose conversion webhook the module's install turns on: the patches listed,
    not commented out, in config/crd/kustomization.yaml."""
    listed = re.findall(r"^- patches/(webhook_in_\S+\.yaml)\s*$",
                        (entry / "crd-patches" / "kustomization.yaml").read_text(), re.MULTILINE)
    return {_documents(entry / "crd-patches" / name)[0]["metadata"]["name"] for name in listed}


def crds(entry: Path) -> list[dict[str, Any]]:
    """Every CRD of the module, with its conversion webhook where the install has one (a
    Service reference for now: the manager replaces it with its URL and CA)."""
    converted = conversion_crds(entry)
    out = []
    for path in sorted((entry / "crd").glob("*.yaml")):
        for crd in _documents(path):
            if crd["metadata"]["name"] in converted:
                crd["spec"]["conversion"] = {"strategy": "Webhook", "webhook": {
                    "clientConfig": {"service": {"namespace": NAMESPACE, "name": SERVICE,
                                                 "path": "/convert"}},
                    "conversionReviewVersions": ["v1", "v1beta1"]}}
            out.append(crd)
    return out


def webhook_configurations(entry: Path) -> list[dict[str, Any]]:
    """The module's webhook configurations as its kustomize overlay makes them: the names the
    manager looks for, the selectors of patch_manifests.yaml, its Service in its namespace."""
    patches = {d["kind"]: {w["name"]: w for w in d["webhooks"]}
               for d in _documents(entry / "webhook" / "patch_manifests.yaml")}
    names = {"MutatingWebhookConfiguration": MUTATING,
             "ValidatingWebhookConfiguration": VALIDATING}
    out = []
    for conf in _documents(entry / "webhook" / "manifests.yaml"):
        conf["metadata"] = {"name": names[conf["kind"]]}
        for hook in conf["webhooks"]:
            for key, value in patches.get(conf["kind"], {}).get(hook["name"], {}).items():
                if key != "name":
                    hook[key] = value
            service = hook["clientConfig"].get("service")
            if service is not None:
                service.update(namespace=NAMESPACE, name=SERVICE)
        out.append(conf)
    return out


class KruiseManager:
    """One kruise-manager against the cluster of ``kube`` (its admin kubeconfig); its log,
    certificates and pid file under ``run_dir``. As a context manager: installed and started
    on entry (ready: its /readyz, which waits for its webhooks, and the CloneSet controller's
    workers started), stopped on exit.

    ``qps``/``burst``: its client rate limit (``--rest-config-qps/-burst``; kruise's defaults
    are 30/50). The scale peer gives it podkit operator's defaults (PODKIT_QPS 1000,
    PODKIT_BURST 2000), so neither is held back by a client limit the other lacks."""

    def __init__(self, kube: Kube, run_dir: Path, qps: int = 30, burst: int = 50) -> None:
        self.kube, self.run_dir = kube, run_dir
        self.qps, self.burst = qps, burst
        self.proc = Proc("kruise-manager", run_dir)
        self.entry: Path | None = None
        self.health_port = self.metrics_port = self.webhook_port = 0
        self.log_offset = 0  # where this start's output begins in the (appended) log

    @property
    def pid(self) -> int:
        pid = self.proc.pid()
        if pid is None:
            raise TestbedError("kruise-manager is not running")
        return pid

    def install(self) -> None:
        """The manager's namespace, every CRD of the module (an install has them all: its
        controllers and pod webhook read several kinds besides CloneSets), and its webhook
        configurations, which point at a Service until the manager points them at itself."""
        self.entry = self.entry or entry_dir()
        self.kube.apply({"apiVersion": "v1", "kind": "Namespace",
                         "metadata": {"name": NAMESPACE}})
        definitions = crds(self.entry)
        # server-side: the largest CRDs exceed the last-applied annotation's 256 kB
        self.kube.run("apply", "--server-side", "--force-conflicts", "-f", "-",
                      input=json.dumps({"apiVersion": "v1", "kind": "List",
                                        "items": definitions}))
        names = [c["metadata"]["name"] for c in definitions]
        self.kube.wait_for("kruise's CRDs to be established", lambda: all(
            any(c["type"] == "Established" and c["status"] == "True"
                for c in (crd.get("status") or {}).get("conditions") or [])
            for crd in json.loads(self.kube.run("get", "crd", *names, "-o", "json"))["items"]),
            timeout=60)
        for conf in webhook_configurations(self.entry):
            self.kube.run("apply", "--server-side", "--force-conflicts", "-f", "-",
                          input=json.dumps(conf))

    def start(self, timeout: float = 180) -> KruiseManager:
        self.install()
        assert self.entry is not None
        self.run_dir.mkdir(parents=True, exist_ok=True)
        certs, protection = self.run_dir / "webhook-certs", self.run_dir / "protection-log"
        certs.mkdir(exist_ok=True)
        protection.mkdir(exist_ok=True)  # its --protection-log-path (default /log)
        self.health_port, self.metrics_port, self.webhook_port = free_ports(3)
        env = dict(os.environ, KUBECONFIG=str(self.kube.kubeconfig), POD_NAMESPACE=NAMESPACE,
                   WEBHOOK_HOST="127.0.0.1", WEBHOOK_PORT=str(self.webhook_port),
                   WEBHOOK_CERT_DIR=str(certs))
        argv = [str(self.entry / "bin" / "kruise-manager"),
                f"--kubeconfig={self.kube.kubeconfig}",
                "--enable-leader-election=false", "--enable-pprof=false",
                f"--metrics-addr=127.0.0.1:{self.metrics_port}",
                f"--health-probe-addr=127.0.0.1:{self.health_port}",
                f"--protection-log-path={protection}",
                f"--rest-config-qps={self.qps}", f"--rest-config-burst={self.burst}",
                "--feature-gates=KruiseDaemon=false"]
        self.log_offset = self.proc.log_file.stat().st_size if self.proc.log_file.exists() else 0
        self.proc.start(argv, env=env)
        wait_until(lambda: http_ok(f"http://127.0.0.1:{self.health_port}/readyz"),
                   timeout=timeout, proc=self.proc, what="ready (/readyz: its webhooks)")
        wait_until(self._cloneset_workers, timeout=timeout, proc=self.proc,
                   what="running the CloneSet controller's workers", interval=0.5)
        return self

    def _cloneset_workers(self) -> bool:
        with open(self.proc.log_file, errors="replace") as log:
            log.seek(self.log_offset)
            return any("Starting workers" in line and CLONESET_CONTROLLER in line
                       for line in log)

    def remove_webhooks(self) -> None:
        """Delete its webhook configurations (failurePolicy Fail: with the manager gone they
        would refuse every pod write); a no-op if the cluster is gone."""
        for kind, name in (("mutatingwebhookconfiguration", MUTATING),
                           ("validatingwebhookconfiguration", VALIDATING)):
            try:
                self.kube.run("delete", kind, name, "--ignore-not-found", timeout=15)
            except (KubectlError, subprocess.TimeoutExpired, OSError):
                pass

    def stop(self) -> None:
        self.proc.stop()

    def __enter__(self) -> KruiseManager:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
        self.remove_webhooks()

