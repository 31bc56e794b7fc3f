"""One BLAS thread, unless the environment says otherwise: imported before anything that
loads numpy (``voipalert.cli`` imports it first).

The media analysis runs on the event loop in small numpy calls. With OpenBLAS's default
pool (one thread per core) a large enough product is split across helper threads, and the
calling thread spins until they finish: on a machine whose cores are busy a helper waits
for a core, and the loop spun 10-50 ms in one call (docs/capacity.md §4). One thread has
nothing to wait for. OpenBLAS reads the variable once, when numpy first loads it.
"""

from __future__ import annotations

import os

# numpy's wheels bundle OpenBLAS. OMP_NUM_THREADS is left alone: ONNX Runtime (Piper)
# may read it, and speech is rendered off the loop, where threads help.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
