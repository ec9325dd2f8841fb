"""Process-level settings that make CPU training and simulation fast here.

glibc returns large freed blocks (> 32 MiB, i.e. every (T, B, ...) activation) to the OS
and page-faults them back in on the next batch: measured here, allocating and first
touching a 118 MB buffer cost 86 ms against 4 ms to fill a reused one, which made a
time-batched training step spend most of its time in the kernel. Keeping freed memory in
the heap removes that. The setting must be in the environment when the process starts,
so the CLI re-executes itself once with it.
"""

from __future__ import annotations

import os
import sys

ALLOCATOR_ENV = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": "17179869184"}
_MARK = "QSNN_DEPLOY_REEXEC"


def reexec_with_allocator_env(module: str, argv: list[str]) -> None:
    """Re-run ``python -m module argv`` with :data:`ALLOCATOR_ENV` unless already set.

    Does nothing when the variables are present (or a re-exec already happened), or when
    ``QSNN_DEPLOY_NO_REEXEC`` is set.
    """
    if os.environ.get(_MARK) or os.environ.get("QSNN_DEPLOY_NO_REEXEC"):
        return
    if all(os.environ.get(k) == v for k, v in ALLOCATOR_ENV.items()):
        return
    env = {**os.environ, **ALLOCATOR_ENV, _MARK: "1"}
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, "-m", module, *argv], env)
