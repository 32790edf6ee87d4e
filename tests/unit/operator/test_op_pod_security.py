"""The securityContexts, resources and token the operator gives a swap pod's containers."""

import copy

from op_sim import make_stsp
from podkit_operator.api.statefulsetplus import parse_spec
from podkit_operator.inplace.pods import (
    SIDECAR_RESOURCES,
    build_pod,
    restricted_context,
    sidecar_token,
)

RESTRICTED = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
              "runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}


def _pod(container_ctx=None, pod_ctx=None):
    stsp = make_stsp()
    tmpl = stsp["spec"]["template"]
    if container_ctx is not None:
        tmpl["spec"]["containers"][0]["securityContext"] = container_ctx
    if pod_ctx is not None:
        tmpl["spec"]["securityContext"] = pod_ctx
    spec = parse_spec(stsp["spec"])
    return build_pod(stsp, spec, 0, "web-r1", spec.template, True)


def test_a_template_without_a_security_context_gets_restricted_slots_and_sidecar():
    a, b, side = _pod()["spec"]["containers"]
    assert a["securityContext"] == b["securityContext"] == side["securityContext"] == RESTRICTED


def test_what_the_template_sets_wins_and_the_rest_is_filled_in():
    ctx = {"capabilities": {"add": ["SYS_NICE"]}, "runAsUser": 0}
    a, b, side = _pod(copy.deepcopy(ctx))["spec"]["containers"]
    assert a["securityContext"] == b["securityContext"] == {
        "allowPrivilegeEscalation": False, "runAsUser": 0,
        "capabilities": {"add": ["SYS_NICE"], "drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"}}  # uid 0 named: no runAsNonRoot
    # the sidecar follows the slots' uid (their control socket is 0600), never their caps
    assert side["securityContext"] == {**RESTRICTED, "runAsUser": 0, "runAsNonRoot": False}


def test_pod_level_settings_count_and_are_not_repeated():
    pod_ctx = {"runAsNonRoot": True, "runAsUser": 1000, "runAsGroup": 2000,
               "seccompProfile": {"type": "Localhost", "localhostProfile": "p.json"}}
    a, _, side = _pod(pod_ctx=pod_ctx)["spec"]["containers"]
    assert a["securityContext"] == {"allowPrivilegeEscalation": False,
                                    "capabilities": {"drop": ["ALL"]}}
    assert side["securityContext"]["runAsUser"] == 1000
    assert side["securityContext"]["runAsGroup"] == 2000


def test_explicit_opt_outs_are_kept():
    ctx = {"allowPrivilegeEscalation": True, "capabilities": {"drop": []},
           "runAsNonRoot": False, "seccompProfile": {"type": "Unconfined"}}
    assert restricted_context(ctx, None) == ctx
    assert ctx["capabilities"] == {"drop": []}  # the template itself is never changed


def test_the_sidecar_has_requests_and_limits():
    side = _pod()["spec"]["containers"][2]
    assert side["resources"] == SIDECAR_RESOURCES
    assert set(side["resources"]) == {"requests", "limits"}
    assert set(side["resources"]["limits"]) == {"cpu", "memory"}


def test_every_pod_gets_its_own_sidecar_token_and_the_operator_reads_it_back():
    first, second = _pod(), _pod()
    token = sidecar_token(first)
    assert token is not None and len(token) >= 32
    assert token != sidecar_token(second)
    assert sidecar_token({"spec": {"containers": [{"name": "web-a"}]}}) is None
