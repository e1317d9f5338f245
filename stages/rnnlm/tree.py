"""The output tree of the LM's hierarchical softmax: which words share inner nodes.

p(word | h) is a product of binary decisions along the word's path, so a word's probability
can only follow its neighbours' as far as they share the decisions. `huffman` (the default;
data.lm_huffman) is word2vec's tree: the shortest paths on average, but its merges follow
counts alone, so the words under a node have nothing else in common and every decision has
to be learned from scratch. `clustered` splits the vocabulary top-down into two sets of
equal token mass again and again, each split putting words that occur in similar contexts
(the words just before and just after them, in the training text) on the same side. Equal
mass keeps paths close to Huffman's (1.3% longer on Brown) while the decisions become
"which kind of word comes next", which the hidden state can predict.

Both trees have the vocabulary stage's layout (codes uint8 [V, L], points int32 [V, L],
lengths uint8 [V]; inner node V - 2 is the root), so the same HS kernels serve either.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from stages.rnnlm import data
from stages.vocab import MAX_CODE_LENGTH, tree_codes

TREES = ("huffman", "clustered")
CONTEXT_DIM = 128           # rank of the context vectors
CONTEXT_POWER = 0.75        # context distribution smoothing of the PPMI (as word2vec's negatives)
# Memory stays bounded on any corpus: contexts are the most frequent CONTEXT_WORDS words,
# and the pairs come from at most CONTEXT_TOKENS tokens (evenly spread chunks of the stream),
# counted PAIRS_PER_CHUNK at a time.
CONTEXT_WORDS = 16384
CONTEXT_TOKENS = 1 << 26
PAIRS_PER_CHUNK = 1 << 22
BALANCE_ROUNDS = 10         # balanced 2-means refinements of each split
SVD_POWER_ITERATIONS = 4   # sharpen the randomized SVD's range
AXIS_ITERATIONS = 12        # power iterations for a split's principal axis


def lm_tree(kind: str, stream: np.ndarray, counts: np.ndarray):
    """The tree `kind` over LM ids 0..V-1 from the training stream (LM ids) and its
    unigram counts [V]."""
    if kind == "huffman" or counts.size < 3:
        return data.lm_huffman(counts)
    if kind != "clustered":
        raise ValueError(f"unknown tree {kind!r}; expected one of {TREES}")
    return clustered_tree(counts, context_vectors(stream, counts))


def chunk_starts(tokens: int) -> np.ndarray:
    """Where the counted chunks of a stream of `tokens` begin: all of it up to CONTEXT_TOKENS,
    else CONTEXT_TOKENS / PAIRS_PER_CHUNK chunks spread evenly over it."""
    if tokens <= CONTEXT_TOKENS:
        return np.arange(0, max(tokens - 1, 0), PAIRS_PER_CHUNK)
    count = CONTEXT_TOKENS // PAIRS_PER_CHUNK
    return np.linspace(0, tokens - PAIRS_PER_CHUNK - 1, count).astype(np.int64)


def neighbour_counts(stream: np.ndarray, contexts: np.ndarray, size: int):
    """(before, after): [V, C] counts of context word contexts[c] just before / just after
    word w (row); pairs whose neighbour is not a context word are left out."""
    column = np.full(size, -1, np.int64)
    column[contexts] = np.arange(contexts.size)
    shape = (size, contexts.size)

    def pairs(words, neighbours):
        kept = column[neighbours] >= 0
        return sp.csr_matrix((np.ones(int(kept.sum())), (words[kept], column[neighbours[kept]])),
                             shape=shape)

    before, after = sp.csr_matrix(shape), sp.csr_matrix(shape)
    for start in chunk_starts(stream.size):
        words = np.asarray(stream[start:start + PAIRS_PER_CHUNK + 1], dtype=np.int64)
        before = before + pairs(words[1:], words[:-1])
        after = after + pairs(words[:-1], words[1:])
    return before, after


def positive_pmi(counts: sp.csr_matrix) -> sp.csr_matrix:
    """max(0, log p(w, c) / (p(w) p_s(c))) for word rows and context columns, with the
    context distribution smoothed: p_s(c) proportional to count(c)^CONTEXT_POWER."""
    coo = counts.tocoo()
    total = max(counts.sum(), 1.0)
    word = np.asarray(counts.sum(axis=1)).ravel() / total
    context = np.asarray(counts.sum(axis=0)).ravel() ** CONTEXT_POWER
    context /= max(context.sum(), 1e-300)
    pmi = np.log(coo.data / total / (word[coo.row] * context[coo.col]))
    keep = pmi > 0
    return sp.csr_matrix((pmi[keep], (coo.row[keep], coo.col[keep])), shape=counts.shape)


def truncated_svd(matrix: sp.csr_matrix, rank: int, seed: int = 0) -> np.ndarray:
    """U sqrt(S) [rows, rank] of a randomized SVD (a range finder sharpened by power iterations):
    deterministic for a seed, and for V words it costs a few products with the sparse
    matrix instead of an iterative eigensolver."""
    rank = max(1, min(rank, *matrix.shape))
    oversampled = rank + 16                # extra probes make the leading directions exact
    probe = np.random.default_rng(seed).standard_normal((matrix.shape[1], oversampled))
    basis = np.linalg.qr(matrix @ probe)[0]
    for _ in range(SVD_POWER_ITERATIONS):
        basis = np.linalg.qr(matrix @ np.asarray(matrix.T @ basis))[0]
    u, s, _ = np.linalg.svd(np.asarray((matrix.T @ basis).T), full_matrices=False)
    return (basis @ u[:, :rank]) * np.sqrt(s[:rank])


def context_vectors(stream: np.ndarray, counts: np.ndarray,
                    dim: int = CONTEXT_DIM) -> np.ndarray:
    """float64 [V, dim], unit rows (zero for a word never seen with a context): each word
    by its neighbours, the PPMI of its left and right bigram contexts reduced to `dim`.
    counts [V]: the stream's unigram counts."""
    contexts = np.sort(np.argsort(-counts, kind="stable")[:CONTEXT_WORDS])     # in id order
    before, after = neighbour_counts(stream, contexts, counts.size)
    vectors = truncated_svd(sp.hstack([positive_pmi(before), positive_pmi(after)]).tocsr(), dim)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms > 0, norms, 1.0)


