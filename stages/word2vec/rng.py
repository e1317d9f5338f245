"""The random numbers the kernels draw: xorshift64*, one uint64 state per thread.

Kept in a one-element array (a view of the per-thread state table) so that every function
that draws advances the same state, and so the state can be saved in a checkpoint. The
reference uses the same generator on Python ints, so kernel and reference draw identically.
"""
import numpy as np
from numba import njit

MASK64 = (1 << 64) - 1
MULTIPLIER = 0x2545F4914F6CDD1D
_S12, _S25, _S27 = np.uint64(12), np.uint64(25), np.uint64(27)
_MUL = np.uint64(MULTIPLIER)
_S11, _S32 = np.uint64(11), np.uint64(32)
_LOW32 = np.uint64(0xFFFFFFFF)


@njit(cache=True, _nrt=False)
def next_u64(state):
    """state uint64 [1] -> a uint64 draw; advances state."""
    x = state[0]
    x ^= x >> _S12
    x ^= x << _S25
    x ^= x >> _S27
    state[0] = x
    return x * _MUL


@njit(cache=True, _nrt=False)
def uniform(state):
    """A float64 in [0, 1)."""
    return np.float64(next_u64(state) >> _S11) * (1.0 / 9007199254740992.0)


@njit(cache=True, _nrt=False)
def below(state, n):
    """An int in [0, n) from the draw's high 32 bits (multiply-shift, no modulo bias
    worth speaking of for n << 2^32)."""
    return np.int64(((next_u64(state) >> _S32) * np.uint64(n)) >> _S32)


@njit(cache=True, _nrt=False)
def split_draw(state, n):
    """One draw -> (an int in [0, n), a float in [0, 1)) from its two 32-bit halves:
    exactly what one alias-table sample needs."""
    r = next_u64(state)
    index = np.int64(((r >> _S32) * np.uint64(n)) >> _S32)
    return index, np.float64(r & _LOW32) * (1.0 / 4294967296.0)


def seed_states(seed: int, count: int) -> np.ndarray:
    """`count` independent non-zero states from one seed (splitmix64 steps)."""
    states = np.empty(count, dtype=np.uint64)
    z = seed & MASK64
    for i in range(count):
        z = (z + 0x9E3779B97F4A7C15) & MASK64
        x = z
        x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK64
        states[i] = (x ^ (x >> 31)) or 1
    return states


# ----- the same generator on Python ints, for the reference -----

def py_next_u64(state) -> int:
    x = int(state[0])
    x ^= x >> 12
    x ^= (x << 25) & MASK64
    x ^= x >> 27
    state[0] = x
    return (x * MULTIPLIER) & MASK64


def py_uniform(state) -> float:
    return (py_next_u64(state) >> 11) * (1.0 / 9007199254740992.0)


def py_below(state, n: int) -> int:
    return ((py_next_u64(state) >> 32) * n) >> 32


def py_split_draw(state, n: int):
    r = py_next_u64(state)
    return ((r >> 32) * n) >> 32, (r & 0xFFFFFFFF) * (1.0 / 4294967296.0)
