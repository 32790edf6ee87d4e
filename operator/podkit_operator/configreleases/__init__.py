"""Config grayscale releases: versioned copies of released ConfigMaps, their GC, and the
watch that turns an edit into a release (:mod:`.copies` pure, :mod:`.handlers` wiring)."""
