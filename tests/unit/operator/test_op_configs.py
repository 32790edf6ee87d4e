"""Config grayscale release, pure parts: copy names and hashes, GC rules, the sidecar's
verdict, and whole config releases through the planner against a fake kubelet and sidecar."""

from __future__ import annotations

import copy
import dataclasses
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from op_sim import T0, V1, V2, Sim, kubelet, make_stsp
from podkit.configdir import content_hash, write_like_kubelet
from podkit_operator.api.configcopy import ConfigCopy, copy_name
from podkit_operator.api.keys import ANN_CONFIG_APPLIED as ANN_APPLIED
from podkit_operator.api.keys import ANN_FAILED, ANN_REVISION, ANN_TARGET
from podkit_operator.api.statefulsetplus import SpecError, parse_spec
from podkit_operator.configreleases.copies import (
    data_hash,
    newest,
    next_version,
    owners_with,
    parse_copy,
    to_delete,
    versioned_copy,
    with_copies,
)
from podkit_operator.inplace.config import (
    Applied,
    HookFailed,
    Pending,
    config_key,
    sidecar_dir,
    verdict,
    volume_sources,
)
from podkit_operator.inplace.patches import merge_patches
from podkit_operator.inplace.pods import build_pod
from podkit_operator.inplace.steps import Done, Failed, PatchPod, Wait, swap_step
from podkit_operator.releases.plan import plan_release
from podkit_operator.revisions.revision import RevisionInfo

GOOD, BETTER, BAD = {"greeting": "hello"}, {"greeting": "hi there"}, {"greeting": "boom"}


def source(data: dict[str, str], name: str = "cfg") -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "default", "uid": f"uid-{name}"},
            "data": dict(data)}


def config_stsp(image: str = V1, replicas: int = 6, batches: int = 3, **kw: Any) -> dict:
    stsp = make_stsp(replicas=replicas, image=image, batch_num=batches, **kw)
    spec = stsp["spec"]
    spec["configMaps"] = ["cfg"]
    spec["podkit"] = {"configHook": "signal:HUP"}
    tspec = spec["template"]["spec"]
    tspec["volumes"] = [{"name": "cfg", "configMap": {"name": "cfg"}},
                        {"name": "other", "configMap": {"name": "static"}}]
    tspec["containers"][0]["volumeMounts"] = [{"name": "cfg", "mountPath": "/etc/demo"}]
    return stsp


# --- names, hashes, copies --------------------------------------------------------------------

def test_the_copy_hash_is_the_hash_the_sidecar_computes_of_the_projected_files(
        tmp_path: Path) -> None:
    cm = source({"greeting": "hello\n", "limits.yaml": "max: 3\n"})
    write_like_kubelet(tmp_path, {k: v.encode() for k, v in cm["data"].items()})
    assert content_hash(tmp_path) == data_hash(cm)
    assert copy_name("cfg", data_hash(cm)) == f"cfg-{data_hash(cm)[:10]}"


def test_binary_data_counts_and_any_change_changes_the_hash() -> None:
    base = source(GOOD)
    with_binary = {**base, "binaryData": {"logo": "AAEC"}}
    assert data_hash(with_binary) != data_hash(base)
    assert data_hash(source({"greeting": "hello "})) != data_hash(base)
    assert data_hash(source(dict(GOOD))) == data_hash(base)


def test_a_copy_is_immutable_labelled_versioned_and_owned_by_the_stsp() -> None:
    cm = source(GOOD)
    body = versioned_copy(cm, data_hash(cm), 4, config_stsp())
    assert body["immutable"] is True
    assert body["data"] == GOOD and body["data"] is not cm["data"]
    assert body["metadata"]["name"] == copy_name("cfg", data_hash(cm))
    assert body["metadata"]["labels"] == {"podkit.io/config-source": "cfg",
                                          "podkit.io/config-version": "4"}
    assert body["metadata"]["ownerReferences"] == [
        {"apiVersion": "podkit.io/v1alpha1", "kind": "StatefulSetPlus", "name": "web",
         "uid": "uid-1"}]  # not the source: deleting or re-creating it keeps the copies
    assert parse_copy(body) == ConfigCopy(body["metadata"]["name"], "cfg", 4, data_hash(cm))
    assert parse_copy(cm) is None  # the source itself is no copy
    assert next_version([parse_copy(body)]) == 5 and next_version([]) == 1


