"""Image normalisation and batch arithmetic."""

import pytest

from podkit_operator.images import image_tag, normalize_image, same_image
from podkit_operator.releases.batches import (
    batch_members,
    batch_targets,
    started_members,
    update_order,
)


@pytest.mark.parametrize("ref,norm", [
    ("nginx", "docker.io/library/nginx:latest"),
    ("nginx:1.25", "docker.io/library/nginx:1.25"),
    ("docker.io/nginx", "docker.io/library/nginx:latest"),
    ("index.docker.io/library/nginx:1", "docker.io/library/nginx:1"),
    ("user/app:v2", "docker.io/user/app:v2"),
    ("podkit.local/podkit-demo:v1", "podkit.local/podkit-demo:v1"),
    ("podkit.local/podkit-demo", "podkit.local/podkit-demo:latest"),
    ("localhost:5000/app", "localhost:5000/app:latest"),
    ("registry:5000/team/app:v1", "registry:5000/team/app:v1"),
    ("nginx@sha256:abc", "docker.io/library/nginx@sha256:abc"),
    ("nginx:1@sha256:abc", "docker.io/library/nginx:1@sha256:abc"),
])
def test_normalize_image(ref, norm):
    assert normalize_image(ref) == norm


def test_same_image():
    assert same_image("nginx", "docker.io/library/nginx:latest")
    assert same_image("podkit.local/demo:v1", " podkit.local/demo:v1")
    assert not same_image("podkit.local/demo:v1", "podkit.local/demo:v2")
    assert not same_image(None, "nginx")
    assert not same_image("", "")


def test_image_tag():
    assert image_tag("podkit.local/demo:v1") == "v1"
    assert image_tag("localhost:5000/app") == "latest"
    assert image_tag("app@sha256:abc") == "sha256:abc"


@pytest.mark.parametrize("replicas,n,pods,expected", [
    (10, 3, None, [3, 6, 10]),          # even split, smaller batches first
    (6, 3, None, [2, 4, 6]),
    (1, 1, None, [1]),
    (2, 3, None, [0, 1, 2]),            # fewer replicas than batches: empty batches
    (0, 3, None, [0, 0, 0]),
    (6, 3, [1, "50%", "100%"], [1, 3, 6]),
    (5, 2, ["50%", "100%"], [3, 5]),    # percentages round up
    (10, 3, ["1%", "10%", "100%"], [1, 1, 10]),
    (6, 3, [1, 2, 6], [1, 2, 6]),
    (4, 3, [1, 2, 6], [1, 2, 4]),       # counts clamp to replicas (scaled down)
    (8, 3, [1, 2, 6], [1, 2, 8]),       # the last batch always covers every replica
    (10, 3, [1, 2, 3], [1, 2, 10]),     # the last entry is read for its form only: the rest
    (9, 2, ["10%", "50%"], [1, 9]),
    (6, 3, [3, 2, 6], [3, 3, 6]),       # never decreasing
    (6, 2, ["2", "100%"], [2, 6]),      # a count as a string
])
def test_batch_targets(replicas, n, pods, expected):
    assert batch_targets(replicas, n, pods) == expected


def test_even_split_adds_a_pod_per_batch_when_replicas_allow():
    for replicas in range(1, 40):
        for n in range(1, replicas + 1):
            t = batch_targets(replicas, n)
            steps = [b - a for a, b in zip([0] + t, t, strict=False)]
            assert min(steps) >= 1 and t[-1] == replicas and steps[0] == min(steps)


def test_batch_targets_rejects_bad_input():
    with pytest.raises(ValueError):
        batch_targets(6, 0)
    with pytest.raises(ValueError):
        batch_targets(6, 3, [1, 2])
    with pytest.raises(ValueError):
        batch_targets(6, 2, ["150%", "100%"])


def test_order_and_members():
    order = update_order([0, 3, 1, 2, 4, 5])
    assert order == [5, 4, 3, 2, 1, 0]
    targets = batch_targets(6, 3, [1, "50%", "100%"])
    assert batch_members(order, targets, 1) == [5]
    assert batch_members(order, targets, 2) == [4, 3]
    assert batch_members(order, targets, 3) == [2, 1, 0]
    assert batch_members(order, targets, 4) == []
    assert started_members(order, targets, 2) == [5, 4, 3]
    assert started_members(order, targets, 0) == []


def test_the_pods_a_release_reached_come_first_then_those_without_a_pod():
    # web-1 updated before a scale to 6; web-4 has no pod
    order = update_order(range(6), reached={1}, absent={4})
    # the pods done come before those on their way or failed (a later batch's)
    assert update_order(range(3), done={1}, reached={0, 1, 2}) == [1, 2, 0]
    assert order == [1, 4, 5, 3, 2, 0]
    targets = batch_targets(6, 2, [1, "100%"])
    assert started_members(order, targets, 1) == [1]
    assert batch_members(order, targets, 2) == [4, 5, 3, 2, 0]
    # ordinals outside the range are not pods of the order, reached or not
    assert update_order(range(2), reached={7}) == [1, 0]
