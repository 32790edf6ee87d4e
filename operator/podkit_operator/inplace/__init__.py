"""In-place update of one pod, shared by the workloads (as OpenKruise's ``inplaceupdate``).

- :mod:`.pods`: the pod layout of each strategy (A/B slots and the sidecar, or the template as is);
- :mod:`.steps`: one pod's next step toward a target revision, as pure functions of the pod;
- :mod:`.strategies`: the table from ``updateStrategy.type`` to its step and pod layout;
- :mod:`.config`: which ConfigMap copies a pod mounts and whether its sidecar applied them;
- :mod:`.patches`: the pod patches the steps produce, and how two of them merge;
- :mod:`.sidecar`: asking a pod's sidecar for its ``/state`` over HTTP.
"""