def test_a_config_edit_is_a_new_revision_and_the_same_data_the_same_revision() -> None:
    spec = config_stsp()["spec"]
    names = {}
    for label, data in (("good", GOOD), ("better", BETTER), ("good-again", dict(GOOD))):
        template = with_copies(spec["template"], {"cfg": copy_name("cfg", data_hash(source(data)))})
        names[label] = RevisionInfo.from_template("web", template).name
        vols = volume_sources(template["spec"], ["cfg", "other"])
        assert vols["other"] == "static"  # a ConfigMap not released is left as named
    assert names["good"] == names["good-again"] != names["better"]
    assert spec["template"]["spec"]["volumes"][0]["configMap"]["name"] == "cfg"  # not mutated


def test_gc_keeps_the_newest_per_source_and_never_one_in_use() -> None:
    copies = [ConfigCopy(f"cfg-{v:010d}", "cfg", v, "h") for v in range(1, 15)]
    copies += [ConfigCopy(f"log-{v:010d}", "log", v, "h") for v in range(1, 4)]
    doomed = to_delete(copies, 10, in_use={"cfg-0000000002"})
    assert doomed == ["cfg-0000000001", "cfg-0000000003", "cfg-0000000004"]
    assert to_delete(copies, 1, in_use=[]) == sorted(
        [c.name for c in copies if c.version < (14 if c.source == "cfg" else 3)])
    assert to_delete(copies, 20, in_use=[]) == []


# --- the sidecar's report -----------------------------------------------------------------------

H_GOOD, H_BETTER = data_hash(source(GOOD)), data_hash(source(BETTER))
C_GOOD, C_BETTER = copy_name("cfg", H_GOOD), copy_name("cfg", H_BETTER)
DIR = sidecar_dir("cfg")


def state(hashes: str, last: str | None = None, ok: bool = True) -> dict[str, Any]:
    reload = None if last is None else {"hashes": {DIR: last}, "ok": ok, "message": "exit 1"}
    return {"config": {"hook": "restart", "hashes": {DIR: hashes}, "last_reload": reload}}


@pytest.mark.parametrize("report, expected", [
    (None, Pending),  # not reachable
    (state(H_GOOD), Pending),  # the kubelet has not projected the new copy yet
    (state(H_BETTER, H_GOOD), Pending),  # the hook runs for the new content
    (state(H_BETTER), Applied),  # started with it
    (state(H_BETTER, H_BETTER), Applied),
    (state(H_BETTER, H_BETTER, ok=False), HookFailed),
    ({"ready": True}, HookFailed),  # a sidecar that watches no config directory
    ({"config": {"hook": "none", "hashes": {"/other": H_BETTER}}}, HookFailed),
])
def test_verdict(report: dict | None, expected: type) -> None:
    assert isinstance(verdict(report, {"cfg": C_BETTER}), expected)


# --- spec and pods --------------------------------------------------------------------------

@pytest.mark.parametrize("change, message", [
    (lambda s: s["template"]["spec"].pop("volumes"), "no configMap volume of the template"),
    (lambda s: s["template"]["spec"]["volumes"][0]["configMap"].update(
        items=[{"key": "greeting", "path": "g"}]), "mounted whole"),
    (lambda s: s["updateStrategy"].update(type="InPlace"), "needs updateStrategy.type ABSwap"),
    (lambda s: s["podkit"].update(configHook="reload"), "podkit.configHook: unknown"),
    (lambda s: s.update(configHistoryLimit=0), "spec.configHistoryLimit is 0"),
])
def test_bad_config_specs_say_what_to_fix(change: Any, message: str) -> None:
    spec = config_stsp()["spec"]
    change(spec)
    with pytest.raises(SpecError, match=message):
        parse_spec(spec)


def test_a_pod_sidecar_watches_the_released_volumes_and_starts_applied() -> None:
    stsp = config_stsp()
    spec = parse_spec(stsp["spec"])
    assert spec.config_volumes == ("cfg",) and spec.config_history_limit == 10
    template = with_copies(stsp["spec"]["template"], {"cfg": C_GOOD})
    pod = build_pod(stsp, spec, 0, "web-r1", template, patched=True)
    sidecar = pod["spec"]["containers"][-1]
    env = {e["name"]: e["value"] for e in sidecar["env"]}
    assert env["PODKIT_CONFIG_DIRS"] == DIR and env["PODKIT_CONFIG_HOOK"] == "signal:HUP"
    assert {"name": "cfg", "mountPath": DIR, "readOnly": True} in sidecar["volumeMounts"]
    assert pod["metadata"]["annotations"][ANN_APPLIED] == f"cfg={C_GOOD}"
    assert config_key(pod["spec"], ["cfg"]) == f"cfg={C_GOOD}"


