"""The StatefulSetPlus operator: in-place A/B swaps in batch grayscale releases."""
