"""The cluster's components: their files on disk, command lines and readiness probes.

One `Layout` names every path of one cluster; each `Component` knows how to write its
configuration, what to run, and how to tell it is ready. `testbed.py` starts them in order.
"""

from __future__ import annotations

import json
import ssl
import sys
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from testbed import metrics_server as ms
from testbed.host import run
from testbed.network import BRIDGE, Addresses
from testbed.pki import PKI, CertPair, kubeconfig
from testbed.sandbox_image import SANDBOX_IMAGE

NODE_NAME = "podkit-node"
CNI_BIN_DIR = "/usr/lib/cni"


@dataclass(frozen=True)
class Ports:
    etcd_client: int = 12379
    etcd_peer: int = 12380
    apiserver: int = 16443
    controller_manager: int = 10257
    scheduler: int = 10259
    kubelet: int = 10250
    kubelet_healthz: int = 10248
    proxy_healthz: int = 10256
    proxy_metrics: int = 10249
    metrics_server: int = 4443


@dataclass(frozen=True)
class Layout:
    """Every path of one cluster: persistent state under `state`, sockets under `run`."""

    state: Path
    run: Path

    @property
    def pki(self) -> Path:
        return self.state / "pki"

    @property
    def procs(self) -> Path:
        return self.state / "procs"

    @property
    def config(self) -> Path:
        return self.state / "config"

    @property
    def etcd_data(self) -> Path:
        return self.state / "etcd"

    @property
    def kubelet_root(self) -> Path:
        return self.state / "kubelet"

    @property
    def pod_logs(self) -> Path:
        return self.state / "pod-logs"

    @property
    def containerd_root(self) -> Path:
        return self.state / "containerd"

    @property
    def containerd_state(self) -> Path:
        return self.run / "containerd"

    @property
    def containerd_sock(self) -> Path:
        return self.run / "containerd.sock"

    @property
    def cni_conf(self) -> Path:
        return self.state / "cni" / "net.d"

    @property
    def cni_ipam(self) -> Path:
        return self.state / "cni" / "ipam"

    @property
    def admin_kubeconfig(self) -> Path:
        return self.config / "admin.kubeconfig"

    @property
    def sysctl_state(self) -> Path:
        return self.state / "sysctl-before.json"


@dataclass
class Component:
    """A process of the cluster: its argv, a readiness probe and how long to wait for it."""

    name: str
    argv: list[str]
    ready: Callable[[], bool]
    timeout: float = 60.0


def https_ok(url: str, *, ca: Path | None, client: CertPair | None) -> bool:
    """GET `url`; true on HTTP 200. Without `ca` the server's certificate is not checked."""
    ctx = ssl.create_default_context(cafile=str(ca) if ca else None)
    if ca is None:  # a component's self-signed health endpoint on loopback
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if client is not None:
        ctx.load_cert_chain(str(client.cert), str(client.key))
    with urllib.request.urlopen(url, context=ctx, timeout=3) as resp:
        return resp.status == 200


def http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=3) as resp:
        return resp.status == 200


