"""The operator's Kubernetes I/O: thin calls that return plain dicts, and the client.

Responses are read as raw JSON (``_preload_content=False``) rather than the client's model
classes: turning thousands of pods into models costs more than the whole release logic.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from kubernetes import client, config
from kubernetes.client.rest import ApiException
from prometheus_client import Counter
from urllib3.exceptions import HTTPError

from ..api.keys import (
    ENDPOINTS_MANAGER,
    GROUP,
    LABEL_CONFIG_SOURCE,
    LABEL_STSP,
    PLURAL,
    VERSION,
)
from .podindex import PodIndex
from .ratelimit import TokenBucket

_FEATURE_RE = re.compile(r'^kubernetes_feature_enabled\{name="(?P<name>[^"]+)"[^}]*\} (?P<v>\S+)',
                         re.MULTILINE)


# (connect, read) seconds for a call that gives none: a read timeout bounds each wait for
# bytes, so a large list still completes while a hung apiserver or a lost connection fails
# the call (and the release loop retries) instead of blocking its thread forever.
REQUEST_TIMEOUT = (10.0, 30.0)
WATCH_S = 300  # a watch the operator opens ends after this long, and is opened again

# What a failed call raises: the apiserver's answer, or urllib3's (a timeout, a refused or lost
# connection), which is not an OSError.
API_ERRORS = (ApiException, HTTPError, OSError)


def describe(exc: BaseException) -> str:
    """One line for a log: ``403 Forbidden``, or urllib3's message (``str`` of an
    ApiException carries every response header)."""
    if isinstance(exc, ApiException):
        return f"{exc.status} {exc.reason}"
    return str(exc)

API_REQUESTS = Counter("podkit_operator_api_requests", "calls to the apiserver by the "
                       "operator's own clients (not kopf's watches), by client and HTTP verb",
                       ["client", "verb"])
API_THROTTLED = Counter("podkit_operator_api_throttled_seconds", "seconds the operator's calls "
                        "waited for the client rate limit (PODKIT_QPS, PODKIT_BURST), by client",
                        ["client"])


class TimeoutApiClient(client.ApiClient):
    """An ApiClient whose every request has a timeout (``REQUEST_TIMEOUT`` unless the call
    gives its own) and is counted: the kubernetes client has no default timeout, and one
    missing ``_request_timeout`` in a single call would be enough to hang a loop."""

    def __init__(self, name: str, timeout: tuple[float, float] = REQUEST_TIMEOUT,
                 pool: int | None = None, limit: TokenBucket | None = None) -> None:
        configuration = client.Configuration.get_default_copy()
        if pool is not None:  # the client's default is 5 a core: fewer than a pass's writers
            configuration.connection_pool_maxsize = pool
        super().__init__(configuration)
        self.name, self.timeout, self.limit = name, timeout, limit

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        kwargs["_request_timeout"] = kwargs.get("_request_timeout") or self.timeout
        if self.limit is not None:
            API_THROTTLED.labels(self.name).inc(self.limit.take())
        API_REQUESTS.labels(self.name, method).inc()
        return super().request(method, url, *args, **kwargs)


def connect(name: str = "controller", timeout: tuple[float, float] = REQUEST_TIMEOUT,
            pool: int | None = None, limit: TokenBucket | None = None) -> TimeoutApiClient:
    """A client (its own connection pool, of ``pool`` connections when given, counted as
    ``name``, each call waiting for a token of ``limit`` when given) for the cluster the
    operator runs in, else for the kubeconfig's."""
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    return TimeoutApiClient(name, timeout, pool, limit)


def _json(response: Any) -> Any:
    return json.loads(response.data)


def _lines(response: Any) -> Iterator[bytes]:
    """The lines of a streamed response, as they arrive."""
    pending = b""
    for chunk in response.stream(amt=None, decode_content=True):
        pending += chunk
        *complete, pending = pending.split(b"\n")
        yield from complete
    if pending:
        yield pending


@contextmanager
def _tolerating(status: int) -> Iterator[None]:
    """Ignore an answer with ``status``: a write that a previous pass already made (409 on
    create) or an object already gone (404 on delete) is what the caller wanted."""
    try:
        yield
    except ApiException as exc:
        if exc.status != status:
            raise


