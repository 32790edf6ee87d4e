"""Services whose EndpointSlices podkit keeps from the pods that serve (:mod:`.slices` pure,
:mod:`.handlers` wiring)."""
