"""@njit kernels for the RNN language model on the CPU (legend in the package docstring).

Same names, arguments and conventions as reference.py. Matrix products go through blas.py
(MKL or OpenBLAS in float32, np.dot in float64; the library's threads do the parallel work):
the input projection of a whole window is one product, then only the [B, H] x [H, G H]
recurrent product is sequential in time, from weights packed once per window. The backward
passes store the gate gradients of the window and form the weight gradients with one
product each after the time loop. Elementwise loops are plain Python loops that Numba
compiles; the cells' loops over streams run on all threads (prange: streams are
independent). The kernels work in float32 (training) and float64 (gradient checks) alike.
Activations (exp_, tanh_, sigmoid) come from activations.py: vectorisable in float32, the
library functions in float64. The generation kernels are in sampling.py.
"""
import math

import numpy as np
from numba import njit, prange

from stages.rnnlm.blas import matmul, pack_weights, packed_product
from stages.rnnlm.activations import KERNEL, exp_, sigmoid, tanh_
from stages.word2vec.cpu import logistic_step
from stages.word2vec.rng import uniform

@njit(**KERNEL)
def stream_norms(d):
    """d [B, H] -> mean over streams of each row's Euclidean norm (float64)."""
    total = 0.0
    for b in range(d.shape[0]):
        square = 0.0
        for j in range(d.shape[1]):
            square += np.float64(d[b, j]) * d[b, j]
        total += math.sqrt(square)
    return total / max(d.shape[0], 1)


@njit(cache=True)
def input_projection(gates, x, w_x, b_x):
    """gates [T, B, G] = x [T, B, D] w_x^T + b_x: one product for the whole window."""
    T, B, D = x.shape
    flat = gates.reshape(T * B, gates.shape[2])
    matmul(flat, x.reshape(T * B, D), w_x, False, True)
    flat += b_x


@njit(cache=True)
def weight_gradients(d_w_x, d_w_h, d_b_x, d_b_h, d_zx, d_zh, x, h_prev):
    """The weight gradients from the window's pre-activation gradients, one product each.
    d_zx [T, B, G] (through W_x), d_zh [T, B, G] (through W_h), h_prev [T, B, H]."""
    T, B, G = d_zx.shape
    zx, zh = d_zx.reshape(T * B, G), d_zh.reshape(T * B, G)
    matmul(d_w_x, zx, x.reshape(T * B, x.shape[2]), True, False)
    matmul(d_w_h, zh, h_prev.reshape(T * B, h_prev.shape[2]), True, False)
    column_sums(d_b_x, zx)
    if d_zh.ctypes.data == d_zx.ctypes.data:    # one array (all but the GRU): same sums
        d_b_h[:] = d_b_x
    else:
        column_sums(d_b_h, zh)


@njit(**KERNEL)
def column_sums(out, m):
    """out [G] = m [N, G] summed over rows (row by row, so the adds vectorise)."""
    out[:] = 0.0
    for n in range(m.shape[0]):
        row = m[n]
        for g in range(m.shape[1]):
            out[g] += row[g]


@njit(cache=True)
def input_gradient(d_x, d_zx, w_x):
    """d_x [T, B, D] = d_zx [T, B, G] w_x, one product. A d_x with no rows means the input
    gradient is not wanted (frozen embeddings, see Workspace) and skips the product."""
    T, B, G = d_zx.shape
    if d_x.shape[0] == 0:
        return
    matmul(d_x.reshape(T * B, d_x.shape[2]), d_zx.reshape(T * B, G), w_x, False, False)


# ----------------------------------------------------------------------------- Elman cells
@njit(**KERNEL, parallel=True)
def _elman_forward(h_all, gates, x, w_x, w_h, b_x, b_h, relu):
    """h_all [T+1, B, H] (h_all[0] in), gates [T, B, H] out: pre-activations."""
    T, B, H = gates.shape
    input_projection(gates, x, w_x, b_x)
    recurrent = np.empty((B, H), dtype=gates.dtype)
    packed = pack_weights(w_h, B, True, T)
    for t in range(T):
        packed_product(recurrent, h_all[t], packed, w_h, True)
        for b in prange(B):
            for j in range(H):
                a = gates[t, b, j] + recurrent[b, j] + b_h[j]
                gates[t, b, j] = a
                h_all[t + 1, b, j] = max(a, 0.0) if relu else tanh_(a)