class Certs:
    """The certificates and kubeconfigs every component needs, issued once per cluster."""

    def __init__(self, layout: Layout, addr: Addresses, ports: Ports) -> None:
        self.pki = PKI(layout.pki)
        self.pki.ensure_ca()
        self.ca = self.pki.ca.cert
        server = f"https://{addr.node_ip}:{ports.apiserver}"
        self.apiserver = self.pki.issue(
            "apiserver", "kube-apiserver", client=False,
            server_names=(addr.node_ip, "127.0.0.1", addr.kubernetes_service_ip, "localhost",
                          "kubernetes", "kubernetes.default", "kubernetes.default.svc",
                          "kubernetes.default.svc.cluster.local"))
        self.apiserver_kubelet_client = self.pki.issue(
            "apiserver-kubelet-client", "kube-apiserver-kubelet-client",
            orgs=("system:masters",))
        self.service_account = self.pki.service_account_key()
        self.kubelet_serving = self.pki.issue(
            "kubelet-serving", f"system:node:{NODE_NAME}", orgs=("system:nodes",),
            client=False, server_names=(addr.node_ip, NODE_NAME, "127.0.0.1"))
        self.admin = self.pki.issue("admin", "podkit-admin", orgs=("system:masters",))
        # The aggregator's identity towards metrics-server (--proxy-client-cert-file), whose
        # CN --requestheader-allowed-names names; signed by the one CA, as every cert here.
        self.front_proxy_client = self.pki.issue("front-proxy-client", "front-proxy-client")
        self.metrics_server_serving = self.pki.issue(
            "metrics-server-serving", ms.SERVING_NAME, client=False,
            server_names=(ms.SERVING_NAME, addr.node_ip))

        def user_kubeconfig(stem: str, cn: str, orgs: tuple[str, ...] = ()) -> Path:
            pair = self.pki.issue(stem, cn, orgs=orgs)
            return kubeconfig(layout.config / f"{stem}.kubeconfig", server=server,
                              ca=self.ca, client=pair, user=cn)

        self.admin_kubeconfig = kubeconfig(layout.admin_kubeconfig, server=server, ca=self.ca,
                                           client=self.admin, user="podkit-admin")
        self.controller_manager = user_kubeconfig("controller-manager",
                                                  "system:kube-controller-manager")
        self.scheduler = user_kubeconfig("scheduler", "system:kube-scheduler")
        self.kubelet = user_kubeconfig("kubelet", f"system:node:{NODE_NAME}",
                                       ("system:nodes",))
        self.proxy = user_kubeconfig("kube-proxy", "system:kube-proxy")
        self.metrics_server = user_kubeconfig("metrics-server", ms.USER)


def etcd(layout: Layout, ports: Ports, executable: str = "etcd") -> Component:
    """etcd; Debian's by default, or ``executable`` (the API-only clusters' newer build)."""
    client = f"http://127.0.0.1:{ports.etcd_client}"
    peer = f"http://127.0.0.1:{ports.etcd_peer}"
    return Component(
        "etcd",
        [executable, "--name", "podkit", "--data-dir", str(layout.etcd_data),
         "--listen-client-urls", client, "--advertise-client-urls", client,
         "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
         "--initial-cluster", f"podkit={peer}", "--initial-cluster-state", "new",
         "--quota-backend-bytes", str(8 * 1024**3), "--logger", "zap", "--log-level", "warn"],
        ready=lambda: http_ok(f"{client}/health"))


def apiserver(bins: Path, layout: Layout, addr: Addresses, ports: Ports,
              certs: Certs) -> Component:
    return Component(
        "kube-apiserver",
        [str(bins / "kube-apiserver"),
         f"--etcd-servers=http://127.0.0.1:{ports.etcd_client}",
         f"--bind-address={addr.node_ip}", f"--advertise-address={addr.node_ip}",
         f"--secure-port={ports.apiserver}",
         f"--service-cluster-ip-range={addr.service_cidr}",
         f"--client-ca-file={certs.ca}",
         # The front proxy: how the aggregator authenticates to metrics-server (which reads
         # these from the extension-apiserver-authentication ConfigMap) and presents the user.
         f"--requestheader-client-ca-file={certs.ca}",
         "--requestheader-allowed-names=front-proxy-client",
         "--requestheader-username-headers=X-Remote-User",
         "--requestheader-group-headers=X-Remote-Group",
         "--requestheader-extra-headers-prefix=X-Remote-Extra-",
         f"--proxy-client-cert-file={certs.front_proxy_client.cert}",
         f"--proxy-client-key-file={certs.front_proxy_client.key}",
         # Aggregated APIs are reached at their Service's endpoint (metrics-server: the node's
         # address), not through the cluster IP and kube-proxy's rules.
         "--enable-aggregator-routing=true",
         f"--tls-cert-file={certs.apiserver.cert}",
         f"--tls-private-key-file={certs.apiserver.key}",
         f"--kubelet-client-certificate={certs.apiserver_kubelet_client.cert}",
         f"--kubelet-client-key={certs.apiserver_kubelet_client.key}",
         "--kubelet-preferred-address-types=InternalIP",
         f"--service-account-key-file={certs.service_account.cert}",
         f"--service-account-signing-key-file={certs.service_account.key}",
         "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
         "--authorization-mode=Node,RBAC",
         # OwnerReferencesPermissionEnforcement: blockOwnerDeletion needs the owner's finalizers
         # right, as on most production clusters (tests/integration/test_operator_rbac.py).
         "--enable-admission-plugins=NodeRestriction,OwnerReferencesPermissionEnforcement",
         "--allow-privileged=true",
         "--feature-gates=PodkitMutablePodSpec=true",
         "--profiling=false"],
        ready=lambda: https_ok(f"https://{addr.node_ip}:{ports.apiserver}/readyz",
                               ca=certs.ca, client=certs.admin),
        timeout=90)


