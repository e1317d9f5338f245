"""Plain NumPy twins of cpu.py's kernels: same names, same arguments, one obvious loop over
time, float64-capable. Slow on purpose; finite differences check these and tests hold the
kernels to them.

Conventions shared with cpu.py (legend in the package docstring):
- forward kernels read the initial state from h_all[0] (and c_all[0]) and fill the rest;
- backward kernels overwrite their d_ outputs; d_h [T, B, H] is dE/dh_t from the layers
  above, and d_h_init receives dE/dh_0 (what carries into the previous window);
- d_h_norms [T] receives the mean over streams of ||dE/dh_t||, the total gradient reaching
  h_t (from the output at t and from the future): the vanishing-gradient diagnostic.
"""
import math

import numpy as np

from stages.word2vec.reference import logistic_step
from stages.word2vec.rng import py_uniform


def sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def stream_norms(d):
    """Mean over streams of the Euclidean norm of each stream's row: d [B, H] -> float."""
    return float(np.sqrt((d.astype(np.float64) ** 2).sum(axis=1)).mean())


# ----------------------------------------------------------------------------- Elman cells
def _elman_forward(h_all, gates, x, w_x, w_h, b_x, b_h, relu):
    for t in range(x.shape[0]):
        gates[t] = x[t] @ w_x.T + b_x + h_all[t] @ w_h.T + b_h
        h_all[t + 1] = np.maximum(gates[t], 0) if relu else np.tanh(gates[t])


def _elman_backward(d_x, d_w_x, d_w_h, d_b_x, d_b_h, d_h_init, d_h_norms, d_h, h_all, gates,
                    x, w_x, w_h, relu):
    for out in (d_w_x, d_w_h, d_b_x, d_b_h):
        out[...] = 0
    carry = np.zeros_like(d_h_init)
    for t in reversed(range(x.shape[0])):
        dh = d_h[t] + carry
        d_h_norms[t] = stream_norms(dh)
        da = dh * (gates[t] > 0) if relu else dh * (1 - h_all[t + 1] ** 2)
        d_w_x += da.T @ x[t]
        d_w_h += da.T @ h_all[t]
        d_b_x += da.sum(axis=0)
        d_b_h += da.sum(axis=0)
        if d_x.shape[0]:       # no rows: not wanted (cpu.input_gradient)
            d_x[t] = da @ w_x
        carry = da @ w_h
    d_h_init[...] = carry


def tanh_forward(h_all, c_all, gates, x, w_x, w_h, b_x, b_h):
    """gates [T, B, H]: pre-activations. c_all is not used by this cell."""
    _elman_forward(h_all, gates, x, w_x, w_h, b_x, b_h, False)


def tanh_backward(d_x, d_w_x, d_w_h, d_b_x, d_b_h, d_h_init, d_c_init, d_h_norms, d_h,
                  h_all, c_all, gates, x, w_x, w_h):
    _elman_backward(d_x, d_w_x, d_w_h, d_b_x, d_b_h, d_h_init, d_h_norms, d_h, h_all, gates,
                    x, w_x, w_h, False)
    d_c_init[...] = 0


def relu_forward(h_all, c_all, gates, x, w_x, w_h, b_x, b_h):
    _elman_forward(h_all, gates, x, w_x, w_h, b_x, b_h, True)


def relu_backward(d_x, d_w_x, d_w_h, d_b_x, d_b_h, d_h_init, d_c_init, d_h_norms, d_h,
                  h_all, c_all, gates, x, w_x, w_h):
    _elman_backward(d_x, d_w_x, d_w_h, d_b_x, d_b_h, d_h_init, d_h_norms, d_h, h_all, gates,
                    x, w_x, w_h, True)
    d_c_init[...] = 0


# ------------------------------------------------------------------------------------ LSTM
def lstm_forward(h_all, c_all, gates, x, w_x, w_h, b_x, b_h):
    """gates [T, B, 4H]: the activated input, forget, candidate and output gates (i f g o,
    PyTorch's order); c_all [T+1, B, H]: cell states, c_all[0] the initial one."""
    H = h_all.shape[2]
    for t in range(x.shape[0]):
        z = x[t] @ w_x.T + b_x + h_all[t] @ w_h.T + b_h
        i, f, g, o = (sigmoid(z[:, :H]), sigmoid(z[:, H:2 * H]), np.tanh(z[:, 2 * H:3 * H]),
                      sigmoid(z[:, 3 * H:]))
        c_all[t + 1] = f * c_all[t] + i * g
        h_all[t + 1] = o * np.tanh(c_all[t + 1])
        gates[t] = np.concatenate([i, f, g, o], axis=1)


