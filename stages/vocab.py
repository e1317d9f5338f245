"""Vocabulary stage: min_count cut, the Huffman tree, subsampling and negative-sampling tables.

Dimensions: V vocabulary size, L longest Huffman code (<= MAX_CODE_LENGTH).

Outputs:
    vocab.tsv     word<TAB>count, count descending, ties in first-appearance order
    huffman.npz   codes uint8 [V, L], points int32 [V, L], lengths uint8 [V]

The corpus stage already numbered words by descending training count, so the vocabulary is
the first V corpus ids: token id t is in the vocabulary iff t < V.

Huffman tree, as in word2vec.c (CreateBinaryTree): leaves 0..V-1 hold the counts sorted
descending, inner nodes V..2V-2 are created in order; two pointers walk the leaves leftwards
and the inner nodes rightwards, so each merge takes the two smallest in O(1) and the whole
build is O(V). The root is inner node 2V-2; inner node V+k is stored as point k, so the root
is point V-2. For word w, code[j] is the branch taken at points[j] on the path root -> leaf;
p(w | h) = prod_j sigma((1 - 2 code[j]) * h . syn1[points[j]]).
"""
from __future__ import annotations

import numpy as np
from numba import njit

from stages import corpus
from stages.errors import InputError

MAX_CODE_LENGTH = 40          # word2vec.c's MAX_CODE_LENGTH
NEGATIVE_POWER = 0.75         # the unigram distribution is raised to this for negatives


@njit(cache=True)
def huffman_tree(counts):
    """counts int64 [V], sorted descending -> (parent int64 [2V-1], branch uint8 [2V-1]).
    Ties prefer an inner node over a leaf, exactly as word2vec.c's `<` comparison does."""
    V = counts.shape[0]
    weight = np.empty(2 * V - 1, dtype=np.int64)
    weight[:V] = counts
    parent = np.zeros(2 * V - 1, dtype=np.int64)
    branch = np.zeros(2 * V - 1, dtype=np.uint8)
    leaf, inner = V - 1, V
    for k in range(V - 1):
        smallest = np.empty(2, dtype=np.int64)
        for m in range(2):
            if leaf >= 0 and (inner >= V + k or weight[leaf] < weight[inner]):
                smallest[m] = leaf
                leaf -= 1
            else:
                smallest[m] = inner
                inner += 1
        weight[V + k] = weight[smallest[0]] + weight[smallest[1]]
        parent[smallest[0]] = V + k
        parent[smallest[1]] = V + k
        branch[smallest[1]] = 1
    return parent, branch


@njit(cache=True)
def huffman_codes(parent, branch, V, max_length):
    """Walk leaf -> root for each word -> (codes uint8 [V, max_length],
    points int32 [V, max_length], lengths uint8 [V]); lengths[0] = 255 if some code is
    longer than max_length."""
    codes = np.zeros((V, max_length), dtype=np.uint8)
    points = np.zeros((V, max_length), dtype=np.int32)
    lengths = np.zeros(V, dtype=np.uint8)
    root = 2 * V - 2
    for w in range(V):
        depth, node = 0, w
        while node != root:
            depth += 1
            node = parent[node]
        if depth > max_length:
            lengths[0] = 255
            return codes, points, lengths
        lengths[w] = depth
        node = w
        for j in range(depth - 1, -1, -1):   # fill from the leaf end backwards
            codes[w, j] = branch[node]
            node = parent[node]
            points[w, j] = node - V
    return codes, points, lengths


def huffman_reference(counts) -> tuple[list[list[int]], list[list[int]]]:
    """Plain-Python twin of huffman_tree + huffman_codes (the truth the kernels are tested
    against): two queues, leaves by increasing count and inner nodes in creation order;
    each merge takes the two lightest front nodes, an inner node before a leaf of equal
    weight, exactly as word2vec.c's `<` test does.
    Returns per word its code bits and its points, root first."""
    V = len(counts)
    parent, branch = [0] * (2 * V - 1), [0] * (2 * V - 1)
    weight = list(int(c) for c in counts) + [0] * (V - 1)
    leaves, inner = list(range(V - 1, -1, -1)), []     # both in increasing weight
    for k in range(V - 1):
        picked = []
        for _ in range(2):
            take_leaf = leaves and (not inner or weight[leaves[0]] < weight[inner[0]])
            picked.append(leaves.pop(0) if take_leaf else inner.pop(0))
        weight[V + k] = weight[picked[0]] + weight[picked[1]]
        parent[picked[0]] = parent[picked[1]] = V + k
        branch[picked[1]] = 1
        inner.append(V + k)
    codes, points = [], []
    for word in range(V):
        path, node = [], word
        while node != 2 * V - 2:
            path.append((branch[node], parent[node] - V))
            node = parent[node]
        codes.append([bit for bit, _ in reversed(path)])
        points.append([point for _, point in reversed(path)])
    return codes, points