@njit(**KERNEL, parallel=True)
def _elman_backward(d_x, d_w_x, d_w_h, d_b_x, d_b_h, d_h_init, d_h_norms, d_h, h_all, gates,
                    x, w_x, w_h, relu):
    T, B, H = gates.shape
    d_a = np.empty_like(gates)
    carry = np.zeros((B, H), dtype=gates.dtype)
    packed = pack_weights(w_h, B, False, T)
    for t in range(T - 1, -1, -1):
        for b in prange(B):
            for j in range(H):
                dh = d_h[t, b, j] + carry[b, j]
                carry[b, j] = dh        # keep the total for the norm below
                if relu:
                    d_a[t, b, j] = dh if gates[t, b, j] > 0 else 0.0
                else:
                    d_a[t, b, j] = dh * (1.0 - h_all[t + 1, b, j] ** 2)
        d_h_norms[t] = stream_norms(carry)
        packed_product(carry, d_a[t], packed, w_h, False)
    d_h_init[:] = carry
    weight_gradients(d_w_x, d_w_h, d_b_x, d_b_h, d_a, d_a, x, h_all[:T])
    input_gradient(d_x, d_a, w_x)


@njit(cache=True)
def tanh_forward(h_all, c_all, gates, x, w_x, w_h, b_x, b_h):
    """h_all [T+1, B, H], gates [T, B, H] pre-activations, x [T, B, D], w_x [H, D],
    w_h [H, H], b_x, b_h [H]. c_all is not used by this cell."""
    _elman_forward(h_all, gates, x, w_x, w_h, b_x, b_h, False)


@njit(cache=True)
def tanh_backward(d_x, d_w_x, d_w_h, d_b_x, d_b_h, d_h_init, d_c_init, d_h_norms, d_h,
                  h_all, c_all, gates, x, w_x, w_h):
    """d_x [T, B, D] (or [0, B, D]: not wanted, see input_gradient), d_w_x/d_w_h/d_b_x/
    d_b_h as the weights, d_h_init/d_c_init [B, H], d_h_norms [T] out; d_h [T, B, H] in."""
    _elman_backward(d_x, d_w_x, d_w_h, d_b_x, d_b_h, d_h_init, d_h_norms, d_h, h_all, gates,
                    x, w_x, w_h, False)
    d_c_init[:] = 0.0


@njit(cache=True)
def relu_forward(h_all, c_all, gates, x, w_x, w_h, b_x, b_h):
    """As tanh_forward with h = max(a, 0) (also the IRNN's cell)."""
    _elman_forward(h_all, gates, x, w_x, w_h, b_x, b_h, True)


@njit(cache=True)
def relu_backward(d_x, d_w_x, d_w_h, d_b_x, d_b_h, d_h_init, d_c_init, d_h_norms, d_h,
                  h_all, c_all, gates, x, w_x, w_h):
    _elman_backward(d_x, d_w_x, d_w_h, d_b_x, d_b_h, d_h_init, d_h_norms, d_h, h_all, gates,
                    x, w_x, w_h, True)
    d_c_init[:] = 0.0


# ------------------------------------------------------------------------------------ LSTM
@njit(**KERNEL, parallel=True)
def lstm_forward(h_all, c_all, gates, x, w_x, w_h, b_x, b_h):
    """h_all, c_all [T+1, B, H] (index 0 in), gates [T, B, 4H] out: activated i f g o;
    w_x [4H, D], w_h [4H, H], b_x, b_h [4H]."""
    T, B, H = gates.shape[0], gates.shape[1], h_all.shape[2]
    input_projection(gates, x, w_x, b_x)
    recurrent = np.empty((B, 4 * H), dtype=gates.dtype)
    packed = pack_weights(w_h, B, True, T)
    for t in range(T):
        packed_product(recurrent, h_all[t], packed, w_h, True)
        for b in prange(B):
            lstm_cell(gates[t, b], c_all[t + 1, b], h_all[t + 1, b], recurrent[b], b_h,
                      c_all[t, b])


