"""The RNN LM kernels' matrix products: the window-sized ones (input projection, weight and
input gradients, softmax) and the recurrent product of every cell step, h[B, H] W_h^T
forward and d_z[B, G] W_h backward, from weights packed once per window.

Each step's product is small (B = 32 rows) and sequential, so a general sgemm spends much of
its time re-packing W_h (1 MB for an LSTM of 256 units) on each of the window's 2T calls.
Intel MKL's packed-GEMM API packs it once and reuses it: per step 47 and 54 us against
OpenBLAS's 122 and 128 (forward and backward, two threads; bench/RESULTS.md).

`RNNLM_BLAS` picks the library when this module is imported: "mkl" (the `mkl` package, a
clear error if it is missing), "openblas" (the BLAS numpy and scipy bring; the "packed"
matrix is the matrix itself and the product np.dot) or "auto" (the default: MKL when
installed). `BACKEND` says which one runs. Both bind the same four C symbols, with MKL's
signatures, so the kernels compile (and cache) once for either. float64 (the gradient
checks) always takes np.dot.
"""
import ctypes
import ctypes.util
import glob
import os
import sys

import llvmlite.binding as llvm
import numpy as np
from numba import carray, cfunc, njit, types
from numba.extending import overload

ROW_MAJOR, NO_TRANS, TRANS, PACKED, B_MATRIX = 101, 111, 112, 151, 162
_f32p, _i32 = types.CPointer(types.float32), types.int32
_SIZE_SIG = types.uint64(_i32, _i32, _i32, _i32)
_PACK_SIG = types.void(_i32, _i32, _i32, _i32, _i32, _i32, types.float32, _f32p, _i32, _f32p)
_COMPUTE_SIG = types.void(_i32, _i32, _i32, _i32, _i32, _i32, _f32p, _i32, _f32p, _i32,
                          types.float32, _f32p, _i32)
_GEMM_SIG = types.void(_i32, _i32, _i32, _i32, _i32, _i32, types.float32, _f32p, _i32, _f32p,
                       _i32, types.float32, _f32p, _i32)
# (the symbol the kernels call, the MKL function _bind points it at, its signature)
SYMBOLS = (("rnnlm_sgemm", "cblas_sgemm", _GEMM_SIG),
           ("rnnlm_sgemm_pack_get_size", "cblas_sgemm_pack_get_size", _SIZE_SIG),
           ("rnnlm_sgemm_pack", "cblas_sgemm_pack", _PACK_SIG),
           ("rnnlm_sgemm_compute", "cblas_sgemm_compute", _COMPUTE_SIG))
_gemm, _pack_size, _pack, _compute = (types.ExternalFunction(name, signature)
                                      for name, _, signature in SYMBOLS)


@njit(cache=True)
def _dot(out, a, b, transpose_a, transpose_b):
    """out = op(a) op(b) by np.dot: the float64 products and the OpenBLAS stand-ins. One
    call per case: a conditional expression would type a.T and a alike as non-contiguous
    (np.dot's slow path)."""
    if transpose_a and transpose_b:
        np.dot(a.T, b.T, out)
    elif transpose_a:
        np.dot(a.T, b, out)
    elif transpose_b:
        np.dot(a, b.T, out)
    else:
        np.dot(a, b, out)


