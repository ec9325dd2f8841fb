"""Static analyses of the integer graph (no simulation): value bounds."""