@njit(**KERNEL)
def lstm_cell(z, c, h, recurrent, b_h, c_prev):
    """One stream's step: z [4H] pre-activations in (recurrent part and b_h still to add),
    activated gates out; c, h [H] out. Separate loops per activation so each vectorises,
    each over a gate's own slice from 0: an index like z[2H + j] with a run-time H might be
    negative as far as the compiler knows, and the wraparound check that Numba then emits
    on every access stops vectorisation (measured: the window's cell steps 5.6 -> 1.35 ms)."""
    H = c.shape[0]
    zi, zf, zg, zo = z[:H], z[H:2 * H], z[2 * H:3 * H], z[3 * H:]
    for k in range(2 * H):
        z[k] = sigmoid(z[k] + recurrent[k] + b_h[k])
    rg, bg = recurrent[2 * H:3 * H], b_h[2 * H:3 * H]
    for k in range(H):
        zg[k] = tanh_(zg[k] + rg[k] + bg[k])
    ro, bo = recurrent[3 * H:], b_h[3 * H:]
    for k in range(H):
        zo[k] = sigmoid(zo[k] + ro[k] + bo[k])
    for j in range(H):
        c[j] = zf[j] * c_prev[j] + zi[j] * zg[j]
    for j in range(H):
        h[j] = zo[j] * tanh_(c[j])


@njit(**KERNEL, parallel=True)
def lstm_backward(d_x, d_w_x, d_w_h, d_b_x, d_b_h, d_h_init, d_c_init, d_h_norms, d_h,
                  h_all, c_all, gates, x, w_x, w_h):
    T, B, H = gates.shape[0], gates.shape[1], h_all.shape[2]
    d_z = np.empty_like(gates)
    carry_h = np.zeros((B, H), dtype=gates.dtype)
    carry_c = np.zeros((B, H), dtype=gates.dtype)
    dc = np.empty((B, H), dtype=gates.dtype)
    packed = pack_weights(w_h, B, False, T)
    for t in range(T - 1, -1, -1):
        for b in prange(B):
            lstm_cell_backward(d_z[t, b], carry_h[b], carry_c[b], dc[b], gates[t, b],
                               c_all[t + 1, b], c_all[t, b], d_h[t, b])
        d_h_norms[t] = stream_norms(carry_h)
        packed_product(carry_h, d_z[t], packed, w_h, False)
    d_h_init[:] = carry_h
    d_c_init[:] = carry_c
    weight_gradients(d_w_x, d_w_h, d_b_x, d_b_h, d_z, d_z, x, h_all[:T])
    input_gradient(d_x, d_z, w_x)


@njit(**KERNEL)
def lstm_cell_backward(dz, carry_h, carry_c, dc, z, c, c_prev, d_h):
    """One stream's step back: carry_h in: dE/dh_t from the future, out: the total
    (with d_h [H] from above); carry_c in: dE/dc_t from the future, out: dE/dc_(t-1);
    dz [4H] out: the pre-activation gradients; dc [H] scratch. Gate slices as in lstm_cell."""
    H = c.shape[0]
    zi, zf, zg, zo = z[:H], z[H:2 * H], z[2 * H:3 * H], z[3 * H:]
    di, df, dg, do = dz[:H], dz[H:2 * H], dz[2 * H:3 * H], dz[3 * H:]
    for j in range(H):
        dh = d_h[j] + carry_h[j]
        carry_h[j] = dh
        tanh_c = tanh_(c[j])
        dc[j] = carry_c[j] + dh * zo[j] * (1.0 - tanh_c * tanh_c)
        do[j] = dh * tanh_c * zo[j] * (1.0 - zo[j])
    for j in range(H):
        di[j] = dc[j] * zg[j] * zi[j] * (1.0 - zi[j])
    for j in range(H):
        df[j] = dc[j] * c_prev[j] * zf[j] * (1.0 - zf[j])
    for j in range(H):
        dg[j] = dc[j] * zi[j] * (1.0 - zg[j] * zg[j])
        carry_c[j] = dc[j] * zf[j]