# ------------------------------------------------ OpenBLAS stand-ins (MKL's signatures)
# Called by the kernels with row-major, contiguous operands (lda, ldb, ldc their row
# lengths), alpha = 1 and beta = 0 only: the output is overwritten.
@cfunc(_GEMM_SIG, cache=True)
def _plain_gemm(layout, transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
    _dot(carray(c, (m, n)), carray(a, (k, m) if transa == TRANS else (m, k)),
         carray(b, (n, k) if transb == TRANS else (k, n)), transa == TRANS, transb == TRANS)


# The stand-in "packed" matrix is the matrix itself as the kernels hold it (row-major) and
# one float saying whether the product reads it transposed: np.dot then takes the transposed
# view, which OpenBLAS multiplies faster than a transposed copy.
@cfunc(_SIZE_SIG, cache=True)
def _plain_size(identifier, m, n, k):
    return np.uint64(4 * (k * n + 1))


@cfunc(_PACK_SIG, cache=True)
def _plain_pack(layout, identifier, trans, m, n, k, alpha, src, ld, dest):
    flat = carray(dest, k * n + 1)
    flat[:k * n] = carray(src, k * n)
    flat[k * n] = 1.0 if trans == TRANS else 0.0


@cfunc(_COMPUTE_SIG, cache=True)
def _plain_compute(layout, transa, transb, m, n, k, a, lda, b, ldb, beta, c, ldc):
    transposed = carray(b, k * n + 1)[k * n] == 1.0
    _dot(carray(c, (m, n)), carray(a, (m, k)), carray(b, (n, k) if transposed else (k, n)),
         False, transposed)


def _find_mkl():
    """Path of MKL's single dynamic library (pip's and conda's `mkl`), or None."""
    for pattern in ("libmkl_rt.so*", "libmkl_rt.*.dylib", "mkl_rt*.dll"):
        found = sorted(glob.glob(os.path.join(sys.prefix, "lib", pattern)))
        if found:
            return found[0]
    return ctypes.util.find_library("mkl_rt")


# MKL's threading layers. GNU OpenMP is the runtime Numba's own threads use: one pool for
# both, where two runtimes' spinning threads fought over the cores (a window's forward pass
# took 18-36 ms instead of 8.6 while MKL's and OpenBLAS's threads both ran). MKL loads its
# GNU layer on the first product and aborts the process if libgomp is missing: check first.
MKL_INTEL_OPENMP, MKL_GNU_OPENMP = 0, 3
MKL_LP64 = 0            # the symbols above take int32 sizes


def _has_gnu_openmp() -> bool:
    try:
        ctypes.CDLL(ctypes.util.find_library("gomp") or "libgomp.so.1")
        return True
    except OSError:
        return False


def _bind(choice: str) -> str:
    """Binds the four symbols; returns the backend's name. (ctypes never unloads a
    library it loaded, so MKL stays loaded without a reference kept here.)"""
    path = _find_mkl() if choice in ("auto", "mkl") else None
    if choice == "mkl" and path is None:
        raise ImportError("RNNLM_BLAS=mkl but MKL is not installed: pip install mkl "
                          "(or the project's 'mkl' extra), or set RNNLM_BLAS=auto")
    if path is None:
        functions = (_plain_gemm.address, _plain_size.address, _plain_pack.address,
                     _plain_compute.address)
    else:
        mkl = ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
        mkl.MKL_Set_Interface_Layer(MKL_LP64)      # 32-bit ints, whatever the environment says
        mkl.MKL_Set_Threading_Layer(MKL_GNU_OPENMP if _has_gnu_openmp() else MKL_INTEL_OPENMP)
        functions = tuple(ctypes.cast(getattr(mkl, mkl_name), ctypes.c_void_p).value
                          for _, mkl_name, _ in SYMBOLS)
    for (name, _, _), address in zip(SYMBOLS, functions):
        llvm.add_symbol(name, address)
    return "openblas" if path is None else "mkl"


CHOICES = ("auto", "mkl", "openblas")
_choice = os.environ.get("RNNLM_BLAS", "auto")
if _choice not in CHOICES:
    raise ImportError(f"RNNLM_BLAS={_choice!r}: use one of {', '.join(CHOICES)}")
BACKEND = _bind(_choice)


def numba_threads(threads: int) -> int:
    """How many threads the kernels' own parallel loops (cells, SGD) may use beside this
    library's: all of them with MKL, whose threads are Numba's OpenMP pool; one with
    OpenBLAS, whose pthreads and Numba's OpenMP threads each spin after their work and
    take the cores from each other (an LSTM + HS window: 513 ms against 22 with one)."""
    return threads if BACKEND == "mkl" else 1


# ------------------------------------------------------------------------- the kernels
# matmul, pack_weights and packed_product are for @njit code (their bodies are the overloads
# below); from Python, call them through an @njit function of your own.
def matmul(out, a, b, transpose_a, transpose_b):
    """out [m, n] = op(a) op(b), op(x) = x^T where asked; a, b, out C-contiguous 2-D."""
    raise TypeError("blas.matmul is for @njit code")


@njit(cache=True)
def check_contiguous(out, a, b):
    """The C calls read each operand's rows back to back."""
    if not (out.flags.c_contiguous and a.flags.c_contiguous and b.flags.c_contiguous):
        raise ValueError("blas: operands must be C-contiguous")


@overload(matmul)
def _matmul(out, a, b, transpose_a, transpose_b):
    if a.dtype != types.float32:
        return lambda out, a, b, transpose_a, transpose_b: _dot(out, a, b, transpose_a,
                                                                transpose_b)

    def product(out, a, b, transpose_a, transpose_b):
        check_contiguous(out, a, b)
        m, n = out.shape
        k = a.shape[0] if transpose_a else a.shape[1]
        _gemm(ROW_MAJOR, TRANS if transpose_a else NO_TRANS, TRANS if transpose_b else NO_TRANS,
              m, n, k, np.float32(1.0), a.ctypes, a.shape[1], b.ctypes, b.shape[1],
              np.float32(0.0), out.ctypes, n)
    return product


def pack_weights(w, rows, transpose, uses):
    """The right operand op(w) (w^T if transpose) of `uses` products with `rows`-row left
    operands, packed for packed_product. w [G, H] C-contiguous. Packing costs about one
    product, so for a single use (a generated word, T = 1) nothing is packed (an empty
    array) and packed_product multiplies by w directly."""
    raise TypeError("blas.pack_weights is for @njit code")


def packed_product(out, a, packed, w, transpose):
    """out [rows, n] = a [rows, k] op(w), op(w) packed by pack_weights."""
    raise TypeError("blas.packed_product is for @njit code")


@overload(pack_weights)
def _pack_weights(w, rows, transpose, uses):
    if w.dtype != types.float32:
        return lambda w, rows, transpose, uses: w    # float64: np.dot reads w itself

    def pack(w, rows, transpose, uses):
        if uses < 2:
            return np.empty(0, np.float32)
        k, n = (w.shape[1], w.shape[0]) if transpose else (w.shape[0], w.shape[1])
        size = _pack_size(B_MATRIX, rows, n, k)
        packed = np.empty((size + 3) // 4, np.float32)
        _pack(ROW_MAJOR, B_MATRIX, TRANS if transpose else NO_TRANS, rows, n, k,
              np.float32(1.0), w.ctypes, w.shape[1], packed.ctypes)
        return packed
    return pack


@overload(packed_product)
def _packed_product(out, a, packed, w, transpose):
    if a.dtype != types.float32:
        return lambda out, a, packed, w, transpose: _dot(out, a, w, False, transpose)

    def product(out, a, packed, w, transpose):
        if packed.size == 0:
            matmul(out, a, w, False, transpose)
            return
        check_contiguous(out, a, w)
        n = w.shape[0] if transpose else w.shape[1]
        _compute(ROW_MAJOR, NO_TRANS, PACKED, a.shape[0], n, a.shape[1], a.ctypes, a.shape[1],
                 packed.ctypes, n, np.float32(0.0), out.ctypes, out.shape[1])
    return product