def half_mass_cut(weights: np.ndarray) -> int:
    """The k in 1..n-1 for which weights[:k] holds as nearly as possible half the total."""
    mass = np.cumsum(weights)
    return int(np.clip(np.argmin(np.abs(mass[:-1] - mass[-1] / 2)) + 1, 1, weights.size - 1))


def principal_axis(x: np.ndarray) -> np.ndarray:
    """The unit direction of x's largest variance (rows centred), by power iteration."""
    axis = np.ones(x.shape[1])
    axis[::2] = -1.0                       # a fixed start: the tree is deterministic
    for _ in range(AXIS_ITERATIONS):
        axis = x.T @ (x @ axis)
        norm = np.linalg.norm(axis)
        if norm == 0:
            break
        axis /= norm
    return axis


def balanced_split(vectors: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, int]:
    """Two groups of equal token mass with like vectors together: (order, k), the first k
    of `order` (positions into the inputs) go left. Starts from the count-weighted principal
    axis, then BALANCE_ROUNDS of 2-means whose assignment is a cut at half the mass along
    the difference of the two groups' weighted centroids."""
    total = weights.sum()
    centred = vectors - weights @ vectors / total
    score = centred @ principal_axis(centred * np.sqrt(weights)[:, None])
    order = np.argsort(score, kind="stable")
    cut = half_mass_cut(weights[order])
    for _ in range(BALANCE_ROUNDS):
        left, right = order[:cut], order[cut:]
        direction = (weights[right] @ centred[right] / weights[right].sum()
                     - weights[left] @ centred[left] / weights[left].sum())
        new_order = np.argsort(centred @ direction, kind="stable")
        new_cut = half_mass_cut(weights[new_order])
        settled = new_cut == cut and np.array_equal(np.sort(new_order[:cut]), np.sort(left))
        order, cut = new_order, new_cut
        if settled:
            break
    return order, cut


def clustered_tree(counts: np.ndarray, vectors: np.ndarray):
    """The tree of recursive balanced splits of the words (counts: their token counts,
    vectors: what makes them alike). Returns codes, points, lengths as build_huffman."""
    counts = np.maximum(np.asarray(counts, dtype=np.int64), 1).astype(np.float64)
    size = counts.size
    parent = np.zeros(2 * size - 1, np.int64)
    branch = np.zeros(2 * size - 1, np.int64)
    next_node = 2 * size - 2                   # the root; inner nodes numbered downwards
    pending = [(np.arange(size), next_node)]
    next_node -= 1
    while pending:
        members, node = pending.pop()
        if members.size == 2:
            order, cut = np.arange(2), 1
        else:
            order, cut = balanced_split(vectors[members], counts[members])
        for side, part in enumerate((members[order[:cut]], members[order[cut:]])):
            if part.size == 1:
                child = int(part[0])
            else:
                child, next_node = next_node, next_node - 1
                pending.append((part, child))
            parent[child], branch[child] = node, side
    codes = tree_codes(parent, branch, size)
    if codes is None:
        raise ValueError(f"a path of the clustered tree is longer than {MAX_CODE_LENGTH}")
    return codes
