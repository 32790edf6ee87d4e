"""Every ``podkit.io`` name on the wire: the CRD's group and kind, labels, annotations.

The wire keys live beside the API types (as OpenKruise keeps ``apps.kruise.io/...`` keys in
``apis/apps/pub``), so the operator, its tests and the e2e helpers spell each key once.
"""

from __future__ import annotations

GROUP = "podkit.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "StatefulSetPlus"
PLURAL = "statefulsetplus"
SHORT_NAME = "stsp"
CRD_NAME = f"{PLURAL}.{GROUP}"

# --- labels ----------------------------------------------------------------------------------
LABEL_STSP = "podkit.io/stsp"  # on pods and ControllerRevisions: the StatefulSetPlus they belong to
LABEL_CONFIG_SOURCE = "podkit.io/config-source"  # on a config copy: the ConfigMap it copies
LABEL_CONFIG_VERSION = "podkit.io/config-version"  # on a config copy: 1, 2, ... per source

# --- annotations on a StatefulSetPlus (a user's steering) ---------------------------------------
ANN_PAUSE = "podkit.io/pause-batch-deploy"  # "true": start no new pod update
ANN_CONFIRM = "podkit.io/confirm-batch"  # manual mode: batches up to this number may start
ANN_ROLLBACK = "podkit.io/rollback"  # "true": one-key rollback

# --- annotations on a pod ----------------------------------------------------------------------
ANN_REVISION = "podkit.io/revision"  # the revision the pod is at
ANN_ACTIVE_SLOT = "podkit.io/active-slot"  # "a" or "b": the slot that serves
ANN_TARGET = "podkit.io/target-revision"  # an update under way, to this revision
ANN_STARTED = "podkit.io/swap-started"  # when that update started (RFC 3339)
ANN_FAILED = "podkit.io/swap-failed"  # the revision whose update failed on this pod
ANN_MUTABLE = "podkit.io/mutable-spec"  # "true": opted in to in-place env/volume changes
ANN_CONFIG_APPLIED = "podkit.io/config-applied"  # the copies its sidecar reported applied
ANN_SERVING_SINCE = "podkit.io/serving-since"  # when the serving container took over (RFC 3339)
ANN_SERVING_RUN = "podkit.io/serving-run"  # that container's run: name|ID|restarts|startedAt
ANN_REPLACED = "podkit.io/replaced-containers"  # name=containerID of containers re-imaged

# --- annotations on other objects ---------------------------------------------------------------
ANN_CONFIG_HASH = "podkit.io/config-hash"  # on a config copy: its full content hash
# on a revision's template (and so its pods): spec.podkit's settings, when not the defaults
ANN_PAUSE_IMAGE = "podkit.io/pause-image"
ANN_SIDECAR_IMAGE = "podkit.io/sidecar-image"
ANN_CONFIG_HOOK = "podkit.io/config-hook"
ANN_ENDPOINTS_OF = "podkit.io/endpoints-of"  # on a Service: the StatefulSetPlus it fronts

# The EndpointSlice ``endpointslice.kubernetes.io/managed-by`` value of the slices podkit keeps.
ENDPOINTS_MANAGER = "operator.podkit.io"
