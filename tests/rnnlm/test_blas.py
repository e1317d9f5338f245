"""The BLAS layer of the RNN LM kernels (blas.py): general and packed float32 products against
float64 NumPy, under the library this process bound (MKL when installed) and, in a
subprocess, under the other one; float64 is np.dot itself."""
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from numba import njit

from stages.rnnlm import blas

ROOT = Path(__file__).resolve().parents[2]


@njit
def matmul(out, a, b, transpose_a, transpose_b):
    blas.matmul(out, a, b, transpose_a, transpose_b)


@njit
def steps(outs, lefts, w, transpose):
    """outs[s] = lefts[s] op(w) from one packing of w."""
    packed = blas.pack_weights(w, lefts.shape[1], transpose, lefts.shape[0])
    for s in range(lefts.shape[0]):
        blas.packed_product(outs[s], lefts[s], packed, w, transpose)


TRANSPOSES = [(False, False), (True, False), (False, True), (True, True)]


def operands(m, k, n, transpose_a, transpose_b, dtype, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(k, m) if transpose_a else (m, k)).astype(dtype)
    b = rng.normal(size=(n, k) if transpose_b else (k, n)).astype(dtype)
    return a, b


def expected(a, b, transpose_a, transpose_b):
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    return (a64.T if transpose_a else a64) @ (b64.T if transpose_b else b64)


@pytest.mark.parametrize("transpose_a, transpose_b", TRANSPOSES)
@pytest.mark.parametrize("m, k, n", [(1, 1, 1), (3, 7, 5), (32, 64, 96), (70, 33, 1)])
def test_matmul_float32_matches_float64(m, k, n, transpose_a, transpose_b):
    a, b = operands(m, k, n, transpose_a, transpose_b, np.float32)
    out = np.full((m, n), np.nan, np.float32)        # every entry must be written
    matmul(out, a, b, transpose_a, transpose_b)
    truth = expected(a, b, transpose_a, transpose_b)
    # float32 products of k terms of size ~1: error ~ sqrt(k) * 6e-8 * |terms|
    np.testing.assert_allclose(out, truth, rtol=0, atol=1e-5 * np.sqrt(k) * 4)


@pytest.mark.parametrize("transpose_a, transpose_b", TRANSPOSES)
def test_matmul_float64_is_np_dot(transpose_a, transpose_b):
    a, b = operands(9, 6, 4, transpose_a, transpose_b, np.float64)
    out = np.zeros((9, 4))
    matmul(out, a, b, transpose_a, transpose_b)
    np.testing.assert_array_equal(out, np.dot(a.T if transpose_a else a,
                                              b.T if transpose_b else b))


@pytest.mark.parametrize("transpose", [True, False])
@pytest.mark.parametrize("rows, uses", [(1, 3), (3, 3), (32, 3), (32, 1)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_packed_product_reuses_one_packing(rows, uses, transpose, dtype):
    """One packing of w serves several left operands, as in a window's time steps (one
    use: no packing, the products read w)."""
    rng = np.random.default_rng(rows)
    w = rng.normal(size=(40, 24)).astype(dtype)           # [G, H]
    k, n = (24, 40) if transpose else (40, 24)
    lefts = rng.normal(size=(uses, rows, k)).astype(dtype)
    outs = np.full((uses, rows, n), np.nan, dtype)
    steps(outs, lefts, w, transpose)
    tolerance = 1e-5 if dtype == np.float32 else 1e-12
    for s in range(uses):
        np.testing.assert_allclose(outs[s], expected(lefts[s], w, False, transpose), rtol=0,
                                   atol=tolerance * np.sqrt(k) * 4, err_msg=f"step {s}")


def test_python_callers_are_told_to_use_njit():
    with pytest.raises(TypeError, match="@njit"):
        blas.matmul(None, None, None, False, False)


def test_non_contiguous_operands_are_refused():
    a = np.ones((8, 8), np.float32)[:, ::2]
    with pytest.raises(ValueError, match="C-contiguous"):
        matmul(np.zeros((8, 8), np.float32), a, np.ones((4, 8), np.float32), False, False)


def test_unknown_library_is_a_clear_error():
    result = subprocess.run([sys.executable, "-c", "import stages.rnnlm.blas"], cwd=ROOT,
                            env={**os.environ, "RNNLM_BLAS": "atlas"}, capture_output=True,
                            text=True)
    assert result.returncode != 0
    assert "RNNLM_BLAS='atlas': use one of auto, mkl, openblas" in result.stderr


def test_asking_for_missing_mkl_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(blas, "_find_mkl", lambda: None)
    with pytest.raises(ImportError, match="pip install mkl"):
        blas._bind("mkl")


def test_the_other_library_gives_the_same_products():
    """This file's product tests and the cell kernels' float32 tests, in a process bound to
    the library this one did not pick (OpenBLAS if MKL is here, MKL if it is installed
    but this process was told to use OpenBLAS)."""
    other = "openblas" if blas.BACKEND == "mkl" else "mkl"
    if other == "mkl" and blas._find_mkl() is None:
        pytest.skip("MKL is not installed: only the OpenBLAS path exists here")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-o", "addopts=", "-q", "-p", "no:cacheprovider",
         "tests/rnnlm/test_blas.py", "tests/rnnlm/test_kernels.py",
         "-k", "matmul or packed or float32 or softmax_kernel"],
        cwd=ROOT, env={**os.environ, "RNNLM_BLAS": other}, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    passed = re.search(r"(\d+) passed", result.stdout)
    assert passed and int(passed.group(1)) >= 30, result.stdout[-3000:]