def lstm_backward(d_x, d_w_x, d_w_h, d_b_x, d_b_h, d_h_init, d_c_init, d_h_norms, d_h,
                  h_all, c_all, gates, x, w_x, w_h):
    H = h_all.shape[2]
    for out in (d_w_x, d_w_h, d_b_x, d_b_h):
        out[...] = 0
    carry_h, carry_c = np.zeros_like(d_h_init), np.zeros_like(d_c_init)
    for t in reversed(range(x.shape[0])):
        i, f, g, o = (gates[t][:, k * H:(k + 1) * H] for k in range(4))
        dh = d_h[t] + carry_h
        d_h_norms[t] = stream_norms(dh)
        tanh_c = np.tanh(c_all[t + 1])
        dc = carry_c + dh * o * (1 - tanh_c ** 2)
        dz = np.concatenate([dc * g * i * (1 - i), dc * c_all[t] * f * (1 - f),
                             dc * i * (1 - g ** 2), dh * tanh_c * o * (1 - o)], axis=1)
        d_w_x += dz.T @ x[t]
        d_w_h += dz.T @ h_all[t]
        d_b_x += dz.sum(axis=0)
        d_b_h += dz.sum(axis=0)
        if d_x.shape[0]:       # no rows: not wanted (cpu.input_gradient)
            d_x[t] = dz @ w_x
        carry_h, carry_c = dz @ w_h, dc * f
    d_h_init[...] = carry_h
    d_c_init[...] = carry_c


# ------------------------------------------------------------------------------------- GRU
def gru_forward(h_all, c_all, gates, x, w_x, w_h, b_x, b_h):
    """PyTorch's GRU: r, z = sigma(W_x x + b_x + W_h h + b_h) (first two blocks),
    n = tanh(W_xn x + b_xn + r * (W_hn h + b_hn)), h' = (1 - z) n + z h.
    gates [T, B, 4H]: r, z, n and W_hn h + b_hn (needed by the backward pass)."""
    H = h_all.shape[2]
    for t in range(x.shape[0]):
        zx = x[t] @ w_x.T + b_x
        zh = h_all[t] @ w_h.T + b_h
        r = sigmoid(zx[:, :H] + zh[:, :H])
        z = sigmoid(zx[:, H:2 * H] + zh[:, H:2 * H])
        hn = zh[:, 2 * H:]
        n = np.tanh(zx[:, 2 * H:] + r * hn)
        h_all[t + 1] = (1 - z) * n + z * h_all[t]
        gates[t] = np.concatenate([r, z, n, hn], axis=1)


def gru_backward(d_x, d_w_x, d_w_h, d_b_x, d_b_h, d_h_init, d_c_init, d_h_norms, d_h,
                 h_all, c_all, gates, x, w_x, w_h):
    H = h_all.shape[2]
    for out in (d_w_x, d_w_h, d_b_x, d_b_h):
        out[...] = 0
    carry = np.zeros_like(d_h_init)
    for t in reversed(range(x.shape[0])):
        r, z, n, hn = (gates[t][:, k * H:(k + 1) * H] for k in range(4))
        dh = d_h[t] + carry
        d_h_norms[t] = stream_norms(dh)
        dn = dh * (1 - z) * (1 - n ** 2)
        dr = dn * hn * r * (1 - r)
        dz = dh * (h_all[t] - n) * z * (1 - z)
        dzx = np.concatenate([dr, dz, dn], axis=1)
        dzh = np.concatenate([dr, dz, dn * r], axis=1)
        d_w_x += dzx.T @ x[t]
        d_w_h += dzh.T @ h_all[t]
        d_b_x += dzx.sum(axis=0)
        d_b_h += dzh.sum(axis=0)
        if d_x.shape[0]:       # no rows: not wanted (cpu.input_gradient)
            d_x[t] = dzx @ w_x
        carry = dh * z + dzh @ w_h
    d_h_init[...] = carry
    d_c_init[...] = 0


# ----------------------------------------------------------------------------- output layers
def softmax_forward(exps, inverse_totals, h, w, b, targets):
    """exps [N, V] out: exp(logits - row max), inverse_totals [N] out: 1 / row sums, so
    that the probabilities are exps * inverse_totals[:, None]; returns the summed loss."""
    logits = h @ w.T + b
    logits -= logits.max(axis=1, keepdims=True)
    exps[...] = np.exp(logits)
    totals = exps.astype(np.float64).sum(axis=1)
    inverse_totals[...] = 1.0 / totals
    return float((np.log(totals) - logits[np.arange(targets.size), targets]).sum())


def softmax_backward(d_h, d_w, d_b, exps, inverse_totals, h, w, targets, scale):
    """Gradients of scale * summed loss: dE/dlogits = scale (P - Y). exps is consumed."""
    d_logits = exps * inverse_totals[:, None]
    d_logits[np.arange(targets.size), targets] -= 1
    d_logits *= scale
    d_w[...] = d_logits.T @ h
    d_b[...] = d_logits.sum(axis=0)
    d_h[...] = d_logits @ w


