"""Which device a stage trains on: `device = "cpu" | "cuda" | "auto"` in its config."""
from __future__ import annotations

import numba

from stages.errors import InputError


def cuda_problem() -> str | None:
    """Why the CUDA kernels cannot run here (None: they can)."""
    try:
        from numba import cuda
    except ImportError:
        return "numba-cuda is not installed (pip install '.[cuda]')"
    if numba.config.ENABLE_CUDASIM:
        return "NUMBA_ENABLE_CUDASIM=1 (the simulator is for kernel tests, far too slow to train)"
    if not cuda.is_available():
        return "no usable NVIDIA GPU or driver was found"
    return None


def choose_device(device: str, stage: str) -> str:
    """'cuda' without a usable GPU is an error at start; 'auto' takes the GPU if there is
    one (the stage's summary and metrics say which it chose)."""
    if device == "cpu":
        return "cpu"
    problem = cuda_problem()
    if problem is None:
        return "cuda"
    if device == "cuda":
        raise InputError(f"{stage}.device = 'cuda' but {problem}; use 'cpu' or 'auto'")
    return "cpu"
