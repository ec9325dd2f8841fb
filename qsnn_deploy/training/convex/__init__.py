"""Convex parameter-reconstruction training (Udupi, Yang, Zhai): witness stacks + a convex readout.

- :mod:`.model`: K parallel stacks of integer LIF layers (fixed witnesses), their features;
- :mod:`.problem` and :mod:`.fista`: the convex readout problem and its solvers;
- :mod:`.methods`: the training methods ``cvx``, ``sg-cvx``, ``cvx-sg`` behind ``train --method``.

docs/convex.md describes the method and every modelling choice.
"""