def hs_path_losses(h, w, codes, points, length):
    """-log sigma((2 label - 1) h . w_node) along one word's tree path, label = 1 - code."""
    f = w[points[:length]] @ h
    sign = 1.0 - 2.0 * (1 - codes[:length].astype(np.float64))    # -1 for label 1
    return np.logaddexp(0.0, sign * f)


def hs_forward(losses, h, w, codes, points, lengths, targets):
    """losses [N] out: -log p(target | h) over the HS tree; returns their sum."""
    for n, word in enumerate(targets):
        losses[n] = hs_path_losses(h[n], w, codes[word], points[word], lengths[word]).sum()
    return float(losses.astype(np.float64).sum())


def hs_backward(d_h, d_w, h, w, codes, points, lengths, targets, scale):
    """Gradients of scale * summed HS loss: d_h [N, H] out, d_w [V-1, H] added to."""
    d_h[...] = 0
    for n, word in enumerate(targets):
        for j in range(lengths[word]):
            node, label = points[word, j], 1 - int(codes[word, j])
            g = (sigmoid(h[n] @ w[node]) - label) * scale
            d_h[n] += g * w[node]
            d_w[node] += g * h[n]


def hs_train(losses, d_h, d_w, h, w, codes, points, lengths, targets, scale):
    """hs_forward, then hs_backward: the summed loss, with the gradients of scale * it."""
    total = hs_forward(losses, h, w, codes, points, lengths, targets)
    hs_backward(d_h, d_w, h, w, codes, points, lengths, targets, scale)
    return total


def hs_train_gradients_shared(d_h, d_w, h, w, codes, points, lengths, targets, scale):
    """cpu.hs_train's gradients through word2vec's reference node step (float32 semantics,
    saturating past its bound)."""
    d_h[...] = 0
    for n, word in enumerate(targets):
        for j in range(lengths[word]):
            node = points[word, j]
            logistic_step(h[n], d_h[n], w, node, d_w, node, 1 - int(codes[word, j]),
                          -scale, True, False)


def hs_word_probabilities(probs, h, w, codes, points, lengths):
    """probs [N, V] out: p(word | h) for every word (they sum to 1 over the tree)."""
    for n in range(h.shape[0]):
        for word in range(lengths.size):
            loss = hs_path_losses(h[n], w, codes[word], points[word], lengths[word]).sum()
            probs[n, word] = math.exp(-loss)


# ------------------------------------------------------------------- embedding, optimisers
def embed_forward(x, embeddings, ids):
    """x [T, B, D] out: embeddings[ids]."""
    x[...] = embeddings[ids]


def embed_backward(d_embeddings, d_x, ids):
    """d_embeddings [V, D] += scatter of d_x [T, B, D] by ids [T, B]."""
    np.add.at(d_embeddings, ids.ravel(), d_x.reshape(-1, d_x.shape[2]))


def clip_global_norm(grads, max_norm):
    """Scale all gradients (one flat array) so their joint norm is at most max_norm
    (0: no clipping); returns the norm before clipping."""
    norm = math.sqrt(float((grads.astype(np.float64) ** 2).sum()))
    if max_norm > 0 and norm > max_norm:
        grads *= max_norm / (norm + 1e-6)
    return norm


def sgd_step(params, grads, lr):
    params -= lr * grads


def segment_mask(size, segments):
    mask = np.zeros(size, bool)
    for start, stop in segments:
        mask[start:stop] = True
    return mask


def clip_segments(grads, segments, max_norm):
    """clip_global_norm of a gradient that is zero outside segments ([start, stop) pairs)."""
    assert not grads[~segment_mask(grads.size, segments)].any()
    return clip_global_norm(grads, max_norm)


def sgd_segments(params, grads, segments, lr):
    assert not grads[~segment_mask(grads.size, segments)].any()
    sgd_step(params, grads, lr)


def distinct_ids(out, marks, ids):
    """The distinct ids in first-seen order into out; returns how many."""
    values, first = np.unique(np.asarray(ids).reshape(-1), return_index=True)
    order = values[np.argsort(first)]
    out[:order.size] = order
    return order.size


def path_nodes(out, marks, points, lengths, targets):
    """distinct_ids of the inner nodes on the targets' tree paths."""
    nodes = [points[word, j] for word in targets for j in range(lengths[word])]
    return distinct_ids(out, marks, np.array(nodes, np.int64))


def adam_step(params, grads, m, v, lr, beta1, beta2, eps, step):
    """Adam (Kingma & Ba) with bias correction; step counts from 1."""
    m[...] = beta1 * m + (1 - beta1) * grads
    v[...] = beta2 * v + (1 - beta2) * grads ** 2
    m_hat = m / (1 - beta1 ** step)
    v_hat = v / (1 - beta2 ** step)
    params -= lr * m_hat / (np.sqrt(v_hat) + eps)


def dropout_mask(mask, keep, rng):
    flat = mask.reshape(-1)
    for k in range(flat.size):
        flat[k] = 1.0 / keep if py_uniform(rng) < keep else 0.0
