"""Revisions of a pod template: names, versions, and their ControllerRevision history.

Shared by the workloads (as a StatefulSet's revisions): the in-place steps, the release planner
and the config releases all speak of a :class:`~.revision.RevisionInfo`.
"""
