"""The HS output trees: both are complete prefix codes in the vocabulary stage's layout; the
clustered one groups words by their contexts and keeps paths near Huffman's length."""
import math

import numpy as np
import pytest

from stages.rnnlm import data, reference, tree


def clustered(V, seed):
    rng = np.random.default_rng(seed)
    counts = (1e6 / np.arange(1, V + 1) ** 1.1).astype(np.int64)      # Zipf-like
    vectors = rng.normal(size=(V, 8))
    return counts, tree.clustered_tree(counts, vectors)


def code_strings(codes, lengths):
    return ["".join(map(str, codes[w, :lengths[w]])) for w in range(lengths.size)]


@pytest.mark.parametrize("V", [2, 3, 17, 300])
def test_clustered_tree_is_a_complete_prefix_code_rooted_like_huffman(V):
    _, (codes, points, lengths) = clustered(V, seed=V)
    assert sum(2.0 ** -int(l) for l in lengths) == pytest.approx(1.0, abs=1e-12)   # Kraft
    strings = code_strings(codes, lengths)
    assert len(set(strings)) == V
    assert not any(a != b and b.startswith(a) for a in strings for b in strings)
    assert (points[:, 0] == V - 2).all()                         # the root, as Huffman's
    used = {int(points[w, j]) for w in range(V) for j in range(lengths[w])}
    assert used == set(range(V - 1))                             # every inner row has a use


def test_hs_probabilities_over_the_clustered_tree_sum_to_one():
    V, H = 40, 6
    _, (codes, points, lengths) = clustered(V, seed=1)
    rng = np.random.default_rng(2)
    probs = np.zeros((3, V))
    reference.hs_word_probabilities(probs, rng.normal(size=(3, H)),
                                    rng.normal(size=(V - 1, H)), codes, points, lengths)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-12)


def test_equal_mass_splits_keep_paths_near_the_entropy():
    """Huffman's expected length is below H + 1 bits; equal-mass splits along any order
    stay within about a bit of it. Splits by word count instead would give ~log2 V = 11."""
    counts, (_, _, lengths) = clustered(2000, seed=3)
    p = counts / counts.sum()
    entropy = -(p * np.log2(p)).sum()
    huffman_lengths = data.lm_huffman(counts)[2]
    expected = (p * lengths).sum()
    assert expected <= (p * huffman_lengths).sum() + 1.0
    assert expected < entropy + 1.5
    assert entropy > 7.0                      # so that the bound above says something


def test_words_seen_in_like_contexts_share_a_subtree():
    """Six words only ever between x and y, six only between p and q (equal counts): each
    six get a subtree of their own. Huffman's tree, built from the counts alone, need not."""
    rng = np.random.default_rng(4)
    x, y, p, q = 0, 1, 2, 3
    group_a, group_b = list(range(4, 10)), list(range(10, 16))
    triples = [(x, w, y) for w in group_a] * 50 + [(p, w, q) for w in group_b] * 50
    stream = np.array([t for i in rng.permutation(len(triples)) for t in triples[i]], np.int32)
    codes, _, lengths = tree.lm_tree("clustered", stream, data.unigram_counts(stream, 16))
    strings = code_strings(codes, lengths)
    for group in (group_a, group_b):
        common = strings[group[0]]
        for w in group:
            while not strings[w].startswith(common):
                common = common[:-1]
        assert [w for w in range(16) if strings[w].startswith(common)] == group


def test_positive_pmi_matches_the_formula():
    rng = np.random.default_rng(5)
    stream = rng.integers(0, 7, 400).astype(np.int32)
    before, after = tree.neighbour_counts(stream, np.arange(7), 7)
    dense = np.zeros((7, 7))
    np.add.at(dense, (stream[1:], stream[:-1]), 1.0)
    np.testing.assert_array_equal(before.toarray(), dense)
    np.testing.assert_array_equal(after.toarray(), dense.T)
    context = dense.sum(axis=0) ** tree.CONTEXT_POWER
    expected = np.zeros_like(dense)
    for w in range(7):
        for c in range(7):
            if dense[w, c]:
                pmi = math.log(dense[w, c] / dense.sum()
                               / (dense[w].sum() / dense.sum() * context[c] / context.sum()))
                expected[w, c] = max(pmi, 0.0)
    np.testing.assert_allclose(tree.positive_pmi(before).toarray(), expected, rtol=1e-12)


def test_neighbour_counts_keep_only_context_words_and_add_up_over_chunks(monkeypatch):
    stream = np.random.default_rng(6).integers(0, 9, 1000).astype(np.int32)
    contexts = np.array([1, 4, 8])
    dense = np.zeros((9, 9))
    np.add.at(dense, (stream[1:], stream[:-1]), 1.0)
    monkeypatch.setattr(tree, "PAIRS_PER_CHUNK", 7)
    before, after = tree.neighbour_counts(stream, contexts, 9)
    np.testing.assert_array_equal(before.toarray(), dense[:, contexts])
    np.testing.assert_array_equal(after.toarray(), dense.T[:, contexts])


def test_a_long_stream_is_sampled_in_evenly_spread_chunks(monkeypatch):
    monkeypatch.setattr(tree, "PAIRS_PER_CHUNK", 100)
    monkeypatch.setattr(tree, "CONTEXT_TOKENS", 1000)
    np.testing.assert_array_equal(tree.chunk_starts(950), np.arange(0, 949, 100))
    starts = tree.chunk_starts(100_000)
    assert starts.size == 10 and starts[0] == 0 and starts[-1] == 100_000 - 101
    assert np.ptp(np.diff(starts)) <= 1                 # evenly spread


def test_truncated_svd_is_exact_on_a_low_rank_matrix():
    import scipy.sparse as sp
    rng = np.random.default_rng(7)
    matrix = rng.normal(size=(60, 5)) @ rng.normal(size=(5, 90))
    vectors = tree.truncated_svd(sp.csr_matrix(matrix), 5)
    u, s, _ = np.linalg.svd(matrix, full_matrices=False)
    # vectors = U sqrt(S) up to the signs of the columns: compare U S U^T
    np.testing.assert_allclose(vectors @ vectors.T, u[:, :5] @ np.diag(s[:5]) @ u[:, :5].T,
                               atol=1e-8)


def test_an_unknown_tree_is_refused():
    with pytest.raises(ValueError, match="unknown tree"):
        tree.lm_tree("random", np.arange(10, dtype=np.int32), np.ones(10, np.int64))
