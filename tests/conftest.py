"""Shared test helpers. Tests write only into tmp_path and seed their own generators."""
import os
from pathlib import Path

# CUDA kernels run under Numba's simulator in the tests (read when numba is first imported,
# which is after this file). The PTX tests compile for a real GPU in a child process.
os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


def write_lines(path: Path, lines) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def repo_root() -> Path:
    return ROOT


# A tiny RNN LM, for tests that run the whole pipeline for the sake of other stages.
SMALL_LM = ["--set", "rnnlm.hidden=8", "--set", "rnnlm.batch_size=4", "--set", "rnnlm.bptt=5",
            "--set", "rnnlm.epochs=1", "--set", "rnnlm.diagnostic_windows=1"]
