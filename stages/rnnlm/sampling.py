"""@njit kernels that draw words from a trained model (used by generate.py): the HS tree
walk, sampling from a softmax, and a loop that generates many words in one call."""
import math

import numpy as np
from numba import njit

from stages.rnnlm.activations import KERNEL, sigmoid
from stages.rnnlm.cpu import hs_path_loss
from stages.word2vec.cpu import FASTMATH
from stages.word2vec.rng import uniform


@njit(cache=True)
def hs_children(codes, points, lengths):
    """children int32 [V-1, 2]: the node reached from each inner node by code bit 0 or 1;
    >= 0 another inner node, < 0 the leaf of word -(value + 1). The root is node V - 2."""
    V = lengths.shape[0]
    children = np.zeros((max(V - 1, 1), 2), dtype=np.int32)
    for word in range(V):
        n = lengths[word]
        for j in range(n):
            child = points[word, j + 1] if j + 1 < n else -(word + 1)
            children[points[word, j], codes[word, j]] = child
    return children


@njit(**KERNEL)
def hs_sample(h, w, children, rng):
    """Draw a word from the HS distribution by walking down from the root: each node is a
    coin with p(code 0) = sigma(h . w_node). O(L H) per draw instead of O(V H)."""
    node = w.shape[0] - 1
    while True:
        f = 0.0
        for k in range(h.shape[0]):
            f += np.float64(h[k]) * w[node, k]
        nxt = children[node, 0] if uniform(rng) < sigmoid(f) else children[node, 1]
        if nxt < 0:
            return -nxt - 1
        node = nxt


@njit(**KERNEL)
def categorical_sample(probs, rng):
    """Draw an index from unnormalised non-negative weights."""
    total = 0.0
    for k in range(probs.shape[0]):
        total += probs[k]
    u, acc = uniform(rng) * total, 0.0
    for k in range(probs.shape[0]):
        acc += probs[k]
        if u < acc:
            return k
    return probs.shape[0] - 1


@njit(fastmath=FASTMATH, error_model="numpy")
def generate_tokens(forward, sample, out_ids, first, h_all, c_all, gates, x, embeddings, cell,
                    head, temperature, rng):
    """out_ids int32 [n] out: n words sampled one at a time from state (h_all[0], c_all[0])
    after feeding `first`; the state is left after the last word. forward: a cell's
    forward kernel with T = B = 1 buffers; sample(h, head, temperature, rng) draws a word.
    One call generates everything, so no Python runs between tokens."""
    w_x, w_h, b_x, b_h = cell
    word = first
    for i in range(out_ids.shape[0]):
        x[0, 0] = embeddings[word]
        forward(h_all, c_all, gates, x, w_x, w_h, b_x, b_h)
        h_all[0] = h_all[1]
        c_all[0] = c_all[1]
        word = sample(h_all[1, 0], head, temperature, rng)
        out_ids[i] = word


@njit(**KERNEL)
def sample_softmax(h, head, temperature, rng):
    """head = (w_out [V, H], b_out [V], scratch float64 [V])."""
    w, b, scratch = head
    logits = np.dot(w, h)               # BLAS matrix-vector product
    top = -np.inf
    for k in range(w.shape[0]):
        scratch[k] = (np.float64(logits[k]) + b[k]) / temperature
        top = max(top, scratch[k])
    for k in range(w.shape[0]):
        scratch[k] = math.exp(scratch[k] - top)
    return categorical_sample(scratch, rng)


@njit(**KERNEL)
def sample_hs(h, head, temperature, rng):
    """head = (w_out [V-1, H], children, codes, points, lengths, scratch float64 [1, V]).
    At temperature 1 the tree walk is exact; otherwise p^(1/temperature) over all words."""
    w, children, codes, points, lengths, scratch = head
    if temperature == 1.0:
        return hs_sample(h, w, children, rng)
    for word in range(lengths.shape[0]):
        scratch[0, word] = math.exp(-hs_path_loss(h, w, codes[word], points[word], lengths[word])
                                    / temperature)
    return categorical_sample(scratch[0], rng)
