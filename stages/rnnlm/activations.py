"""Activation functions for the RNN LM kernels: exp, tanh and sigmoid.

In float32 a polynomial exp (Cephes' expf: range reduction by ln 2, a degree-6 polynomial,
the power of two put straight into the exponent bits) that LLVM vectorises; without it (no
SVML here) each exp is a libm call, and the softmax's 11 million exps per window cost as much
as its three matrix products. Two versions: `exp32` all in float32 lanes (relative error
below 2e-7; the softmax's exp_), and `exp32_precise` with the reduction and polynomial in
float64 (below 1e-7, float32 rounding; tanh and sigmoid), each checked by a test. In
float64 the library functions are used, so the gradient checks run at full precision.
Call `exp_`, `tanh_`, `sigmoid` from @njit code: Numba picks the version by argument type.
"""
import math

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic, overload

from stages.word2vec.cpu import FASTMATH

# error_model "numpy": no ZeroDivisionError check on every division, which would stop LLVM
# from vectorising the activation loops (a division by zero gives inf, which the training
# loop's finiteness check reports)
KERNEL = {"cache": True, "fastmath": FASTMATH, "error_model": "numpy"}
_LOG2E = np.float32(1.4426950408889634)
_LN2_HI, _LN2_LO = np.float32(0.693359375), np.float32(-2.12194440e-4)
_EXP_POLY = tuple(np.float32(c) for c in (1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3,
                                          4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1))
# below this |x|, tanh's odd series to x^5 is exact in float32 (and 1 - 2/(e^2x + 1) is not)
_TANH_SERIES_BELOW = np.float32(0.0625)


@intrinsic
def bits_to_float32(typingctx, bits):
    """Reinterpret an int32's bits as a float32 (a plain bitcast LLVM can vectorise)."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())
    return types.float32(types.int32), codegen


@njit(**KERNEL, inline="always")
def exp32(x):
    """exp of a float32 in float32 lanes throughout (the clamp as selects, the rounding by
    np.floor): relative error below 2e-7. Over a softmax row with a float32 sum, 4.5x
    exp32_precise's speed (6.3 against 28.2 ms for 1,120 x 10,002 logits)."""
    x = x if x > np.float32(-87.0) else np.float32(-87.0)
    x = x if x < np.float32(88.0) else np.float32(88.0)
    k = np.floor(x * _LOG2E + np.float32(0.5))
    return _exp_from(x, k)


@njit(**KERNEL, inline="always")
def exp32_precise(x):
    """exp of a float32 with relative error below 1e-7: math.floor returns an int64, which
    takes k ln 2 and the polynomial to float64. tanh32 needs it: its 1 - 2 / (e^2x + 1)
    amplifies exp's error near 0 (to 1.5e-6 with exp32)."""
    x = min(max(x, np.float32(-87.0)), np.float32(88.0))
    return _exp_from(x, math.floor(x * _LOG2E + np.float32(0.5)))


@njit(**KERNEL, inline="always")
def _exp_from(x, k):
    """2^k exp(x - k ln 2) for the rounded x log2(e), k (float32 or int64, see the callers)."""
    r = x - k * _LN2_HI - k * _LN2_LO
    p = _EXP_POLY[0]
    for c in _EXP_POLY[1:]:
        p = p * r + c
    p = p * r * r + r + np.float32(1.0)
    return p * bits_to_float32((np.int32(k) + np.int32(127)) << np.int32(23))


@njit(**KERNEL, inline="always")
def tanh32(x):
    a = abs(x)
    if a < _TANH_SERIES_BELOW:
        x2 = x * x
        return x * (np.float32(1.0) + x2 * (np.float32(-1.0 / 3.0) + x2 * np.float32(2.0 / 15.0)))
    t = np.float32(1.0) - np.float32(2.0) / (exp32_precise(np.float32(2.0) * a) + np.float32(1.0))
    return t if x > 0 else -t


def exp_(x):
    return math.exp(x)


def tanh_(x):
    return math.tanh(x)


def sigmoid(x):
    return 1.0 / (1.0 + math.exp(-x))


@overload(exp_, jit_options={"fastmath": FASTMATH, "error_model": "numpy"})
def _exp_for(x):
    if x == types.float32:
        return lambda x: exp32(x)
    return lambda x: math.exp(x)


@overload(tanh_, jit_options={"fastmath": FASTMATH, "error_model": "numpy"})
def _tanh_for(x):
    if x == types.float32:
        return lambda x: tanh32(x)
    return lambda x: math.tanh(x)


@overload(sigmoid, jit_options={"fastmath": FASTMATH, "error_model": "numpy"})
def _sigmoid_for(x):
    if x == types.float32:
        return lambda x: np.float32(1.0) / (np.float32(1.0) + exp32_precise(-x))
    return lambda x: 1.0 / (1.0 + math.exp(-x))


@njit(**KERNEL)
def activations_for_test(exp, tanh, sigmoid_out, x):
    """exp_, tanh_ and sigmoid over an array (the float32 paths, for tests)."""
    for k in range(x.shape[0]):
        exp[k] = exp_(x[k])
        tanh[k] = tanh_(x[k])
        sigmoid_out[k] = sigmoid(x[k])
