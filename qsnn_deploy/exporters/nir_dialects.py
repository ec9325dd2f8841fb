"""The NIR readers the ``nir`` format writes for, and the time step ``dt`` (seconds) each assumes.

Kept apart from :mod:`.nir_export` so the CLI can offer the choices without importing NIR.
"""

DIALECTS: dict[str, float] = {"norse": 1e-3, "snntorch": 1e-4}
