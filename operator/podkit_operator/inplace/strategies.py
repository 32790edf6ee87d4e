"""The update strategies as one table: ``updateStrategy.type`` -> its step and pod layout.

The planner looks a strategy up here instead of comparing strings, so a new strategy is one
entry (its step function, how its pods are built, whether an update replaces the pod).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..api.statefulsetplus import Strategy, StsPlusSpec
from ..revisions.revision import RevisionInfo
from .pods import SwapLayout, build_plain_pod, build_pod, swap_layout
from .specdiff import DiffMemo
from .steps import Step, inplace_step, recreate_step, swap_step


@dataclass(frozen=True)
class PodUpdate:
    """One pod's update toward ``target``, with what any strategy's step may need.

    ``previous`` helps a swap tell the active slot; ``sidecar_state`` is the pod's sidecar
    ``/state`` while it awaits a config report (see :func:`~.steps.swap_step`); ``layout`` is
    the target's pod layout built once for the pass (:attr:`StrategyRules.layout`);
    ``diffs`` the release loop's memo of comparisons."""

    pod: dict[str, Any]
    target: RevisionInfo
    spec: StsPlusSpec
    now: datetime
    patched: bool
    previous: RevisionInfo | None = None
    sidecar_state: dict[str, Any] | None = None
    soak_s: int = 0  # minReadySeconds of a release's update (0 for a way back)
    layout: SwapLayout | None = None
    diffs: DiffMemo | None = None


PodBuilder = Callable[[dict[str, Any], StsPlusSpec, int, str, dict[str, Any], bool],
                      dict[str, Any]]


@dataclass(frozen=True)
class StrategyRules:
    """How one strategy updates a pod."""

    step: Callable[[PodUpdate], Step]
    build_pod: PodBuilder  # (stsp, spec, ordinal, revision, template, patched) -> pod body
    replaces_pods: bool  # an update deletes the pod and creates it again at the target
    # what every pod of a target shares, built once per pass: (spec, template, patched) -> it
    layout: Callable[[StsPlusSpec, dict[str, Any], bool], SwapLayout] | None = None


def _swap(u: PodUpdate) -> Step:
    return swap_step(u.pod, u.target, u.spec, u.patched, u.now, u.previous, u.sidecar_state,
                     u.soak_s, u.layout, u.diffs)


def _in_place(u: PodUpdate) -> Step:
    return inplace_step(u.pod, u.target, u.spec, u.patched, u.now, u.soak_s, u.diffs)


def _recreate(u: PodUpdate) -> Step:
    return recreate_step(u.pod, u.target, u.spec, u.now, u.soak_s)


def _plain_pod(stsp: dict[str, Any], spec: StsPlusSpec, ordinal: int, revision: str,
               template: dict[str, Any], patched: bool) -> dict[str, Any]:
    """A plain pod is the same on a patched cluster: nothing of it changes in place."""
    return build_plain_pod(stsp, spec, ordinal, revision, template)


STRATEGIES: Mapping[Strategy, StrategyRules] = {
    Strategy.AB_SWAP: StrategyRules(_swap, build_pod, replaces_pods=False, layout=swap_layout),
    Strategy.IN_PLACE: StrategyRules(_in_place, _plain_pod, replaces_pods=False),
    Strategy.RECREATE: StrategyRules(_recreate, _plain_pod, replaces_pods=True),
    # as a StatefulSet's rolling update: each pod deleted and created again at the target
    Strategy.ROLLING_UPDATE: StrategyRules(_recreate, _plain_pod, replaces_pods=True),
}