class KubeIO:
    """Every call the controller makes to the apiserver. With a ``pods`` index, the pod
    each pod write answers with is put into it (:mod:`.podindex`): a pass then sees its own
    writes without waiting for the watch."""

    def __init__(self, api: client.ApiClient, pods: PodIndex | None = None) -> None:
        self.api, self.pods = api, pods
        self.core = client.CoreV1Api(api)
        self.apps = client.AppsV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self.discovery = client.DiscoveryV1Api(api)
        self.coordination = client.CoordinationV1Api(api)

    # --- reads ---------------------------------------------------------------------------
    def get_stsp(self, namespace: str, name: str) -> dict[str, Any] | None:
        with _tolerating(404):
            return _json(self.custom.get_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name, _preload_content=False))
        return None

    def list_labelled_pods(self, namespace: str) -> tuple[list[dict[str, Any]], str]:
        """Every pod of ``namespace`` with a ``podkit.io/stsp`` label, and the list's
        resourceVersion (a watch resumes from it)."""
        listed = _json(self.core.list_namespaced_pod(namespace, label_selector=LABEL_STSP,
                                                     _preload_content=False))
        return listed["items"], listed["metadata"]["resourceVersion"]

    def watch_labelled_pods(self, namespace: str, resource_version: str) -> Iterator[
            dict[str, Any]]:
        """The watch events (``{"type": ..., "object": ...}``) of those pods after
        ``resource_version``, with bookmarks, until the server ends the watch (after
        ``WATCH_S``). A refusal raises ApiException (410 Gone: the version is too old)."""
        response = self.core.list_namespaced_pod(
            namespace, label_selector=LABEL_STSP, watch=True, allow_watch_bookmarks=True,
            resource_version=resource_version, timeout_seconds=WATCH_S,
            _preload_content=False, _request_timeout=(REQUEST_TIMEOUT[0], WATCH_S + 30))
        try:
            yield from (json.loads(line) for line in _lines(response) if line.strip())
        finally:
            response.release_conn()

    def list_revisions(self, namespace: str, name: str) -> list[dict[str, Any]]:
        return _json(self.apps.list_namespaced_controller_revision(
            namespace, label_selector=f"{LABEL_STSP}={name}", _preload_content=False))["items"]

    def list_namespace_pods(self, namespace: str) -> list[dict[str, Any]]:
        return _json(self.core.list_namespaced_pod(namespace, _preload_content=False))["items"]

    def get_configmap(self, namespace: str, name: str) -> dict[str, Any] | None:
        with _tolerating(404):
            return _json(self.core.read_namespaced_config_map(name, namespace,
                                                              _preload_content=False))
        return None

    def list_config_copies(self, namespace: str, source: str) -> list[dict[str, Any]]:
        """The versioned copies of ConfigMap ``source`` (podkit_operator.configreleases)."""
        return _json(self.core.list_namespaced_config_map(
            namespace, label_selector=f"{LABEL_CONFIG_SOURCE}={source}",
            _preload_content=False))["items"]

    def list_claims(self, namespace: str) -> list[dict[str, Any]]:
        """The namespace's PersistentVolumeClaims: a claim is found by its name, so one made
        before (by a StatefulSet, by hand) is adopted whatever its labels."""
        return _json(self.core.list_namespaced_persistent_volume_claim(
            namespace, _preload_content=False))["items"]

    def feature_gates(self) -> dict[str, bool]:
        """The apiserver's feature gates, from its ``kubernetes_feature_enabled`` metric."""
        response = self.api.call_api("/metrics", "GET", auth_settings=["BearerToken"],
                                     _preload_content=False, _return_http_data_only=True)
        text = response.data.decode()
        return {m["name"]: m["v"] == "1" for m in _FEATURE_RE.finditer(text)}

    # --- writes --------------------------------------------------------------------------
    def create_pod(self, namespace: str, body: dict[str, Any]) -> None:
        with _tolerating(409):
            self._seen(self.core.create_namespaced_pod(namespace, body,
                                                       _preload_content=False))

    def delete_pod(self, namespace: str, name: str) -> None:
        with _tolerating(404):
            self._seen(self.core.delete_namespaced_pod(name, namespace,
                                                       _preload_content=False))

    def patch_pod(self, namespace: str, name: str, patch: dict[str, Any]) -> None:
        """A strategic merge patch (containers merge by name)."""
        self._seen(self.core.patch_namespaced_pod(name, namespace, patch,
                                                  _preload_content=False))

    def resize_pod(self, namespace: str, name: str, patch: dict[str, Any]) -> None:
        """A strategic merge patch of the pod's ``resize`` subresource (cpu/memory in place)."""
        self._seen(self.core.patch_namespaced_pod_resize(name, namespace, patch,
                                                         _preload_content=False))

    def _seen(self, response: Any) -> None:
        """The pod a write answered with, into the index (a delete may answer with a
        Status instead: nothing to record)."""
        if self.pods is not None:
            answer = _json(response)
            if answer.get("kind") == "Pod":
                self.pods.apply("MODIFIED", answer)

    def create_configmap(self, namespace: str, body: dict[str, Any]) -> None:
        with _tolerating(409):
            self.core.create_namespaced_config_map(namespace, body, _preload_content=False)

    def set_configmap_owners(self, namespace: str, name: str,
                             owners: list[dict[str, Any]]) -> None:
        """Replace a ConfigMap's ownerReferences (a config copy's owners), as a merge patch."""
        self.core.patch_namespaced_config_map(name, namespace,
                                              {"metadata": {"ownerReferences": owners}},
                                              _preload_content=False)

    def delete_configmap(self, namespace: str, name: str) -> None:
        with _tolerating(404):
            self.core.delete_namespaced_config_map(name, namespace, _preload_content=False)

    def create_claim(self, namespace: str, body: dict[str, Any]) -> None:
        with _tolerating(409):
            self.core.create_namespaced_persistent_volume_claim(namespace, body,
                                                                _preload_content=False)

    def set_claim_owners(self, namespace: str, name: str,
                         owners: list[dict[str, Any]]) -> None:
        """Replace a claim's ownerReferences (its retention, podkit_operator.inplace.claims),
        as a merge patch."""
        self.core.patch_namespaced_persistent_volume_claim(
            name, namespace, {"metadata": {"ownerReferences": owners}},
            _content_type="application/merge-patch+json", _preload_content=False)

    def create_revision(self, namespace: str, body: dict[str, Any]) -> None:
        with _tolerating(409):
            self.apps.create_namespaced_controller_revision(namespace, body,
                                                            _preload_content=False)

    def delete_revision(self, namespace: str, name: str) -> None:
        with _tolerating(404):
            self.apps.delete_namespaced_controller_revision(name, namespace,
                                                            _preload_content=False)

    def patch_stsp_annotations(self, namespace: str, name: str,
                               annotations: dict[str, str | None]) -> None:
        """Set annotations (``None`` removes one), as a JSON merge patch."""
        self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, name, {"metadata": {"annotations": annotations}},
            _preload_content=False)

    def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, PLURAL, name, {"status": status},
            _preload_content=False)

    def put_endpoint_slice(self, body: dict[str, Any]) -> None:
        """Replace an EndpointSlice whole, or create it: podkit is its only writer, so an
        unconditional update (no resourceVersion) loses nobody's change."""
        meta = body["metadata"]
        try:
            self.discovery.replace_namespaced_endpoint_slice(meta["name"], meta["namespace"],
                                                             body, _preload_content=False)
        except ApiException as exc:
            if exc.status != 404:
                raise
            self.discovery.create_namespaced_endpoint_slice(meta["namespace"], body,
                                                            _preload_content=False)

    def list_endpoint_slices(self, namespace: str, service: str) -> list[dict[str, Any]]:
        """The EndpointSlices podkit keeps for Service ``service``."""
        return _json(self.discovery.list_namespaced_endpoint_slice(
            namespace, label_selector=f"kubernetes.io/service-name={service},"
            f"endpointslice.kubernetes.io/managed-by={ENDPOINTS_MANAGER}",
            _preload_content=False))["items"]

    def delete_endpoint_slice(self, namespace: str, name: str) -> None:
        with _tolerating(404):
            self.discovery.delete_namespaced_endpoint_slice(name, namespace,
                                                            _preload_content=False)

    # --- leader election (podkit_operator.leader) ------------------------------------------
    def get_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        with _tolerating(404):
            return _json(self.coordination.read_namespaced_lease(name, namespace,
                                                                 _preload_content=False))
        return None

    def write_lease(self, body: dict[str, Any]) -> bool:
        """Create the Lease (no resourceVersion) or replace the version read (with one);
        False when another writer got there first (409: the caller reads again)."""
        meta = body["metadata"]
        try:
            if meta.get("resourceVersion"):
                self.coordination.replace_namespaced_lease(meta["name"], meta["namespace"], body,
                                                           _preload_content=False)
            else:
                self.coordination.create_namespaced_lease(meta["namespace"], body,
                                                          _preload_content=False)
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise
        return True