def controller_manager(bins: Path, addr: Addresses, ports: Ports, certs: Certs) -> Component:
    kc = str(certs.controller_manager)
    return Component(
        "kube-controller-manager",
        [str(bins / "kube-controller-manager"),
         f"--kubeconfig={kc}", f"--authentication-kubeconfig={kc}",
         f"--authorization-kubeconfig={kc}",
         "--bind-address=127.0.0.1", f"--secure-port={ports.controller_manager}",
         f"--service-account-private-key-file={certs.service_account.key}",
         f"--root-ca-file={certs.ca}",
         f"--cluster-signing-cert-file={certs.pki.ca.cert}",
         f"--cluster-signing-key-file={certs.pki.ca.key}",
         f"--service-cluster-ip-range={addr.service_cidr}",
         f"--cluster-cidr={addr.pod_cidr}",
         "--use-service-account-credentials=true",
         # The default client rate (20/s) would take minutes to create a 10,000-pod batch.
         "--kube-api-qps=500", "--kube-api-burst=1000",
         "--leader-elect=false", "--profiling=false"],
        ready=lambda: https_ok(f"https://127.0.0.1:{ports.controller_manager}/healthz",
                               ca=None, client=None))


def scheduler(bins: Path, ports: Ports, certs: Certs) -> Component:
    kc = str(certs.scheduler)
    return Component(
        "kube-scheduler",
        [str(bins / "kube-scheduler"),
         f"--kubeconfig={kc}", f"--authentication-kubeconfig={kc}",
         f"--authorization-kubeconfig={kc}",
         "--bind-address=127.0.0.1", f"--secure-port={ports.scheduler}",
         "--kube-api-qps=500", "--kube-api-burst=1000",
         "--leader-elect=false", "--profiling=false"],
        ready=lambda: https_ok(f"https://127.0.0.1:{ports.scheduler}/healthz",
                               ca=None, client=None))


def provisioner(layout: Layout, kubeconfig: Path) -> Component:
    """The testbed's volume provisioner (testbed.provisioner): volumes under
    ``<state>/volumes``, which ``down`` removes with the state."""
    return Component(
        "podkit-provisioner",
        [sys.executable, "-m", "testbed.provisioner", f"--kubeconfig={kubeconfig}",
         f"--root={layout.state / 'volumes'}"],
        # it serves nothing: a clash shows as its exit, which the wait reports with its log
        ready=lambda: True)


def containerd(layout: Layout) -> Component:
    """containerd with its own root, state and socket, so it never meets another one."""
    config = layout.config / "containerd.toml"
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    config.write_text(f"""version = 2
root = "{layout.containerd_root}"
state = "{layout.containerd_state}"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
                    "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs"]

[grpc]
  address = "{layout.containerd_sock}"

[{cri}]
  sandbox_image = "{SANDBOX_IMAGE}"
  # Lowering an OOM score needs CAP_SYS_RESOURCE, which root in a container or VM sandbox
  # may lack: never ask for less than containerd's own score.
  restrict_oom_score_adj = true

[{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"

[{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[{cri}.containerd.runtimes.runc.options]
  SystemdCgroup = false
  Root = "{layout.run / 'runc'}"

[{cri}.cni]
  bin_dir = "{CNI_BIN_DIR}"
  conf_dir = "{layout.cni_conf}"
""")
    return Component(
        "containerd", ["containerd", "--config", str(config)],
        ready=lambda: run(["ctr", "-a", str(layout.containerd_sock), "version"],
                          check=False).returncode == 0)


def write_cni_config(layout: Layout, addr: Addresses) -> None:
    """One bridge for every pod, addresses from host-local; no masquerade (nothing leaves)."""
    layout.cni_conf.mkdir(parents=True, exist_ok=True)
    (layout.cni_conf / "10-podkit.conflist").write_text(json.dumps({
        "cniVersion": "1.0.0",
        "name": "podkit",
        "plugins": [{
            "type": "bridge",
            "bridge": BRIDGE,
            "isGateway": True,
            "ipMasq": False,
            "hairpinMode": True,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": addr.pod_cidr}]],
                "routes": [{"dst": "0.0.0.0/0"}],
                "dataDir": str(layout.cni_ipam),
            },
        }],
    }, indent=2))