# ------------------------------------------------------------------------------------- GRU
@njit(**KERNEL, parallel=True)
def gru_forward(h_all, c_all, gates, x, w_x, w_h, b_x, b_h):
    """PyTorch's GRU (see reference.py). gates [T, B, 4H] out: r, z, n and W_hn h + b_hn;
    w_x [3H, D], w_h [3H, H], b_x, b_h [3H]. c_all is not used by this cell."""
    T, B, H = gates.shape[0], gates.shape[1], h_all.shape[2]
    projected = np.empty((T, B, 3 * H), dtype=gates.dtype)
    input_projection(projected, x, w_x, b_x)
    recurrent = np.empty((B, 3 * H), dtype=gates.dtype)
    packed = pack_weights(w_h, B, True, T)
    for t in range(T):
        packed_product(recurrent, h_all[t], packed, w_h, True)
        for b in prange(B):
            gru_cell(gates[t, b], h_all[t + 1, b], projected[t, b], recurrent[b], b_h, h_all[t, b])


@njit(**KERNEL)
def gru_cell(out, h, zx, zh, b_h, h_prev):
    """One stream's step: zx [3H] = x W_x^T + b_x, zh [3H] = h_prev W_h^T; out [4H]: r, z,
    n, hn; h [H] out. Gate slices from 0, as in lstm_cell, and one short loop per quantity:
    a loop over ten arrays needs more run-time overlap checks than LLVM will emit, and it
    then stays scalar (measured: 6.6 -> 1.5 ms for a window's cell steps)."""
    H = h.shape[0]
    r, z, n, hn = out[:H], out[H:2 * H], out[2 * H:3 * H], out[3 * H:]
    for j in range(2 * H):          # r and z
        out[j] = sigmoid(zx[j] + zh[j] + b_h[j])
    zhn, bhn = zh[2 * H:], b_h[2 * H:]
    for j in range(H):
        hn[j] = zhn[j] + bhn[j]
    zxn = zx[2 * H:]
    for j in range(H):
        n[j] = tanh_(zxn[j] + r[j] * hn[j])
    for j in range(H):
        h[j] = (1.0 - z[j]) * n[j] + z[j] * h_prev[j]


@njit(**KERNEL, parallel=True)
def gru_backward(d_x, d_w_x, d_w_h, d_b_x, d_b_h, d_h_init, d_c_init, d_h_norms, d_h,
                 h_all, c_all, gates, x, w_x, w_h):
    T, B, H = gates.shape[0], gates.shape[1], h_all.shape[2]
    d_zx = np.empty((T, B, 3 * H), dtype=gates.dtype)
    d_zh = np.empty((T, B, 3 * H), dtype=gates.dtype)
    carry = np.zeros((B, H), dtype=gates.dtype)
    direct = np.empty((B, H), dtype=gates.dtype)
    packed = pack_weights(w_h, B, False, T)
    for t in range(T - 1, -1, -1):
        for b in prange(B):
            gru_cell_backward(d_zx[t, b], d_zh[t, b], carry[b], direct[b], gates[t, b],
                              h_all[t, b], d_h[t, b])
        d_h_norms[t] = stream_norms(carry)
        packed_product(carry, d_zh[t], packed, w_h, False)
        carry += direct
    d_h_init[:] = carry
    d_c_init[:] = 0.0
    weight_gradients(d_w_x, d_w_h, d_b_x, d_b_h, d_zx, d_zh, x, h_all[:T])
    input_gradient(d_x, d_zx, w_x)


@njit(**KERNEL)
def gru_cell_backward(dzx, dzh, carry, direct, gate, h_prev, d_h):
    """One stream's step back: carry in: dE/dh_t from the future, out: the total (for the
    norms); direct out: dh z (the part of dE/dh_(t-1) that skips W_h); dzx, dzh [3H] out.
    Short loops over gate slices, as in gru_cell."""
    H = carry.shape[0]
    r, z, n, hn = gate[:H], gate[H:2 * H], gate[2 * H:3 * H], gate[3 * H:]
    dxr, dxz, dxn = dzx[:H], dzx[H:2 * H], dzx[2 * H:]
    dhr, dhz, dhn = dzh[:H], dzh[H:2 * H], dzh[2 * H:]
    for j in range(H):
        carry[j] += d_h[j]
    for j in range(H):
        dxn[j] = carry[j] * (1.0 - z[j]) * (1.0 - n[j] * n[j])
    for j in range(H):
        dhn[j] = dxn[j] * r[j]
        dxr[j] = dxn[j] * hn[j] * r[j] * (1.0 - r[j])
    for j in range(H):
        dxz[j] = carry[j] * (h_prev[j] - n[j]) * z[j] * (1.0 - z[j])
    for j in range(H):
        direct[j] = carry[j] * z[j]
    dhr[:] = dxr
    dhz[:] = dxz


