"""Shared test helpers. Tests write only into tmp_path and seed their own generators."""
import os
from pathlib import Path

# CUDA kernels run under Numba's simulator in the tests (read when numba is first imported,
# which is after this file). The PTX tests compile for a real GPU in a child process.
os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")

import numpy as np  # noqa: E402  (after the variable; NumPy itself does not read it)
import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
# For tests that run CUDA kernels: they need the simulator (or a GPU run that sets it off).
simulated = pytest.mark.skipif(os.environ.get("NUMBA_ENABLE_CUDASIM") != "1",
                               reason="needs NUMBA_ENABLE_CUDASIM=1 (tests/conftest.py sets it)")


def central_differences(function, array, picks=None, eps=1e-6):
    """(f(x + eps e_k) - f(x - eps e_k)) / (2 eps) for the flat indices `picks` of `array`
    (all of them if None), changing `array` in place and restoring it; same shape as picks."""
    flat = array.reshape(-1)
    picks = np.arange(flat.size) if picks is None else np.asarray(picks)
    estimates = np.empty(picks.size)
    for i, k in enumerate(picks):
        saved = flat[k]
        flat[k] = saved + eps
        plus = function()
        flat[k] = saved - eps
        minus = function()
        flat[k] = saved
        estimates[i] = (plus - minus) / (2 * eps)
    return estimates


def write_lines(path: Path, lines) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def repo_root() -> Path:
    return ROOT


# A tiny RNN LM, for tests that run the whole pipeline for the sake of other stages.
SMALL_LM = ["--set", "rnnlm.hidden=8", "--set", "rnnlm.batch_size=4", "--set", "rnnlm.bptt=5",
            "--set", "rnnlm.epochs=1", "--set", "rnnlm.diagnostic_windows=1"]
