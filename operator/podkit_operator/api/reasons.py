"""Condition types, condition reasons and event reasons, as named constants.

The planner emits them and the controller counts them (metrics); tests and users match them.
They are ``StrEnum`` members, so they compare equal to (and serialise as) their strings.
"""

from __future__ import annotations

from enum import StrEnum


class EventReason(StrEnum):
    """The ``reason`` of the operator's events."""

    RELEASE_STARTED = "ReleaseStarted"
    RELEASE_COMPLETED = "ReleaseCompleted"
    BATCH_STARTED = "BatchStarted"
    BATCH_COMPLETED = "BatchCompleted"
    BATCH_FAILED = "BatchFailed"
    UPDATE_STARTED = "UpdateStarted"
    UPDATE_COMPLETED = "UpdateCompleted"
    UPDATE_FAILED = "UpdateFailed"
    ROLLBACK_STARTED = "RollbackStarted"
    CONFIG_GRAYSCALE_REFUSED = "ConfigGrayscaleRefused"
    INVALID_SPEC = "InvalidSpec"
    SERVING_FAILED = "ServingFailed"  # a pod's serving container restarted or turned unready
    POD_STUCK_TERMINATING = "PodStuckTerminating"


class ConditionType(StrEnum):
    """The ``type`` of a StatefulSetPlus's status conditions."""

    SWAP_MODE = "SwapMode"
    PROGRESSING = "Progressing"
    RELEASE_FAILED = "ReleaseFailed"
    CONFIG_GRAYSCALE = "ConfigGrayscale"
    TERMINATION_STUCK = "TerminationStuck"  # a pod deleted long ago is still there
    CONFIG_SOURCES = "ConfigSourcesPresent"


class ConditionReason(StrEnum):
    """The ``reason`` of a condition (``Progressing`` carries a :class:`GeneralStatus`)."""

    PATCHED = "Patched"
    STOCK = "Stock"
    BATCH_FAILED = "BatchFailed"
    ROLLBACK_FAILED = "RollbackFailed"
    NO_FAILURE = "NoFailure"
    ENABLED = "Enabled"
    STOCK_CLUSTER = "StockCluster"
    POD_STUCK_TERMINATING = "PodStuckTerminating"
    NONE_STUCK = "NoneStuck"
    CONFIG_SOURCE_MISSING = "ConfigSourceMissing"
    CONFIG_SOURCES_FOUND = "ConfigSourcesFound"


class GeneralStatus(StrEnum):
    """``status.batchDeployStatus.generalStatus``: where the release stands."""

    PROGRESSING = "Progressing"
    PAUSED = "Paused"
    WAIT_TO_CONFIRM = "WaitToConfirm"
    COMPLETED = "Completed"
    FAILED = "Failed"
    ROLLING_BACK = "RollingBack"
    PARTITIONED = "Partitioned"  # RollingUpdate: every pod above the partition is updated


class BatchAction(StrEnum):
    """``status.batchDeployStatus.action``: what the current batch waits for."""

    NEXT = "Next"
    WAIT_TO_CONFIRM = "WaitToConfirm"
    COMPLETED = "Completed"
