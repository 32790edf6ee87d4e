"""Where the repository is: the testbed builds from its sources (patches, images, manifests).

The tools are installed editable from the repository (``make venv``), so this module's own
path leads back to it.
"""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