# ----------------------------------------------------------------------------- output layers
# The row maximum is kept in this many lanes: an elementwise max vectorises, where a single
# running max does not (a float max reduction needs 'nnan', which the kernels leave out so
# that NaN weights still show).
MAX_LANES = 16
# Long sums (a softmax row, the squared gradient) are formed in the array's precision over
# blocks this long, which vectorises and stays exact to ~1e-7 in float32, and the blocks are
# added in float64; a float64 sum of float32 terms did not vectorise. Each pass is its own
# function over a view: written as loops inside softmax_rows, neither vectorised (measured
# over 1,120 x 10,002 logits: bias and max 18.7 -> 7.1 ms, exp and sum 35 -> 6.2).
SUM_BLOCK = 256


@njit(**KERNEL)
def softmax_rows(exps, inverse_totals, b, targets):
    """exps [N, V]: logits in, exp(logit + b - the row's largest) out; inverse_totals [N]
    out: 1 / each row's sum, so the probabilities are exps * inverse_totals[:, None]
    (never formed: the backward pass folds the row scale into its small factors).
    Returns the summed -log p(target). Serial on purpose: BLAS's threads keep spinning
    for a while after the product before it, and Numba threads started then fought them for
    the cores (measured: parallel 58 ms, serial 48 ms for a 1,120 x 10,002 window)."""
    N, V = exps.shape
    losses = np.empty(N)
    lanes = np.empty(MAX_LANES, exps.dtype)
    for n in range(N):
        row = exps[n]
        add_in_place(row, b)
        top = largest(row, lanes)
        # -log p(target) from the logit, which cannot underflow as its probability can
        target_logit = np.float64(row[targets[n]]) - top
        total = 0.0
        for start in range(0, V, SUM_BLOCK):
            total += exp_in_place(row[start:start + SUM_BLOCK], top)
        losses[n] = math.log(total) - target_logit
        inverse_totals[n] = 1.0 / total
    return losses.sum()


@njit(**KERNEL)
def add_in_place(row, b):
    for k in range(row.shape[0]):
        row[k] += b[k]


@njit(**KERNEL)
def largest(row, lanes):
    """The largest entry of row [V] (NaNs aside); lanes: MAX_LANES scratch."""
    width = lanes.shape[0]
    whole = row.shape[0] - row.shape[0] % width
    lanes[:] = -np.inf
    for start in range(0, whole, width):
        for j in range(width):
            value = row[start + j]
            lanes[j] = value if value > lanes[j] else lanes[j]
    top = lanes.max()
    for k in range(whole, row.shape[0]):
        top = max(top, row[k])
    return top


@njit(**KERNEL)
def exp_in_place(block, top):
    """block = exp(block - top); returns its sum, formed in the block's own precision."""
    part = block.dtype.type(0.0)
    for k in range(block.shape[0]):
        e = exp_(block[k] - top)
        block[k] = e
        part += e
    return part


@njit(cache=True)
def softmax_forward(exps, inverse_totals, h, w, b, targets):
    """exps [N, V], inverse_totals [N] out (see softmax_rows), h [N, H], w [V, H], b [V],
    targets int [N]; returns the summed loss."""
    matmul(exps, h, w, False, True)
    return softmax_rows(exps, inverse_totals, b, targets)


