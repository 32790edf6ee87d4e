"""Random releases with random kills: an operator killed at any point (some writes done, the
status write lost), pause, confirmations, scaling, a pod whose new image crashes, one-key
rollback. Whatever happens: the release ends, no pod (by identity) starts a swap to the update
revision twice, every desired pod exists, no swap is left half done."""

import random
from datetime import timedelta

import pytest
from test_op_release import at, rev

from op_sim import V1, V2, Sim, make_stsp


def _settled(**kw) -> Sim:
    sim = Sim(make_stsp(**kw))
    sim.run(lambda s: s.bds.get("generalStatus") == "Completed"
            and s.stsp["status"]["readyReplicas"] == kw["replicas"])
    sim.started_uid.clear()
    return sim


@pytest.mark.parametrize("seed", range(24))
def test_random_release(seed):
    rnd = random.Random(seed)
    reps = rnd.randint(1, 8)
    bn = rnd.randint(1, reps)
    auto = rnd.random() < 0.6
    strategy = rnd.choice(["ABSwap", "ABSwap", "InPlace", "Recreate"])
    sim = _settled(replicas=reps, batch_num=bn, max_failed=rnd.choice([0, 50, 100]), auto=auto,
                   interval=rnd.choice([0, 0, 5]), deadline=rnd.choice([15, 600]),
                   strategy=strategy)
    sim.set_image(V2)
    if rnd.random() < 0.4:
        sim.bad_on[f"web-{rnd.randrange(reps)}"] = {V2}
    rollback = seed % 3 == 0
    kill_p = rnd.choice([0.0, 0.2, 0.5])
    final = None
    for i in range(600):
        sim.now += timedelta(seconds=rnd.choice([0.5, 1, 3]))
        r = rnd.random()
        if i >= 400 and r < 0.06:
            pass  # from 400 on the release is let go: unpaused, every batch confirmed
        elif r < 0.03:
            sim.annotate("podkit.io/pause-batch-deploy", rnd.choice(["true", None]))
        elif r < 0.06 and not auto:
            sim.annotate("podkit.io/confirm-batch", str(rnd.randint(1, bn)))
        elif r < 0.08:
            sim.stsp["spec"]["replicas"] = rnd.randint(bn, 8)
        if i == 200 and rollback:
            sim.annotate("podkit.io/rollback", "true")
        if i == 400:
            sim.annotate("podkit.io/pause-batch-deploy", None)
            sim.annotate("podkit.io/confirm-batch", str(bn))
        plan = sim.plan()
        if i < 400 and rnd.random() < kill_p:
            # the operator writes the status first (releases.handlers.apply_plan): a kill
            # loses the whole pass, or the pod writes after the status
            status_written = rnd.random() < 0.3
            sim.apply(plan, keep=lambda a: status_written and rnd.random() < 0.5,
                      write_status=status_written)
            continue
        sim.apply(plan)
        if i > 400 and sim.bds.get("generalStatus") in ("Completed", "Failed") and not (
                plan.patches or plan.create or plan.delete):
            final = sim.bds["generalStatus"]
            break
    assert final, sim.bds
    n = sim.stsp["spec"]["replicas"]
    assert sorted(sim.pods) == sorted(f"web-{o}" for o in range(n))
    forward = [p for p, t in sim.started_uid if t == rev(V2)]
    if strategy == "ABSwap":
        assert len(forward) == len(set(forward)), forward
    for o in range(n):
        ann = sim.pods[f"web-{o}"]["metadata"]["annotations"]
        assert "podkit.io/target-revision" not in ann and sim.revision_of(o) in (rev(V1), rev(V2))
    if rollback:
        assert final == "Completed" and at(sim, rev(V1)) == list(range(n))
        assert sim.stsp["status"]["currentRevision"] == rev(V1)
    elif final == "Completed" and not sim.bad_on:
        # without a bad version only a deadline fails a swap (a 15 s batchDeadlineSeconds is
        # less than some swaps with a 10 s soak take), and the release completes around it
        failures = [e.message for p in sim.plans for e in p.events if e.reason == "UpdateFailed"]
        assert all(m.endswith("the batch deadline passed") for m in failures), failures
        failed = {o for o in range(n) if sim.pods[f"web-{o}"]["metadata"]["annotations"]
                  .get("podkit.io/swap-failed") == rev(V2)}
        assert at(sim, rev(V2)) == sorted(set(range(n)) - failed)
