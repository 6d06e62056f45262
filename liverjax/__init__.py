"""liverjax: liver segmentation across CT and MRI in JAX/Flax.

`__version__` is the one source of the version: `pyproject.toml` reads it (dynamic version),
the console scripts print it (`liverjax-train --version`), and it is recorded in every
`metrics.json`, `predictions.json` and DICOM-SEG (`SoftwareVersions`). This module imports
nothing, so reading the version costs nothing.
"""

__version__ = "0.2.0"