def kubelet(bins: Path, layout: Layout, addr: Addresses, ports: Ports,
            certs: Certs) -> Component:
    config = layout.config / "kubelet.yaml"
    config.write_text(json.dumps({
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": addr.node_ip,
        "port": ports.kubelet,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": ports.kubelet_healthz,
        "tlsCertFile": str(certs.kubelet_serving.cert),
        "tlsPrivateKeyFile": str(certs.kubelet_serving.key),
        "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True},
                           "x509": {"clientCAFile": str(certs.ca)}},
        "authorization": {"mode": "Webhook"},
        "containerRuntimeEndpoint": f"unix://{layout.containerd_sock}",
        "cgroupDriver": "cgroupfs",
        "failCgroupV1": False,
        "failSwapOn": False,
        "clusterDomain": "cluster.local",
        "podLogsDir": str(layout.pod_logs),
        # No registry can give an image back: never garbage-collect images.
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%",
                         "imagefs.available": "1%", "nodefs.inodesFree": "1%"},
        "serializeImagePulls": False,
        "syncFrequency": "10s",
        "fileCheckFrequency": "10s",
    }, indent=2))
    return Component(
        "kubelet",
        [str(bins / "kubelet"), f"--config={config}", f"--kubeconfig={certs.kubelet}",
         f"--root-dir={layout.kubelet_root}", f"--node-ip={addr.node_ip}",
         f"--hostname-override={NODE_NAME}"],
        ready=lambda: http_ok(f"http://127.0.0.1:{ports.kubelet_healthz}/healthz"),
        timeout=60)


def kube_proxy(bins: Path, layout: Layout, addr: Addresses, ports: Ports,
               certs: Certs) -> Component:
    config = layout.config / "kube-proxy.yaml"
    config.write_text(json.dumps({
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(certs.proxy)},
        "mode": "iptables",
        "clusterCIDR": addr.pod_cidr,
        "hostnameOverride": NODE_NAME,
        "bindAddress": addr.node_ip,
        "healthzBindAddress": f"127.0.0.1:{ports.proxy_healthz}",
        "metricsBindAddress": f"127.0.0.1:{ports.proxy_metrics}",
        "nodePortAddresses": ["primary"],
        # Leave the machine's conntrack settings alone.
        "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s",
                      "tcpCloseWaitTimeout": "0s"},
    }, indent=2))
    return Component(
        "kube-proxy",
        [str(bins / "kube-proxy"), f"--config={config}"],
        ready=lambda: http_ok(f"http://127.0.0.1:{ports.proxy_healthz}/healthz"))


def metrics_server(bins: Path, addr: Addresses, ports: Ports, certs: Certs) -> Component:
    """metrics-server (``bins``: its build's bin dir) on the node's address, scraping the
    kubelet with its serving certificate checked against the testbed's CA."""
    kc = str(certs.metrics_server)
    return Component(
        ms.NAME,
        [str(bins / ms.NAME),
         f"--kubeconfig={kc}", f"--authentication-kubeconfig={kc}",
         f"--authorization-kubeconfig={kc}",
         f"--bind-address={addr.node_ip}", f"--secure-port={ports.metrics_server}",
         f"--tls-cert-file={certs.metrics_server_serving.cert}",
         f"--tls-private-key-file={certs.metrics_server_serving.key}",
         f"--kubelet-certificate-authority={certs.ca}",
         "--kubelet-preferred-address-types=InternalIP", "--kubelet-use-node-status-port",
         f"--metric-resolution={ms.METRIC_RESOLUTION}",
         f"--kubelet-request-timeout={ms.KUBELET_REQUEST_TIMEOUT}",
         "--profiling=false"],
        # /readyz passes once two scrapes are stored: the node's metrics exist from then on
        ready=lambda: https_ok(f"https://{addr.node_ip}:{ports.metrics_server}/readyz",
                               ca=certs.ca, client=certs.admin),
        timeout=90)