def test_volume_patches_merge_by_name() -> None:
    a = {"spec": {"volumes": [{"name": "cfg", "configMap": {"name": "x"}}]}}
    b = {"metadata": {"annotations": {"k": "v"}},
         "spec": {"containers": [{"name": "web-a", "image": "i"}],
                  "volumes": [{"name": "cfg", "configMap": {"name": "y"}}]}}
    assert merge_patches(a, b) == {"metadata": {"annotations": {"k": "v"}},
                                   "spec": {"containers": [{"name": "web-a", "image": "i"}],
                                            "volumes": [{"name": "cfg",
                                                         "configMap": {"name": "y"}}]}}


# --- whole releases ---------------------------------------------------------------------------

class ConfigSim(Sim):
    """The operator's loop with released ConfigMap ``cfg``: revisions mount its current copy
    (as the controller resolves them); the kubelet projects a switched volume one tick later;
    the sidecar reports the projected content, its hook failing on ``bad`` contents."""

    def __init__(self, stsp: dict[str, Any], data: dict[str, str], patched: bool = True):
        super().__init__(stsp, patched=patched)
        self.copies: dict[str, ConfigCopy] = {}
        self.bad_configs: set[str] = set()
        self.projected: dict[str, str] = {}  # pod -> the copy its sidecar sees
        self.hooked: dict[str, tuple[str, bool]] = {}  # pod -> (copy, ok) of the last hook
        self.edit(data)

    def edit(self, data: dict[str, str]) -> str:
        """The user edits the ConfigMap: its content's copy (made once per content)."""
        h = data_hash(source(data))
        name = copy_name("cfg", h)
        self.copies.setdefault(name, ConfigCopy(name, "cfg", next_version(self.copies.values()), h))
        self.current_copy = name
        return name

    def revisions(self):
        revs = super().revisions() if not self.patched else self._with_copy()
        return dataclasses.replace(revs, copies=dict(self.copies))

    def _with_copy(self):
        user = self.stsp["spec"]["template"]
        self.stsp["spec"]["template"] = with_copies(user, {"cfg": self.current_copy})
        try:
            return super().revisions()
        finally:
            self.stsp["spec"]["template"] = user

    def sidecar_state(self, name: str) -> dict[str, Any] | None:
        seen = self.projected.get(name)
        if seen is None:
            return None
        hashes = {DIR: self.copies[seen].hash}
        last = self.hooked.get(name)
        reload = None if last is None else {
            "hashes": {DIR: self.copies[last[0]].hash}, "ok": last[1], "message": "exit 1"}
        return {"config": {"hook": "signal:HUP", "hashes": hashes, "last_reload": reload}}

    def plan(self):
        states = {n: s for n in self.pods if (s := self.sidecar_state(n)) is not None}
        return plan_release(copy.deepcopy(self.stsp), copy.deepcopy(list(self.pods.values())),
                            self.revisions(), self.now, self.patched, self.max_concurrent,
                            sidecar_states=states)

    def apply(self, plan, keep=lambda action: True, write_status: bool = True) -> None:
        # the kubelet projects what the pods mounted before this plan, then runs the hook
        for name in self.pods:
            mounted = self.mounted(name)
            if self.projected.get(name) not in (None, mounted):
                self.hooked[name] = (mounted, mounted not in self.bad_configs)
            self.projected[name] = mounted
        for p in plan.patches:
            if keep(p) and p.name in self.pods:
                for vol in (p.patch.get("spec") or {}).get("volumes") or []:
                    mine = next(v for v in self.pods[p.name]["spec"]["volumes"]
                                if v["name"] == vol["name"])
                    mine["configMap"].update(vol["configMap"])
        super().apply(plan, keep, write_status)

    def mounted(self, name: str) -> str:
        return volume_sources(self.pods[name]["spec"], ["cfg"])["cfg"]

    def mounts(self) -> dict[int, str]:
        return {o: self.mounted(f"web-{o}") for o in range(len(self.pods))}

    @property
    def config_status(self) -> dict[str, Any]:
        return self.stsp["status"]["configMaps"][0]


def settle(sim: ConfigSim) -> None:
    """Tick until the release rests: completed, waiting for a confirmation, or failed and
    rolled back, with no update under way on any pod."""
    def resting(s: ConfigSim) -> bool:
        bds = s.bds
        rests = (bds.get("action") == "Completed" if bds.get("generalStatus") == "Failed"
                 else bds.get("generalStatus") in ("Completed", "WaitToConfirm")
                 and bds.get("currentDeployComplete"))
        return bool(rests) and not any(ANN_TARGET in p["metadata"]["annotations"]
                                       for p in s.pods.values())
    sim.run(resting)


