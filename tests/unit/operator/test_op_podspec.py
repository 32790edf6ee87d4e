"""Pod bodies built from a template."""

import json

from op_sim import V1, make_stsp, template
from podkit_operator.api.statefulsetplus import parse_spec
from podkit_operator.inplace.pods import (
    build_plain_pod,
    build_pod,
    ordinal_of,
    pod_name,
    slot_names,
)


def _env(c):
    return {e["name"]: e.get("value") for e in c.get("env", [])}


def _pod(patched=False, tmpl=None):
    stsp = make_stsp()
    if tmpl is not None:
        stsp["spec"]["template"] = tmpl
    spec = parse_spec(stsp["spec"])
    return build_pod(stsp, spec, 2, "web-rev1", spec.template, patched)


def test_names():
    assert slot_names("web") == ("web-a", "web-b")
    assert pod_name("web", 3) == "web-3"
    assert ordinal_of("web", {"metadata": {"name": "web-12"}}) == 12
    assert ordinal_of("web", {"metadata": {"name": "web-x"}}) is None
    assert ordinal_of("web", {"metadata": {"name": "web-01"}}) is None
    assert ordinal_of("web", {"metadata": {"name": "webby-1"}}) is None


def test_swap_pod_containers():
    pod = _pod()
    a, b, side = pod["spec"]["containers"]
    assert (a["name"], b["name"], side["name"]) == ("web-a", "web-b", "podkit-sidecar")
    assert a["image"] == V1 and b["image"] == "podkit.local/podkit-pause:dev"
    assert side["image"] == "podkit.local/podkit-sidecar:dev"
    assert a["ports"] == [{"name": "http", "containerPort": 8080}] and "ports" not in b
    for c, slot in ((a, "a"), (b, "b")):
        assert c["readinessProbe"]["httpGet"] == {"path": f"/readyz/slot/{c['name'][-1]}",
                                                  "port": 9901}
        assert c["readinessProbe"]["periodSeconds"] == 1
        assert {"name": "podkit", "mountPath": "/podkit"} in c["volumeMounts"]
        assert {"name": "podkit-shm", "mountPath": "/dev/shm"} in c["volumeMounts"]
        assert _env(c) == {"PODKIT_SLOT": slot, "PODKIT_DIR": "/podkit"}
    assert side["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": 9901}
    assert {"name": "podkit", "mountPath": "/podkit"} in side["volumeMounts"]
    assert pod["spec"]["volumes"] == [{"name": "podkit", "emptyDir": {}},
                                      {"name": "podkit-shm", "emptyDir": {"medium": "Memory"}}]


def test_env_patched_vs_stock():
    tmpl = template(V1, env=[{"name": "PODKIT_VERSION", "value": "1.0"},
                             {"name": "LOG", "value": "debug"}])
    stock = _pod(False, tmpl)
    for c in stock["spec"]["containers"][:2]:
        assert "PODKIT_VERSION" not in _env(c) and _env(c)["LOG"] == "debug"
    assert "podkit.io/mutable-spec" not in stock["metadata"]["annotations"]
    patched = _pod(True, tmpl)
    for c in patched["spec"]["containers"][:2]:
        assert _env(c)["PODKIT_VERSION"] == "1.0"
    assert patched["metadata"]["annotations"]["podkit.io/mutable-spec"] == "true"
    assert _env(_pod(True)["spec"]["containers"][1])["PODKIT_VERSION"] == "v1"


def test_metadata_and_identity():
    pod = _pod()
    meta = pod["metadata"]
    assert meta["name"] == "web-2" and meta["namespace"] == "default"
    assert meta["labels"] == {"app": "web", "podkit.io/stsp": "web"}
    assert meta["annotations"] == {"podkit.io/revision": "web-rev1", "podkit.io/active-slot": "a"}
    ref = meta["ownerReferences"][0]
    assert ref["controller"] is True and ref["uid"] == "uid-1" and ref["kind"] == "StatefulSetPlus"
    assert pod["spec"]["hostname"] == "web-2" and pod["spec"]["subdomain"] == "web"


def test_probes_of_the_business_are_replaced():
    tmpl = template()
    tmpl["spec"]["containers"][0]["livenessProbe"] = {"httpGet": {"path": "/", "port": 8080}}
    tmpl["spec"]["containers"][0]["readinessProbe"] = {"httpGet": {"path": "/", "port": 8080}}
    tmpl["spec"]["containers"][0]["startupProbe"] = {"tcpSocket": {"port": "http"},
                                                     "periodSeconds": 2}
    pod = _pod(tmpl=tmpl)
    a = pod["spec"]["containers"][0]
    assert "livenessProbe" not in a and "startupProbe" not in a
    assert a["readinessProbe"]["httpGet"] == {"path": "/readyz/slot/a", "port": 9901}
    # the sidecar runs them against the active slot, the named port resolved
    env = {e["name"]: e["value"] for e in pod["spec"]["containers"][-1]["env"]}
    assert json.loads(env["PODKIT_PROBES"]) == {
        "liveness": {"httpGet": {"path": "/", "port": 8080}},
        "readiness": {"httpGet": {"path": "/", "port": 8080}},
        "startup": {"tcpSocket": {"port": 8080}, "periodSeconds": 2}}
    assert "PODKIT_PROBES" not in {e["name"] for e in _pod()["spec"]["containers"][-1]["env"]}


def test_extra_containers_and_volumes_kept():
    tmpl = template()
    tmpl["spec"]["containers"].append({"name": "log", "image": "busybox"})
    tmpl["spec"]["volumes"] = [{"name": "cfg", "configMap": {"name": "web"}}]
    pod = _pod(tmpl=tmpl)
    assert [c["name"] for c in pod["spec"]["containers"]] == ["web-a", "web-b", "log",
                                                              "podkit-sidecar"]
    assert [v["name"] for v in pod["spec"]["volumes"]] == ["cfg", "podkit", "podkit-shm"]


def test_template_not_mutated():
    stsp = make_stsp()
    spec = parse_spec(stsp["spec"])
    before = repr(spec.template)
    build_pod(stsp, spec, 0, "r", spec.template, True)
    assert repr(spec.template) == before


def test_plain_pod():
    stsp = make_stsp(strategy="InPlace")
    spec = parse_spec(stsp["spec"])
    pod = build_plain_pod(stsp, spec, 0, "web-r", spec.template)
    assert [c["name"] for c in pod["spec"]["containers"]] == ["web"]
    assert pod["spec"]["containers"][0]["image"] == V1
    assert pod["metadata"]["annotations"] == {"podkit.io/revision": "web-r"}
    assert "volumes" not in pod["spec"]