@njit(**KERNEL)
def softmax_backward(d_h, d_w, d_b, exps, inverse_totals, h, w, targets, scale):
    """d_h [N, H], d_w [V, H], d_b [V] out for scale * summed loss; exps is consumed.
    dE/dlogits = scale * (P - Y) = diag(r) (E - diag(1/r') Y) with r = scale / total, so
    the row scale r goes onto the [N, H] factors and the [N, V] array is touched once."""
    N, V = exps.shape
    rows = np.empty((N, 1), dtype=h.dtype)
    for n in range(N):
        exps[n, targets[n]] -= 1.0 / inverse_totals[n]
        rows[n, 0] = scale * inverse_totals[n]
    matmul(d_w, exps, h * rows, True, False)
    matmul(d_b.reshape(1, V), rows, exps, True, False)
    matmul(d_h, exps, w, False, False)
    d_h *= rows


@njit(**KERNEL)
def hs_path_loss(h, w, codes, points, length):
    """-log p(word | h) along its tree path (label 1 - code, as in word2vec)."""
    loss = 0.0
    for j in range(length):
        row = w[points[j]]
        f = 0.0
        for k in range(h.shape[0]):
            f += np.float64(h[k]) * row[k]
        # -log sigma(f) for label 1 (code 0), -log sigma(-f) for label 0 (code 1)
        f = -f if codes[j] == 0 else f
        loss += max(f, 0.0) + math.log1p(math.exp(-abs(f)))
    return loss


@njit(**KERNEL)
def hs_forward(losses, h, w, codes, points, lengths, targets):
    """losses [N] out, h [N, H], w [V-1, H] (inner nodes), codes uint8 [V, L],
    points int32 [V, L], lengths uint8 [V]; returns the summed loss. Serial, as
    softmax_rows, to stay clear of BLAS's spinning threads (and it is cheap)."""
    for n in range(targets.shape[0]):
        word = targets[n]
        losses[n] = hs_path_loss(h[n], w, codes[word], points[word], lengths[word])
    return losses.sum()


@njit(**KERNEL)
def hs_train(losses, d_h, d_w, h, w, codes, points, lengths, targets, scale):
    """Training's output layer: hs_forward's losses (returns their sum) and the gradients
    of scale * that sum, in one walk of each path: d_h [N, H] out, d_w [V-1, H] added to.
    Each node goes through word2vec's logistic_step, whose h . w (float32) gives both the
    loss term and the gradient (saturating past its bound, so a confidently wrong node
    still gets its full gradient); evaluation keeps hs_forward's float64 dots. Only the
    rows of d_w on the targets' paths change: the caller zeroes those (path_nodes), not
    all V-1 rows."""
    d_h[:] = 0.0
    total = 0.0
    for n in range(targets.shape[0]):
        word = targets[n]
        loss = 0.0
        for j in range(lengths[word]):
            node = points[word, j]
            loss += logistic_step(h[n], d_h[n], w, node, d_w, node, 1 - np.int64(codes[word, j]),
                                  -scale, True, True)
        losses[n] = loss
        total += loss
    return total


@njit(**KERNEL, parallel=True)
def hs_word_probabilities(probs, h, w, codes, points, lengths):
    """probs [N, V] out: p(word | h) for every word."""
    for n in prange(h.shape[0]):
        for word in range(lengths.shape[0]):
            probs[n, word] = math.exp(-hs_path_loss(h[n], w, codes[word], points[word],
                                                    lengths[word]))


# ------------------------------------------------------------------- embedding, optimisers
@njit(cache=True)
def embed_forward(x, embeddings, ids):
    """x [T, B, D] out, embeddings [V, D], ids int [T, B]."""
    for t in range(ids.shape[0]):
        for b in range(ids.shape[1]):
            x[t, b] = embeddings[ids[t, b]]


@njit(cache=True)
def embed_backward(d_embeddings, d_x, ids):
    """d_embeddings [V, D] += d_x [T, B, D] scattered by ids."""
    for t in range(ids.shape[0]):
        for b in range(ids.shape[1]):
            d_embeddings[ids[t, b]] += d_x[t, b]


@njit(cache=True)
def whole(array):
    """The segment list covering all of a flat array."""
    return np.array([[0, array.shape[0]]], dtype=np.int64)


