"""Import rockpool's XyloSim (Xylo IMU, Xylo Audio 2) without samna, for the cross-check tests.

rockpool 3.1's ``rockpool/devices/xylo/syns65302/__init__.py`` imports a samna-only module
outside its try/except, and ``rockpool.devices.xylo`` imports that subpackage, so any
``import rockpool.devices.xylo.<chip>`` fails without samna. An empty stand-in module for
``rockpool.devices.xylo.syns65302`` (Xylo Audio 3, which we do not use) placed in
``sys.modules`` first lets the two chips we need import. samna itself is never imported.
"""

from __future__ import annotations

import importlib
import os
import sys
import types

import pytest

STAND_IN = "rockpool.devices.xylo.syns65302"
CHIP_MODULES = {"syns63300": "rockpool.devices.xylo.syns63300", "syns61201": "rockpool.devices.xylo.syns61201"}


def xylosim_class(chip: str) -> type:
    """``XyloSim`` of ``chip``; skips when rockpool/xylosim are missing, unless env CI is set (then fails)."""
    try:
        import rockpool  # noqa: F401
        import xylosim  # noqa: F401
    except ImportError as exc:
        if os.environ.get("CI"):
            raise AssertionError(f"CI must install the [xylo] extra (rockpool, xylosim): {exc}") from None
        pytest.skip(f"rockpool/xylosim not installed: {exc}")
    if STAND_IN not in sys.modules:
        sys.modules[STAND_IN] = types.ModuleType(STAND_IN, "stand-in: the samna-only Xylo Audio 3 package is not used")
    module = importlib.import_module(CHIP_MODULES[chip])
    return module.XyloSim