def test_a_config_release_switches_volumes_in_place_batch_by_batch() -> None:
    sim = ConfigSim(config_stsp(auto=False), GOOD)
    settle(sim)
    old, images = sim.current_copy, {o: sim.images(o) for o in range(6)}
    assert set(sim.mounts().values()) == {old}
    new = sim.edit(BETTER)
    for k, upto in ((1, 2), (2, 4), (3, 6)):  # 6 pods in 3 batches, highest ordinals first
        if k > 1:
            sim.annotate("podkit.io/confirm-batch", str(k))
        settle(sim)
        assert sim.mounts() == {o: new if o >= 6 - upto else old for o in range(6)}
        assert sim.config_status["batchVersions"] == [
            "2", "2" if k >= 2 else "1", "2" if k >= 3 else "1"]
    assert sim.config_status == {"name": "cfg", "currentCopy": new, "currentVersion": 2,
                                 "updateCopy": new, "updateVersion": 2,
                                 "batchVersions": ["2", "2", "2"]}
    assert {o: sim.images(o) for o in range(6)} == images  # no container changed
    assert all(sim.hooked[f"web-{o}"] == (new, True) for o in range(6))
    assert sim.stsp["status"]["updatedReplicas"] == 6
    assert sorted(sim.starts.values()) == [1] * 6


def test_a_pod_waits_for_the_sidecar_before_it_counts_as_updated() -> None:
    stsp = config_stsp(replicas=1, batches=1)
    sim = ConfigSim(stsp, GOOD)
    settle(sim)
    sim.edit(BETTER)
    plan = sim.tick()
    assert [p.patch["spec"]["volumes"] for p in plan.patches] == [
        [{"name": "cfg", "configMap": {"name": sim.current_copy}}]]
    plan = sim.tick()  # the kubelet projects it now: the sidecar has not run the hook yet
    assert not plan.patches and sim.bds["currentOrderProgress"] == "0/1"
    plan = sim.tick()  # the hook ran: the report is recorded on the pod
    assert plan.patches[0].patch["metadata"]["annotations"][ANN_APPLIED] == \
        f"cfg={sim.current_copy}"
    settle(sim)
    assert sim.bds["generalStatus"] == "Completed" and sim.bds["currentOrderProgress"] == "1/1"


def test_a_failing_hook_stops_the_release_and_rolls_the_batch_back() -> None:
    sim = ConfigSim(config_stsp(), GOOD)
    settle(sim)
    old = sim.current_copy
    bad = sim.edit(BAD)
    sim.bad_configs.add(bad)
    settle(sim)
    assert sim.bds["generalStatus"] == "Failed"
    assert set(sim.mounts().values()) == {old}  # batch 1 back on the old copy
    assert sim.hooked["web-5"] == sim.hooked["web-4"] == (old, True)  # hook ran for it again
    assert "web-3" not in sim.hooked  # batch 2 was never touched
    assert sim.pods["web-5"]["metadata"]["annotations"][ANN_FAILED] == \
        sim.stsp["status"]["updateRevision"]
    failed = [e for p in sim.plans for e in p.events if e.reason == "UpdateFailed"]
    assert "config hook signal:HUP failed" in failed[0].message
    cond = {c["type"]: c for c in sim.stsp["status"]["conditions"]}
    assert cond["ReleaseFailed"]["status"] == "True"
    # a fixed config is a new release that goes through
    sim.edit(BETTER)
    settle(sim)
    assert sim.bds["generalStatus"] == "Completed"
    assert set(sim.mounts().values()) == {sim.current_copy}


def test_one_key_rollback_of_a_config_release() -> None:
    sim = ConfigSim(config_stsp(), GOOD)
    settle(sim)
    old, first = sim.current_copy, sim.stsp["status"]["currentRevision"]
    sim.edit(BETTER)
    settle(sim)
    sim.annotate("podkit.io/rollback", "true")
    settle(sim)
    assert set(sim.mounts().values()) == {old}
    assert sim.stsp["status"]["currentRevision"] == first
    assert sim.config_status["currentVersion"] == 1
    assert all(p["metadata"]["annotations"][ANN_APPLIED] == f"cfg={old}"
               for p in sim.pods.values())


