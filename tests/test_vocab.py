import heapq

import numpy as np
import pytest

from stages import vocab
from stages.errors import InputError


def zipf_counts(V, seed=0):
    rng = np.random.default_rng(seed)
    counts = np.sort(rng.zipf(1.3, size=V).astype(np.int64) + 4)[::-1]
    return np.ascontiguousarray(counts)


def optimal_cost(counts):
    """Sum of count * code length of an optimal prefix code (textbook heap Huffman)."""
    heap = [(int(c), i) for i, c in enumerate(counts)]
    heapq.heapify(heap)
    cost, tie = 0, len(heap)
    while len(heap) > 1:
        a, _ = heapq.heappop(heap)
        b, _ = heapq.heappop(heap)
        cost += a + b
        heapq.heappush(heap, (a + b, tie))
        tie += 1
    return cost


@pytest.mark.parametrize("V", [3, 10, 257, 5000])
def test_huffman_codes_are_a_complete_optimal_prefix_code(V):
    counts = zipf_counts(V, seed=V)
    codes, points, lengths = vocab.build_huffman(counts)
    L = lengths.astype(np.int64)
    assert np.isclose(np.sum(2.0 ** -L), 1.0)                    # Kraft equality
    assert int((counts * L).sum()) == optimal_cost(counts)       # same cost as heap Huffman
    p = counts / counts.sum()
    entropy = -(p * np.log2(p)).sum()
    assert entropy <= (p * L).sum() < entropy + 1                # within one bit
    assert np.all(np.diff(L) >= 0)                               # frequent words: short codes
    bits = sorted("".join(map(str, codes[w, :L[w]])) for w in range(V))
    assert len(set(bits)) == V                                   # all codes distinct
    assert not any(b.startswith(a) for a, b in zip(bits, bits[1:]))   # prefix-free


def test_points_are_a_path_from_the_root():
    counts = zipf_counts(50)
    codes, points, lengths = vocab.build_huffman(counts)
    V = counts.size
    assert np.all(points[:, 0] == V - 2)            # every path starts at the root
    child = {}
    for w in range(V):
        for j in range(lengths[w]):
            assert 0 <= points[w, j] < V - 1
            key = (int(points[w, j]), int(codes[w, j]))
            nxt = int(points[w, j + 1]) if j + 1 < lengths[w] else ("leaf", w)
            assert child.setdefault(key, nxt) == nxt   # one tree: a branch leads to one place


def test_small_tree_worked_by_hand():
    # counts 5,3,2,1. word2vec.c merges: (1,2)->node4 weight 3; then leaf 3 vs node4 (3): the
    # '<' test is false on a tie, so node4 comes first and leaf 1 (count 3) second -> node5 = 6;
    # then leaf 0 (5) and node5 (6) -> root node6. Branch 1 goes to the second of each pair.
    codes, points, lengths = vocab.build_huffman(np.array([5, 3, 2, 1]))
    assert lengths.tolist() == [1, 2, 3, 3]
    assert codes[0, :1].tolist() == [0]
    assert codes[1, :2].tolist() == [1, 1]
    assert codes[2, :3].tolist() == [1, 0, 1]
    assert codes[3, :3].tolist() == [1, 0, 0]
    assert points[2, :3].tolist() == [2, 1, 0]   # root (node6 -> 2), node5 -> 1, node4 -> 0


def test_one_and_two_word_vocabularies():
    codes, points, lengths = vocab.build_huffman(np.array([7]))
    assert lengths.tolist() == [0] and codes.shape == (1, 1)
    codes, points, lengths = vocab.build_huffman(np.array([7, 7]))
    assert lengths.tolist() == [1, 1]
    assert sorted(codes[:, 0].tolist()) == [0, 1] and points[:, 0].tolist() == [0, 0]


def test_too_deep_a_tree_is_a_clear_error():
    fib = [1, 1]
    while len(fib) < 45:
        fib.append(fib[-1] + fib[-2])
    with pytest.raises(InputError, match="longer than 40 bits"):
        vocab.build_huffman(np.array(fib[::-1], dtype=np.int64))


def test_unsorted_counts_are_rejected():
    with pytest.raises(ValueError, match="descending"):
        vocab.build_huffman(np.array([1, 5]))


def test_keep_probabilities_follow_word2vec_c():
    counts = np.array([10000, 1000, 100, 10])
    sample, total = 1e-3, counts.sum()
    keep = vocab.keep_probabilities(counts, sample)
    f = counts[0]
    expected = (np.sqrt(f / (sample * total)) + 1) * (sample * total) / f   # 0.1113...
    assert keep[0] == pytest.approx(expected, rel=1e-6)
    assert keep[3] == 1.0 and np.all(np.diff(keep) >= 0)
    assert np.all(vocab.keep_probabilities(counts, 0.0) == 1.0)


def test_alias_table_draws_unigram_to_the_three_quarters():
    counts = zipf_counts(1000)
    accept, alias = vocab.negative_sampling_alias(counts)
    target = counts ** 0.75 / (counts ** 0.75).sum()
    np.testing.assert_allclose(vocab.alias_probabilities(accept, alias), target, rtol=1e-9)


def test_select_vocabulary_cuts_a_prefix():
    counts = np.array([9, 7, 5, 5, 4, 1])
    assert vocab.select_vocabulary(counts, 5, 0) == 4
    assert vocab.select_vocabulary(counts, 5, 2) == 2
    assert vocab.select_vocabulary(counts, 10, 0) == 0


@pytest.mark.parametrize("seed", range(6))
def test_huffman_kernels_match_the_plain_reference(seed):
    rng = np.random.default_rng(seed)
    V = int(rng.integers(2, 300))
    counts = np.sort(rng.integers(1, 50, V))[::-1].astype(np.int64)   # many ties on purpose
    codes, points, lengths = vocab.build_huffman(counts)
    ref_codes, ref_points = vocab.huffman_reference(counts)
    for w in range(V):
        assert codes[w, :lengths[w]].tolist() == ref_codes[w]
        assert points[w, :lengths[w]].tolist() == ref_points[w]
