"""The testbed: a real Kubernetes cluster as local processes, and end-to-end measurements."""
