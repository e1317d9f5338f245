"""numba.cuda kernels for the RNN language model (legend in the package docstring).

Launchers with cpu.py's names and arguments (device arrays in place of host arrays, float32)
so that a whole training step runs on the device: the cells' forward and backward passes
over a window (tanh, ReLU/IRNN, LSTM, GRU), the softmax and HS output layers, the embedding
gather and scatter, dropout masks applied, the global-norm clipping, SGD and Adam. Matrix
products are tiled 16 x 16 in shared memory (`matmul_nn`, `matmul_nt`, `matmul_tn`: one
kernel body, three ways of reading the operands); elementwise steps use one thread per
(stream, unit); the output layers one block per token. Scratch arrays come from
`_scratch`, allocated once per shape rather than on every window.
"""
import functools
import math

import numpy as np
from numba import cuda, float32, float64

from stages.word2vec import cuda as w2v_cuda

TILE = 16
ROW_THREADS = 128        # threads of a block that works on one softmax row
UNIT_THREADS = 128       # threads per block of the elementwise kernels
WARP = w2v_cuda.WARP     # threads per block of the HS kernels (one block per token)


# ----------------------------------------------------------------------- matrix products
def make_matmul(a_at, b_at):
    """c [M, N] = op(a) op(b), with a_at(a, i, k) and b_at(b, k, j) reading the operands."""

    @cuda.jit
    def matmul(c, a, b, K):
        tile_a = cuda.shared.array((TILE, TILE), float32)
        tile_b = cuda.shared.array((TILE, TILE), float32)
        tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
        i, j = cuda.blockIdx.y * TILE + ty, cuda.blockIdx.x * TILE + tx
        M, N = c.shape
        total = float32(0.0)
        for start in range(0, K, TILE):
            tile_a[ty, tx] = a_at(a, i, start + tx) if i < M and start + tx < K else 0.0
            tile_b[ty, tx] = b_at(b, start + ty, j) if start + ty < K and j < N else 0.0
            cuda.syncthreads()
            for k in range(TILE):
                total += tile_a[ty, k] * tile_b[k, tx]
            cuda.syncthreads()
        if i < M and j < N:
            c[i, j] = total

    return matmul


@cuda.jit(device=True, inline=True)
def plain(m, row, column):
    return m[row, column]


@cuda.jit(device=True, inline=True)
def transposed(m, row, column):
    return m[column, row]


_MATMUL_NN, _MATMUL_NT, _MATMUL_TN = (make_matmul(plain, plain), make_matmul(plain, transposed),
                                      make_matmul(transposed, plain))


