"""The pods' volume claims: made before the pods, owned as the retention policy says."""
