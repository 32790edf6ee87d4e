"""Batch grayscale releases of a StatefulSetPlus.

Pure: :mod:`.batches` (batch arithmetic), :mod:`.rounds` (one look at every pod),
:mod:`.plan` (the planner), :mod:`.status` and :mod:`.config_status` (what it reports),
:mod:`.actions` (what it decides). Wiring: :mod:`.handlers` writes a plan back and counts it.
"""