def build_huffman(counts: np.ndarray, max_length: int = MAX_CODE_LENGTH):
    """codes uint8 [V, L], points int32 [V, L], lengths uint8 [V] with L the longest code."""
    counts = np.ascontiguousarray(counts, dtype=np.int64)
    if counts.size == 0:
        raise InputError("the vocabulary is empty")
    if np.any(np.diff(counts) > 0):
        raise ValueError("counts must be sorted in descending order")
    codes = tree_codes(*huffman_tree(counts), counts.size, max_length)
    if codes is None:
        raise InputError(f"a Huffman code is longer than {max_length} bits (extremely skewed "
                         f"counts); raise vocab.min_count or set vocab.max_vocab_size")
    return codes


def tree_codes(parent, branch, V: int, max_length: int = MAX_CODE_LENGTH):
    """(codes, points, lengths) of any binary tree in huffman_tree's layout (leaves 0..V-1,
    inner nodes V..2V-2, root 2V-2), L cut to the longest code; None if a code is longer
    than max_length."""
    codes, points, lengths = huffman_codes(parent, branch, V, max_length)
    if lengths[0] == 255:
        return None
    width = max(int(lengths.max()), 1)
    return codes[:, :width].copy(), points[:, :width].copy(), lengths


def keep_probabilities(counts: np.ndarray, sample: float) -> np.ndarray:
    """P(keep) per word for frequent-word subsampling, word2vec.c's formula
    (sqrt(f / (s T)) + 1) (s T) / f, capped at 1; sample = 0 keeps everything."""
    counts = np.asarray(counts, dtype=np.float64)
    if sample <= 0:
        return np.ones(counts.size, dtype=np.float32)
    threshold = sample * counts.sum()
    keep = (np.sqrt(counts / threshold) + 1.0) * threshold / counts
    return np.minimum(keep, 1.0).astype(np.float32)


def negative_sampling_alias(counts: np.ndarray, power: float = NEGATIVE_POWER):
    """Walker alias tables for drawing words with probability count^power / Z in O(1):
    draw a word w uniformly, keep it with probability accept[w], else take alias[w].
    Exact, and O(V) memory instead of word2vec.c's 1e8-entry table."""
    weights = np.asarray(counts, dtype=np.float64) ** power
    scaled = weights * weights.size / weights.sum()
    accept = np.ones(weights.size, dtype=np.float64)
    alias = np.arange(weights.size, dtype=np.int32)
    small = [i for i in range(weights.size) if scaled[i] < 1.0]
    large = [i for i in range(weights.size) if scaled[i] >= 1.0]
    while small and large:
        s, g = small.pop(), large.pop()
        accept[s], alias[s] = scaled[s], g
        scaled[g] -= 1.0 - scaled[s]
        (small if scaled[g] < 1.0 else large).append(g)
    return accept, alias


def alias_probabilities(accept: np.ndarray, alias: np.ndarray) -> np.ndarray:
    """The distribution an alias table draws from (for tests)."""
    V = accept.size
    p = accept / V
    np.add.at(p, alias, (1.0 - accept) / V)
    return p


def select_vocabulary(counts: np.ndarray, min_count: int, max_size: int) -> int:
    """V: how many of the (descending) counts are kept."""
    size = int(np.searchsorted(-counts, -min_count, side="right"))
    return min(size, max_size) if max_size > 0 else size


def run(cfg, inputs, out) -> dict:
    words, counts = corpus.load_words(inputs["corpus"])
    V = select_vocabulary(counts, cfg.min_count, cfg.max_vocab_size)
    if V == 0:
        raise InputError(f"no word occurs at least vocab.min_count = {cfg.min_count} times in "
                         f"the training text ({len(words)} distinct words, most frequent "
                         f"{counts.max() if counts.size else 0} times); lower vocab.min_count")
    codes, points, lengths = build_huffman(counts[:V])
    out.write_text("vocab.tsv", "".join(f"{words[i]}\t{counts[i]}\n" for i in range(V)))
    out.save_npz("huffman.npz", codes=codes, points=points, lengths=lengths)
    kept = int(counts[:V].sum())
    summary = {"vocab_size": V, "kept_tokens": kept, "dropped_types": len(words) - V,
               "coverage": kept / max(int(counts.sum()), 1),
               "max_code_length": int(lengths.max()),
               "mean_code_length": float((lengths * counts[:V]).sum() / kept)}
    out.write_json("vocab.json", summary)
    return summary


def load_vocab(vocab_dir) -> tuple[list[str], np.ndarray]:
    return corpus.read_counts_tsv(vocab_dir / "vocab.tsv")


def load_huffman(vocab_dir) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    with np.load(vocab_dir / "huffman.npz", allow_pickle=False) as data:
        return data["codes"], data["points"], data["lengths"]