def test_image_and_config_together_switch_the_config_first_then_swap() -> None:
    sim = ConfigSim(config_stsp(replicas=1, batches=1), GOOD)
    settle(sim)
    sim.set_image(V2)
    new = sim.edit(BETTER)
    plan = sim.tick()
    assert "containers" not in plan.patches[0].patch["spec"]  # the volume alone first
    settle(sim)
    assert sim.mounted("web-0") == new and V2 in sim.images(0)
    order = [p.reason for pl in sim.plans for p in pl.patches]
    assert order.index(next(r for r in order if r.startswith("config: volume"))) < \
        order.index(next(r for r in order if r.startswith("step 1")))


def test_a_stock_cluster_refuses_config_grayscale_in_a_condition() -> None:
    sim = ConfigSim(config_stsp(), GOOD, patched=False)
    sim.current_copy = "cfg"  # the controller makes no copy there: pods mount the source
    settle(sim)
    assert set(sim.mounts().values()) == {"cfg"}
    cond = {c["type"]: c for c in sim.stsp["status"]["conditions"]}["ConfigGrayscale"]
    assert (cond["status"], cond["reason"]) == ("False", "StockCluster")
    assert "refused" in cond["message"]
    refused = [e for p in sim.plans for e in p.events if e.reason == "ConfigGrayscaleRefused"]
    assert len(refused) == 1 and refused[0].type == "Warning"  # once, not every pass
    assert "configMaps" not in sim.stsp["status"]


def test_the_step_is_idempotent_and_waits_while_the_report_is_pending() -> None:
    stsp = config_stsp()
    spec = parse_spec(stsp["spec"])
    r1 = RevisionInfo.from_template("web", with_copies(stsp["spec"]["template"], {"cfg": C_GOOD}))
    r2 = RevisionInfo.from_template("web", with_copies(stsp["spec"]["template"],
                                                      {"cfg": C_BETTER}))
    pod = build_pod(stsp, spec, 0, r1.name, r1.template, patched=True)
    kubelet(pod)
    first = swap_step(pod, r2, spec, True, T0)
    assert isinstance(first, PatchPod) and first == swap_step(pod, r2, spec, True, T0)
    pod["metadata"]["annotations"].update(first.patch["metadata"]["annotations"])
    pod["spec"]["volumes"][0]["configMap"]["name"] = C_BETTER
    assert isinstance(swap_step(pod, r2, spec, True, T0, sidecar_state=state(H_GOOD)), Wait)
    assert isinstance(swap_step(pod, r2, spec, True, T0, sidecar_state=None), Wait)
    failed = swap_step(pod, r2, spec, True, T0, sidecar_state=state(H_BETTER, H_BETTER, False))
    assert isinstance(failed, Failed) and "exit 1" in failed.reason
    late = swap_step(pod, r2, spec, True, T0 + timedelta(seconds=601), sidecar_state=None)
    assert isinstance(late, Failed) and "did not finish" in late.reason  # the deadline holds
    ok = swap_step(pod, r2, spec, True, T0, sidecar_state=state(H_BETTER, H_BETTER))
    assert isinstance(ok, PatchPod)
    pod["metadata"]["annotations"].update(ok.patch["metadata"]["annotations"])
    done = swap_step(pod, r2, spec, True, T0)  # same image: a relabel finishes it
    assert isinstance(done, Done) and done.patch["metadata"]["annotations"][ANN_REVISION] == r2.name


def test_a_copy_gains_each_stsp_as_owner_and_loses_its_source() -> None:
    older = versioned_copy(source(GOOD), data_hash(source(GOOD)), 1, config_stsp())
    older["metadata"]["ownerReferences"] = [{"apiVersion": "v1", "kind": "ConfigMap",
                                             "name": "cfg", "uid": "uid-cfg"}]
    owners = owners_with(older, config_stsp())
    assert owners is not None and [o["kind"] for o in owners] == ["StatefulSetPlus"]
    older["metadata"]["ownerReferences"] = owners
    assert owners_with(older, config_stsp()) is None  # already so: no write
    other = config_stsp()
    other["metadata"] = {**other["metadata"], "name": "api", "uid": "uid-2"}
    shared = owners_with(older, other)
    assert shared is not None and [o["uid"] for o in shared] == ["uid-1", "uid-2"]


def test_newest_copy() -> None:
    copies = [ConfigCopy("cfg-a", "cfg", 1, "a"), ConfigCopy("cfg-b", "cfg", 3, "b")]
    assert newest(copies) == copies[1] and newest([]) is None