def _launch_matmul(kernel, c, a, b, K):
    M, N = c.shape
    kernel[((N + TILE - 1) // TILE, (M + TILE - 1) // TILE), (TILE, TILE)](c, a, b, K)


def matmul_nn(c, a, b):
    """c = a b."""
    _launch_matmul(_MATMUL_NN, c, a, b, a.shape[1])


def matmul_nt(c, a, b):
    """c = a b^T."""
    _launch_matmul(_MATMUL_NT, c, a, b, a.shape[1])


def matmul_tn(c, a, b):
    """c = a^T b."""
    _launch_matmul(_MATMUL_TN, c, a, b, a.shape[0])


def _blocks(count, threads=UNIT_THREADS):
    return (count + threads - 1) // threads, threads


_SCRATCH: dict = {}


def _scratch(use: str, shape, dtype=np.float32):
    """The device array for one use inside a launcher, allocated on first need and reused
    by every later call with that shape: each device_array is a cudaMalloc, and the
    launchers need these on every window. Valid until the launcher's next call."""
    key = (use, tuple(shape), np.dtype(dtype).str)
    if key not in _SCRATCH:
        _SCRATCH[key] = cuda.device_array(shape, dtype)
    return _SCRATCH[key]


# ------------------------------------------------------------------ elementwise helpers
@cuda.jit(device=True, inline=True)
def sigmoid(a):
    return 1.0 / (1.0 + math.exp(-a))


@cuda.jit
def column_sums(out, m):
    """out [N] = sum over rows of m [M, N]."""
    j = cuda.grid(1)
    if j < m.shape[1]:
        total = float32(0.0)
        for i in range(m.shape[0]):
            total += m[i, j]
        out[j] = total


def sum_rows(out, m):
    """out [N] = m [M, N] summed over its rows (a thread per column)."""
    column_sums[_blocks(m.shape[1])](out, m)


@cuda.jit
def _stream_norm(norms, t, d):
    """norms[t] = mean over rows of d [B, H] of the row's Euclidean norm (one block)."""
    partial = cuda.shared.array(UNIT_THREADS, float64)
    b = cuda.threadIdx.x
    total = 0.0
    for row in range(b, d.shape[0], UNIT_THREADS):
        square = 0.0
        for j in range(d.shape[1]):
            square += float64(d[row, j]) * d[row, j]
        total += math.sqrt(square)
    partial[b] = total
    cuda.syncthreads()
    if b == 0:
        s = 0.0
        for k in range(UNIT_THREADS):
            s += partial[k]
        norms[t] = s / d.shape[0]


def stream_norm(norms, t, d):
    _stream_norm[1, UNIT_THREADS](norms, t, d)


@cuda.jit
def _fill(flat, value):
    k = cuda.grid(1)
    if k < flat.shape[0]:
        flat[k] = value


def fill(array, value):
    flat = array.reshape(array.size)
    _fill[_blocks(flat.shape[0])](flat, value)


@cuda.jit
def _multiply(y, x):
    k = cuda.grid(1)
    if k < y.shape[0]:
        y[k] *= x[k]


def multiply(y, x):
    """y *= x elementwise (same shapes; dropout masks)."""
    _multiply[_blocks(y.size)](y.reshape(y.size), x.reshape(x.size))


# ------------------------------------------------------------------ the recurrence
# One launch per time step and direction: a thread per (stream b, unit j) forms its own
# recurrent dot products and applies the cell, so no [B, G] product is materialised and the
# step's Python launch cost (which dominates at B 32, H 256) is paid once, not twice. The
# steps take whole arrays and the step index t: slicing a device array on the host costs
# as much as a launch. Forward reads W_h^T [H, G] (a transposed copy made once per window:
# across a warp j varies, so those loads are coalesced); backward reads W_h [G, H] directly.
@cuda.jit(device=True, inline=True)
def _times_column(a, t, b, m, column):
    """sum_k a[t, b, k] m[k, column]: one unit of a[t, b] m. Forward: a = h_all, m = W_h^T
    (unit `column` of h_t W_h^T); backward: a = d_z, m = W_h (what flows back to h_(t-1))."""
    total = float32(0.0)
    for k in range(m.shape[0]):
        total += a[t, b, k] * m[k, column]
    return total


@cuda.jit(device=True, inline=True)
def _total_dh(d_h, d_next, t, b, j, w_h):
    """dE/dh_t of unit (b, j): from the output layer, plus (but at the window's last step)
    what step t + 1's pre-activation gradients d_next[t + 1] send back through W_h."""
    dh = d_h[t, b, j]
    if t + 1 < d_h.shape[0]:
        dh += _times_column(d_next, t + 1, b, w_h, j)
    return dh


@cuda.jit(device=True, inline=True)
def _stored_gates(gates, t, b, j, H):
    """The four values the forward step stored for unit (b, j) at step t."""
    return gates[t, b, j], gates[t, b, H + j], gates[t, b, 2 * H + j], gates[t, b, 3 * H + j]


@cuda.jit
def _transpose(out, m):
    k = cuda.grid(1)
    if k < m.size:
        rows, columns = m.shape
        out[k % columns, k // columns] = m[k // columns, k % columns]


def transposed_copy(m):
    out = _scratch("transposed", (m.shape[1], m.shape[0]))
    _transpose[_blocks(m.size)](out, m)
    return out


def _input_projection(gates, x, w_x):
    """gates [T, B, G] = x w_x^T for the whole window, one product."""
    T, B, D = x.shape
    matmul_nt(gates.reshape(T * B, gates.shape[2]), x.reshape(T * B, D), w_x)


def _steps_forward(step, h_all, *arguments):
    """step[t](t, *arguments) for t = 0 .. T-1, a thread per (stream, unit)."""
    T, B, H = h_all.shape[0] - 1, h_all.shape[1], h_all.shape[2]
    grid = _blocks(B * H)
    for t in range(T):
        step[grid](t, *arguments)


def _steps_backward(step, T, carry, norms, *arguments):
    """step(t, *arguments) for t = T-1 .. 0, then the diagnostics' norm of dE/dh_t (the
    step leaves it in carry [B, H]); training passes norms = None and skips them."""
    grid = _blocks(carry.size)
    for t in range(T - 1, -1, -1):
        step[grid](t, *arguments)
        if norms is not None:
            stream_norm(norms, t, carry)


def _weight_gradients(d_x, d_w_x, d_w_h, d_b_x, d_b_h, d_zx, x, h_all, w_x, d_zh=None):
    """As cpu.weight_gradients + cpu.input_gradient; d_zh None: the gradient through W_h
    is d_zx (every cell but the GRU, whose candidate gate sees r W_h h)."""
    T, B, G = d_zx.shape
    flat_x = d_zx.reshape(T * B, G)
    flat_h = flat_x if d_zh is None else d_zh.reshape(T * B, G)
    matmul_tn(d_w_x, flat_x, x.reshape(T * B, x.shape[2]))
    matmul_tn(d_w_h, flat_h, h_all[0:T].reshape(T * B, h_all.shape[2]))
    sum_rows(d_b_x, flat_x)
    if d_zh is None:
        d_b_h.copy_to_device(d_b_x)       # both biases enter every gate the same way here
    else:
        sum_rows(d_b_h, flat_h)
    matmul_nn(d_x.reshape(T * B, d_x.shape[2]), flat_x, w_x)


def _initial_gradient(d_h_init, d_z, w_h):
    """dE/dh_0 = d_z[0] W_h (what the last backward step left for the carried state)."""
    matmul_nn(d_h_init, d_z[0], w_h)


# ----------------------------------------------------------------------- Elman cells
@cuda.jit
def _elman_step(t, gates, h_all, w_hT, b_x, b_h, relu):
    """gates[t] in: x_t W_x^T; out: the pre-activation a_t; h_all[t + 1] = f(a_t)."""
    k = cuda.grid(1)
    B, H = h_all.shape[1], h_all.shape[2]
    if k < B * H:
        b, j = k // H, k % H
        a = gates[t, b, j] + _times_column(h_all, t, b, w_hT, j) + b_x[j] + b_h[j]
        gates[t, b, j] = a
        h_all[t + 1, b, j] = max(a, 0.0) if relu else math.tanh(a)


@cuda.jit
def _elman_step_back(t, d_a, carry, d_h, h_all, gates, w_h, relu):
    """carry[b, j] out: dE/dh_t in total (d_h[t] + d_a[t + 1] W_h); d_a[t] = dE/da_t."""
    k = cuda.grid(1)
    B, H = carry.shape
    if k < B * H:
        b, j = k // H, k % H
        dh = _total_dh(d_h, d_a, t, b, j, w_h)
        carry[b, j] = dh
        if relu:
            d_a[t, b, j] = dh if gates[t, b, j] > 0 else 0.0
        else:
            h = h_all[t + 1, b, j]
            d_a[t, b, j] = dh * (1.0 - h * h)


def _elman_forward(h_all, c_all, gates, x, w_x, w_h, b_x, b_h, relu):
    _input_projection(gates, x, w_x)
    _steps_forward(_elman_step, h_all, gates, h_all, transposed_copy(w_h), b_x, b_h, relu)


def _elman_backward(d_x, d_w_x, d_w_h, d_b_x, d_b_h, d_h_init, d_c_init, d_h_norms, d_h,
                    h_all, c_all, gates, x, w_x, w_h, relu):
    T, B, H = gates.shape
    d_a, carry = _scratch("d_a", (T, B, H)), _scratch("carry", (B, H))
    _steps_backward(_elman_step_back, T, carry, d_h_norms, d_a, carry, d_h, h_all, gates, w_h,
                    relu)
    _initial_gradient(d_h_init, d_a, w_h)
    fill(d_c_init, 0.0)
    _weight_gradients(d_x, d_w_x, d_w_h, d_b_x, d_b_h, d_a, x, h_all, w_x)


# cpu.py's four Elman launchers, with its names and arguments
tanh_forward = functools.partial(_elman_forward, relu=False)
tanh_backward = functools.partial(_elman_backward, relu=False)
relu_forward = functools.partial(_elman_forward, relu=True)
relu_backward = functools.partial(_elman_backward, relu=True)


# --------------------------------------------------------------------------------- LSTM
@cuda.jit
def _lstm_step(t, gates, c_all, h_all, w_hT, b_x, b_h):
    """gates[t] in: x_t W_x^T; out: i, f, g, o (as cpu.lstm_cell); c_all/h_all[t + 1]."""
    k = cuda.grid(1)
    B, H = h_all.shape[1], h_all.shape[2]
    if k < B * H:
        b, j = k // H, k % H
        z = cuda.local.array(4, float32)
        for q in range(4):
            z[q] = gates[t, b, q * H + j] + b_x[q * H + j] + b_h[q * H + j]
        for m in range(H):
            h = h_all[t, b, m]
            for q in range(4):
                z[q] += h * w_hT[m, q * H + j]
        i, f, g, o = sigmoid(z[0]), sigmoid(z[1]), math.tanh(z[2]), sigmoid(z[3])
        gates[t, b, j], gates[t, b, H + j], gates[t, b, 2 * H + j], gates[t, b, 3 * H + j] = i, f, g, o
        c = f * c_all[t, b, j] + i * g
        c_all[t + 1, b, j] = c
        h_all[t + 1, b, j] = o * math.tanh(c)


@cuda.jit
def _lstm_step_back(t, d_z, carry_h, carry_c, d_h, gates, c_all, w_h):
    """cpu.lstm_cell_backward for unit (b, j) at step t; carry_h out: dE/dh_t in total,
    carry_c in/out: dE/dc from the future."""
    k = cuda.grid(1)
    T, B, H = d_h.shape
    if k < B * H:
        b, j = k // H, k % H
        i, f, g, o = _stored_gates(gates, t, b, j, H)
        dh = _total_dh(d_h, d_z, t, b, j, w_h)
        carry_h[b, j] = dh
        from_future = carry_c[b, j] if t + 1 < T else 0.0
        tanh_c = math.tanh(c_all[t + 1, b, j])
        dc = from_future + dh * o * (1.0 - tanh_c * tanh_c)
        d_z[t, b, j] = dc * g * i * (1.0 - i)
        d_z[t, b, H + j] = dc * c_all[t, b, j] * f * (1.0 - f)
        d_z[t, b, 2 * H + j] = dc * i * (1.0 - g * g)
        d_z[t, b, 3 * H + j] = dh * tanh_c * o * (1.0 - o)
        carry_c[b, j] = dc * f


def lstm_forward(h_all, c_all, gates, x, w_x, w_h, b_x, b_h):
    _input_projection(gates, x, w_x)
    _steps_forward(_lstm_step, h_all, gates, c_all, h_all, transposed_copy(w_h), b_x, b_h)


def lstm_backward(d_x, d_w_x, d_w_h, d_b_x, d_b_h, d_h_init, d_c_init, d_h_norms, d_h,
                  h_all, c_all, gates, x, w_x, w_h):
    T, B, G = gates.shape
    d_z = _scratch("d_z", (T, B, G))
    carry_h, carry_c = _scratch("carry", (B, G // 4)), _scratch("carry_c", (B, G // 4))
    _steps_backward(_lstm_step_back, T, carry_h, d_h_norms, d_z, carry_h, carry_c, d_h, gates,
                    c_all, w_h)
    _initial_gradient(d_h_init, d_z, w_h)
    d_c_init.copy_to_device(carry_c)
    _weight_gradients(d_x, d_w_x, d_w_h, d_b_x, d_b_h, d_z, x, h_all, w_x)


# ---------------------------------------------------------------------------------- GRU
@cuda.jit
def _gru_step(t, gates, h_all, projected, w_hT, b_x, b_h):
    """cpu.gru_forward for unit (b, j); projected[t] holds x_t W_x^T."""
    k = cuda.grid(1)
    B, H = h_all.shape[1], h_all.shape[2]
    if k < B * H:
        b, j = k // H, k % H
        zr, zz, zn = b_h[j], b_h[H + j], b_h[2 * H + j]
        for m in range(H):
            h = h_all[t, b, m]
            zr += h * w_hT[m, j]
            zz += h * w_hT[m, H + j]
            zn += h * w_hT[m, 2 * H + j]
        r = sigmoid(projected[t, b, j] + b_x[j] + zr)
        z = sigmoid(projected[t, b, H + j] + b_x[H + j] + zz)
        n = math.tanh(projected[t, b, 2 * H + j] + b_x[2 * H + j] + r * zn)
        gates[t, b, j], gates[t, b, H + j], gates[t, b, 2 * H + j], gates[t, b, 3 * H + j] = r, z, n, zn
        h_all[t + 1, b, j] = (1.0 - z) * n + z * h_all[t, b, j]


@cuda.jit
def _gru_step_back(t, d_zx, d_zh, carry, direct, d_h, h_all, gates, w_h):
    """cpu.gru_backward's unit (b, j) at step t: carry out dE/dh_t in total (d_h[t] +
    d_zh[t + 1] W_h + the direct path of step t + 1); direct out: dh z, the part of
    dE/dh_{t-1} that skips W_h."""
    k = cuda.grid(1)
    T, B, H = d_h.shape
    if k < B * H:
        b, j = k // H, k % H
        r, z, n, hn = _stored_gates(gates, t, b, j, H)
        dh = _total_dh(d_h, d_zh, t, b, j, w_h)
        if t + 1 < T:
            dh += direct[b, j]
        carry[b, j] = dh
        dn = dh * (1.0 - z) * (1.0 - n * n)
        dr = dn * hn * r * (1.0 - r)
        dz = dh * (h_all[t, b, j] - n) * z * (1.0 - z)
        d_zx[t, b, j], d_zx[t, b, H + j], d_zx[t, b, 2 * H + j] = dr, dz, dn
        d_zh[t, b, j], d_zh[t, b, H + j], d_zh[t, b, 2 * H + j] = dr, dz, dn * r
        direct[b, j] = dh * z


def gru_forward(h_all, c_all, gates, x, w_x, w_h, b_x, b_h):
    """gates [T, B, 4H] out: r, z, n and W_hn h + b_hn, as cpu.gru_forward."""
    projected = _scratch("projected", (x.shape[0], x.shape[1], w_h.shape[0]))
    _input_projection(projected, x, w_x)
    _steps_forward(_gru_step, h_all, gates, h_all, projected, transposed_copy(w_h), b_x, b_h)


def gru_backward(d_x, d_w_x, d_w_h, d_b_x, d_b_h, d_h_init, d_c_init, d_h_norms, d_h,
                 h_all, c_all, gates, x, w_x, w_h):
    T, B, H = d_h.shape
    G = w_h.shape[0]
    d_zx, d_zh = _scratch("d_zx", (T, B, G)), _scratch("d_zh", (T, B, G))
    carry, direct = _scratch("carry", (B, H)), _scratch("direct", (B, H))
    _steps_backward(_gru_step_back, T, carry, d_h_norms, d_zx, d_zh, carry, direct, d_h, h_all,
                    gates, w_h)
    _initial_gradient(d_h_init, d_zh, w_h)
    _axpy[_blocks(B * H)](d_h_init.reshape(B * H), np.float32(1.0), direct.reshape(B * H))
    fill(d_c_init, 0.0)
    _weight_gradients(d_x, d_w_x, d_w_h, d_b_x, d_b_h, d_zx, x, h_all, w_x, d_zh)


# ------------------------------------------------------------------------ output layers
@cuda.jit(device=True)
def _block_reduce(values, tid, take_max):
    """Reduce values [ROW_THREADS] (shared) into values[0], max or sum; all threads call."""
    step = ROW_THREADS // 2
    while step > 0:
        if tid < step:
            values[tid] = max(values[tid], values[tid + step]) if take_max else values[tid] + values[tid + step]
        cuda.syncthreads()
        step //= 2


@cuda.jit
def _softmax_rows(exps, inverse_totals, losses, b, targets):
    """cpu.softmax_rows for row blockIdx.x, its ROW_THREADS threads striding the columns."""
    n, tid = cuda.blockIdx.x, cuda.threadIdx.x
    shared = cuda.shared.array(ROW_THREADS, float64)
    V = exps.shape[1]
    top = -math.inf
    for k in range(tid, V, ROW_THREADS):
        value = exps[n, k] + b[k]
        exps[n, k] = value
        top = max(top, value)
    shared[tid] = top
    cuda.syncthreads()
    _block_reduce(shared, tid, True)
    top = shared[0]
    target_logit = float64(exps[n, targets[n]]) - top     # before the exps overwrite it
    cuda.syncthreads()
    total = 0.0
    for k in range(tid, V, ROW_THREADS):
        e = math.exp(exps[n, k] - top)
        exps[n, k] = e
        total += e
    shared[tid] = total
    cuda.syncthreads()
    _block_reduce(shared, tid, False)
    if tid == 0:
        inverse_totals[n] = 1.0 / shared[0]
        losses[n] = math.log(shared[0]) - target_logit


def softmax_forward(exps, inverse_totals, h, w, b, targets):
    N = h.shape[0]
    matmul_nt(exps, h, w)
    losses = _scratch("softmax_losses", (N,), np.float64)
    _softmax_rows[N, ROW_THREADS](exps, inverse_totals, losses, b, targets)
    return float(losses.copy_to_host().sum())


@cuda.jit
def _softmax_back_rows(exps, rows, inverse_totals, targets, scale):
    n = cuda.grid(1)
    if n < exps.shape[0]:
        exps[n, targets[n]] -= 1.0 / inverse_totals[n]
        rows[n] = scale * inverse_totals[n]


@cuda.jit
def _scale_rows(out, m, rows):
    k = cuda.grid(1)
    if k < m.shape[0] * m.shape[1]:
        i, j = k // m.shape[1], k % m.shape[1]
        out[i, j] = m[i, j] * rows[i]


@cuda.jit
def _weighted_column_sums(out, m, rows):
    j = cuda.grid(1)
    if j < m.shape[1]:
        total = float32(0.0)
        for i in range(m.shape[0]):
            total += rows[i] * m[i, j]
        out[j] = total


def softmax_backward(d_h, d_w, d_b, exps, inverse_totals, h, w, targets, scale):
    """As cpu.softmax_backward: the row scale goes onto the [N, H] factors."""
    N, H = h.shape
    rows = _scratch("softmax_rows", (N,))
    _softmax_back_rows[_blocks(N)](exps, rows, inverse_totals, targets, scale)
    scaled = _scratch("softmax_scaled", (N, H))
    _scale_rows[_blocks(N * H)](scaled, h, rows)
    matmul_tn(d_w, exps, scaled)
    _weighted_column_sums[_blocks(exps.shape[1])](d_b, exps, rows)
    matmul_nn(d_h, exps, w)
    _scale_rows[_blocks(N * H)](d_h, d_h, rows)


@cuda.jit(device=True)
def _node_dot(h, w, n, node, lane, partials):
    partial = float32(0.0)
    for d in range(lane, h.shape[1], WARP):
        partial += h[n, d] * w[node, d]
    return w2v_cuda.block_sum(partial, partials, lane)


@cuda.jit(device=True)
def _node_loss(f, code):
    """-log sigma((2 label - 1) f) for label = 1 - code, in float64 without overflow."""
    signed = -float64(f) if code == 0 else float64(f)
    return max(signed, 0.0) + math.log1p(math.exp(-abs(signed)))


@cuda.jit
def _hs_forward(losses, h, w, codes, points, lengths, targets):
    """One block of WARP threads per token: -log p(target | h) along its path."""
    n, lane = cuda.blockIdx.x, cuda.threadIdx.x
    partials = cuda.shared.array(WARP, float32)
    word = targets[n]
    loss = 0.0
    for j in range(lengths[word]):
        loss += _node_loss(_node_dot(h, w, n, points[word, j], lane, partials), codes[word, j])
    if lane == 0:
        losses[n] = loss


@cuda.jit
def _hs_train(losses, d_h, d_w, h, w, codes, points, lengths, targets, scale):
    """One block per token, one walk of its path: each node's dot gives the loss term
    and the gradient; the token's own d_h row, atomic adds into the shared node rows."""
    n, lane = cuda.blockIdx.x, cuda.threadIdx.x
    partials = cuda.shared.array(WARP, float32)
    word = targets[n]
    for d in range(lane, h.shape[1], WARP):
        d_h[n, d] = 0.0
    loss = 0.0
    for j in range(lengths[word]):
        node = points[word, j]
        f = _node_dot(h, w, n, node, lane, partials)
        loss += _node_loss(f, codes[word, j])
        g = float32((sigmoid(f) - (1 - int(codes[word, j]))) * scale)
        for d in range(lane, h.shape[1], WARP):
            d_h[n, d] += g * w[node, d]
            cuda.atomic.add(d_w, (node, d), g * h[n, d])
    if lane == 0:
        losses[n] = loss


def hs_forward(losses, h, w, codes, points, lengths, targets):
    _hs_forward[h.shape[0], WARP](losses, h, w, codes, points, lengths, targets)
    return float(losses.copy_to_host().sum())


def hs_train(losses, d_h, d_w, h, w, codes, points, lengths, targets, scale):
    """As cpu.hs_train: the summed loss back to the host; d_h out, d_w added to."""
    _hs_train[h.shape[0], WARP](losses, d_h, d_w, h, w, codes, points, lengths, targets,
                                scale)
    return float(losses.copy_to_host().sum())


# ------------------------------------------------------------- embedding, optimisation
@cuda.jit
def _embed_forward(x, embeddings, ids):
    k = cuda.grid(1)
    T, B, D = x.shape
    if k < T * B * D:
        t, b, d = k // (B * D), (k // D) % B, k % D
        x[t, b, d] = embeddings[ids[t, b], d]


@cuda.jit
def _embed_backward(d_embeddings, d_x, ids):
    k = cuda.grid(1)
    T, B, D = d_x.shape
    if k < T * B * D:
        t, b, d = k // (B * D), (k // D) % B, k % D
        cuda.atomic.add(d_embeddings, (ids[t, b], d), d_x[t, b, d])


def embed_forward(x, embeddings, ids):
    _embed_forward[_blocks(x.size)](x, embeddings, ids)


def embed_backward(d_embeddings, d_x, ids):
    _embed_backward[_blocks(d_x.size)](d_embeddings, d_x, ids)


@cuda.jit
def _square_sum(out, values):
    start, stride = cuda.grid(1), cuda.gridsize(1)
    partial = 0.0
    for k in range(start, values.shape[0], stride):
        partial += float64(values[k]) * values[k]
    cuda.atomic.add(out, 0, partial)


@cuda.jit
def _axpy(y, a, x):
    """y += a x (x is y for a plain scaling: y += (factor - 1) y)."""
    k = cuda.grid(1)
    if k < y.shape[0]:
        y[k] += a * x[k]


def clip_global_norm(grads, max_norm):
    """As cpu.clip_global_norm on a flat device array; the norm comes back to the host."""
    total = _scratch("square_sum", (1,), np.float64)
    total.copy_to_device(np.zeros(1))
    _square_sum[min(64, _blocks(grads.shape[0])[0]), UNIT_THREADS](total, grads)
    norm = math.sqrt(float(total.copy_to_host()[0]))
    if max_norm > 0 and norm > max_norm:
        _axpy[_blocks(grads.shape[0])](grads, np.float32(max_norm / (norm + 1e-6) - 1.0), grads)
    return norm


def sgd_step(params, grads, lr):
    _axpy[_blocks(params.shape[0])](params, np.float32(-lr), grads)


@cuda.jit
def _adam(params, grads, m, v, lr, beta1, beta2, eps, correct1, correct2):
    k = cuda.grid(1)
    if k < params.shape[0]:
        m[k] = beta1 * m[k] + (1.0 - beta1) * grads[k]
        v[k] = beta2 * v[k] + (1.0 - beta2) * grads[k] * grads[k]
        params[k] -= lr * (m[k] / correct1) / (math.sqrt(v[k] / correct2) + eps)


def adam_step(params, grads, m, v, lr, beta1, beta2, eps, step):
    """As cpu.adam_step (float64 moments arithmetic, as there); the bias corrections
    computed once on the host."""
    _adam[_blocks(params.shape[0])](params, grads, m, v, np.float32(lr), float(beta1),
                                    float(beta2), float(eps), 1.0 - beta1 ** step,
                                    1.0 - beta2 ** step)


def kernel_signatures() -> dict:
    """{name: (kernel, argument types)} for every kernel, with a real run's argument types
    (float32 arrays, int64 ids): for compile_all_ptx, and for bench/gpu.py's register report."""
    from numba import typeof
    f32 = np.float32
    m2, v1, i2 = np.zeros((4, 4), f32), np.zeros(4, f32), np.zeros((2, 2), np.int64)
    m3, ids, codes = np.zeros((2, 2, 4), f32), np.zeros(4, np.int64), np.zeros((4, 3), np.uint8)
    points, lengths = np.zeros((4, 3), np.int32), np.zeros(4, np.uint8)
    examples = {
        "matmul_nn": (_MATMUL_NN, (m2, m2, m2, 4)), "matmul_nt": (_MATMUL_NT, (m2, m2, m2, 4)),
        "matmul_tn": (_MATMUL_TN, (m2, m2, m2, 4)),
        "elman_step": (_elman_step, (0, m3, m3, m2, v1, v1, True)),
        "elman_step_back": (_elman_step_back, (0, m3, m2, m3, m3, m3, m2, True)),
        "lstm_step": (_lstm_step, (0, m3, m3, m3, m2, v1, v1)),
        "lstm_step_back": (_lstm_step_back, (0, m3, m2, m2, m3, m3, m3, m2)),
        "gru_step": (_gru_step, (0, m3, m3, m3, m2, v1, v1)),
        "gru_step_back": (_gru_step_back, (0, m3, m3, m2, m2, m3, m3, m3, m2)),
        "transpose": (_transpose, (m2, m2)),
        "multiply": (_multiply, (v1, v1)),
        "softmax_rows": (_softmax_rows, (m2, v1, np.zeros(4), v1, ids)),
        "softmax_back_rows": (_softmax_back_rows, (m2, v1, v1, ids, 0.5)),
        "scale_rows": (_scale_rows, (m2, m2, v1)),
        "weighted_column_sums": (_weighted_column_sums, (v1, m2, v1)),
        "column_sums": (column_sums, (v1, m2)),
        "stream_norm": (_stream_norm, (np.zeros(4), 0, m2)),
        "hs_forward": (_hs_forward, (np.zeros(4), m2, m2, codes, points, lengths, ids)),
        "hs_train": (_hs_train, (np.zeros(4), m2, m2, m2, m2, codes, points, lengths, ids, 0.5)),
        "embed_forward": (_embed_forward, (m3, m2, i2)),
        "embed_backward": (_embed_backward, (m2, m3, i2)),
        "square_sum": (_square_sum, (np.zeros(1), v1)),
        "axpy": (_axpy, (v1, f32(0.5), v1)), "fill": (_fill, (v1, 0.0)),
        "adam": (_adam, (v1, v1, v1, v1, f32(0.5)) + (0.5,) * 5),
    }
    return {name: (kernel, tuple(typeof(a) for a in args)) for name, (kernel, args) in examples.items()}


def compile_all_ptx(cc=(9, 0)) -> dict[str, str]:
    """PTX of every kernel for compute capability `cc`; needs no GPU (see
    word2vec.cuda.compile_all_ptx)."""
    ptx = {}
    with w2v_cuda.device_functions_compile_for(cc):
        for name, (kernel, signature) in kernel_signatures().items():
            ptx[name], _ = cuda.compile_ptx(kernel.py_func, signature, cc=cc)
    return ptx