@njit(**KERNEL)
def clip_global_norm(grads, max_norm):
    """grads: every gradient in one flat array, scaled in place to norm <= max_norm
    (0: never); returns the norm before clipping (PyTorch's clip_grad_norm_ rule)."""
    return clip_segments(grads, whole(grads), max_norm)


@njit(**KERNEL)
def clip_segments(grads, segments, max_norm):
    """clip_global_norm for a gradient that is zero outside segments (int64 [S, 2]: the
    [start, stop) ranges of the flat array that may be non-zero): the rows an HS output
    layer or an embedding table touched in a window are a fraction of their matrices."""
    square = 0.0
    for s in range(segments.shape[0]):
        stop = segments[s, 1]
        for start in range(segments[s, 0], stop, SUM_BLOCK):
            square += sum_of_squares(grads[start:min(start + SUM_BLOCK, stop)])
    norm = math.sqrt(square)
    if max_norm > 0 and norm > max_norm:
        factor = max_norm / (norm + 1e-6)
        for s in range(segments.shape[0]):
            for k in range(segments[s, 0], segments[s, 1]):
                grads[k] *= factor
    return norm


@njit(**KERNEL)
def sum_of_squares(block):
    """Sum of block [<= SUM_BLOCK] squared, in its own precision (float32 blocks: 4x a
    float64 sum over 3.3M gradients, 0.52 against 2.02 ms)."""
    part = block.dtype.type(0.0)
    for k in range(block.shape[0]):
        part += block[k] * block[k]
    return part


@njit(**KERNEL)
def sgd_step(params, grads, lr):
    sgd_segments(params, grads, whole(params), lr)


@njit(**KERNEL, parallel=True)
def sgd_segments(params, grads, segments, lr):
    """params -= lr * grads where the gradient may be non-zero (see clip_segments). The
    threads take equal shares of the segments: keep them of similar lengths."""
    for s in prange(segments.shape[0]):
        for k in range(segments[s, 0], segments[s, 1]):
            params[k] -= lr * grads[k]


@njit(cache=True)
def add_distinct(out, count, marks, rows):
    """Append to out (int64) the values of rows (ints < marks.size) not yet marked in
    marks (bool [R]), marking them; returns the new count. unmark() clears the marks."""
    for i in range(rows.shape[0]):
        r = rows[i]
        if not marks[r]:
            marks[r] = True
            out[count] = r
            count += 1
    return count


@njit(cache=True)
def unmark(marks, rows):
    for i in range(rows.shape[0]):
        marks[rows[i]] = False


@njit(cache=True)
def distinct_ids(out, marks, ids):
    """out: the distinct ids (any shape) in first-seen order; returns how many. marks:
    bool scratch, all False in and out."""
    count = add_distinct(out, 0, marks, ids.reshape(-1))
    unmark(marks, out[:count])
    return count


@njit(cache=True)
def path_nodes(out, marks, points, lengths, targets):
    """distinct_ids of the inner nodes on the targets' tree paths."""
    count = 0
    for n in range(targets.shape[0]):
        word = targets[n]
        count = add_distinct(out, count, marks, points[word, :lengths[word]])
    unmark(marks, out[:count])
    return count


@njit(**KERNEL)
def zero_rows(matrix, rows):
    for i in range(rows.shape[0]):
        r = rows[i]
        for k in range(matrix.shape[1]):
            matrix[r, k] = 0.0


@njit(**KERNEL)
def adam_step(params, grads, m, v, lr, beta1, beta2, eps, step):
    correct1 = 1.0 - beta1 ** step
    correct2 = 1.0 - beta2 ** step
    for k in range(params.shape[0]):
        m[k] = beta1 * m[k] + (1.0 - beta1) * grads[k]
        v[k] = beta2 * v[k] + (1.0 - beta2) * grads[k] * grads[k]
        params[k] -= lr * (m[k] / correct1) / (math.sqrt(v[k] / correct2) + eps)


@njit(cache=True)
def dropout_mask(mask, keep, rng):
    """mask float [..] out: 1 / keep with probability keep, else 0 (inverted dropout);
    rng uint64 [1]."""
    flat = mask.reshape(-1)
    for k in range(flat.shape[0]):
        flat[k] = 1.0 / keep if uniform(rng) < keep else 0.0
