"""The word2vec kernels against the plain reference, the gradients against finite
differences, and the sampling pieces against their distributions."""
import numpy as np
import pytest

from stages import vocab
from stages.word2vec import cpu, reference
from stages.word2vec import rng as rngmod
from tests.conftest import central_differences

KERNELS = [("skipgram", "hs_step"), ("skipgram", "ns_step"), ("cbow", "hs_step"), ("cbow", "ns_step")]


def tiny_problem(seed, V=30, D=8, sentences=(50, 1, 0, 70, 80, 130, 2)):
    rng = np.random.default_rng(seed)
    counts = np.sort(rng.integers(1, 200, V))[::-1].astype(np.int64)
    offsets = np.concatenate(([0], np.cumsum(sentences))).astype(np.int64)
    tokens = rng.integers(0, V + 5, offsets[-1]).astype(np.int32)    # ids >= V are unknown
    vectors = (rng.random((V, D), dtype=np.float32) - 0.5) / D
    return counts, tokens, offsets, vectors, rng


def heads(counts, negative=3):
    codes, points, lengths = vocab.build_huffman(counts)
    accept, alias = vocab.negative_sampling_alias(counts)
    hs = ((codes, points, lengths), max(counts.size - 1, 1))
    ns = ((accept, alias, np.int64(negative)), counts.size)
    return {"hs_step": hs, "ns_step": ns}


def file_order(offsets, bounds):
    """Blocks int64 [K, 3] of sentences [bounds[k], bounds[k+1]) in the file's order: each
    block's position in the training order is its offset."""
    bounds = np.asarray(bounds, np.int64)
    return np.stack([bounds[:-1], bounds[1:], offsets[bounds[:-1]]], axis=1)


def train_one_thread(module, model, tokens, offsets, blocks, vectors, weights, keep, head):
    """(vectors, weights, counters) after one thread trains `blocks` with HS, window 3."""
    v, w, counters = vectors.copy(), weights.copy(), np.zeros((1, cpu.COUNTERS))
    args = [module.hs_step, v, w, counters, tokens, offsets, blocks,
            keep, head, cpu.NO_PRIVATE_ROWS, 3] + ([True] if model == "cbow" else [])
    getattr(module, model)(*args, 0.05, 0.0001, 0, 2 * tokens.size, rngmod.seed_states(11, 1))
    return v, w, counters


def run_both(model, step, counts, tokens, offsets, vectors, rng, keep, window=3, cbow_mean=True):
    head, rows = heads(counts)[step]
    weights = (rng.random((rows, vectors.shape[1]), dtype=np.float32) - 0.5) / vectors.shape[1]
    results = []
    for module in (cpu, reference):
        v, w = vectors.copy(), weights.copy()
        counters = np.zeros((1, cpu.COUNTERS))
        states = rngmod.seed_states(11, 1)
        args = [getattr(module, step), v, w, counters, tokens, offsets,
                file_order(offsets, [0, offsets.size - 1]), keep, head, cpu.NO_PRIVATE_ROWS, window]
        if model == "cbow":
            args.append(cbow_mean)
        args += [0.05, 0.0001, 0, 2 * tokens.size, states]
        getattr(module, model)(*args)
        results.append((v, w, counters, states))
    return results


@pytest.mark.parametrize("model, step", KERNELS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kernel_matches_reference_with_one_thread(model, step, seed):
    counts, tokens, offsets, vectors, rng = tiny_problem(seed)
    keep = vocab.keep_probabilities(counts, 0.01)        # some words are subsampled
    assert (keep < 1).any()
    (v1, w1, c1, s1), (v2, w2, c2, s2) = run_both(model, step, counts, tokens, offsets, vectors, rng, keep)
    np.testing.assert_allclose(v1, v2, atol=2e-6)
    np.testing.assert_allclose(w1, w2, atol=2e-6)
    assert not np.allclose(v1, vectors)                   # it did train
    np.testing.assert_array_equal(c1[:, 1:], c2[:, 1:])   # the same predictions and words
    np.testing.assert_allclose(c1[:, 0], c2[:, 0], rtol=1e-5)
    assert s1[0] == s2[0]                                 # the same random draws


@pytest.mark.parametrize("model", ["skipgram", "cbow"])
def test_one_thread_takes_the_blocks_in_order(model):
    """Blocks are how threads share a chunk's sentences; one thread takes them in order,
    so any split of the sentences into blocks gives the same vectors, bit for bit (and
    the reference's, taking the same blocks, to float32 rounding)."""
    counts, tokens, offsets, vectors, rng = tiny_problem(7)
    keep = vocab.keep_probabilities(counts, 0.01)
    head, rows = heads(counts)["hs_step"]
    weights = (rng.random((rows, vectors.shape[1]), dtype=np.float32) - 0.5)
    whole = train_one_thread(cpu, model, tokens, offsets, file_order(offsets, [0, 7]), vectors,
                             weights, keep, head)
    split = file_order(offsets, [0, 2, 2, 5, 7])
    results = [train_one_thread(module, model, tokens, offsets, split, vectors, weights, keep,
                                head) for module in (cpu, reference)]
    for one, many in zip(whole, results[0]):
        assert one.tobytes() == many.tobytes()
    for got, want in zip(results[0][:2], results[1][:2]):
        np.testing.assert_allclose(got, want, atol=2e-6)


@pytest.mark.parametrize("model", ["skipgram", "cbow"])
def test_blocks_out_of_file_order_train_as_that_order_of_the_corpus(model):
    """A plan that trains sentences 3-6 before 0-2 (block positions 0 and 282) gives, bit
    for bit, what the file order gives on a corpus whose lines are in that order: the
    learning rate follows the training order, not the offsets; the reference agrees."""
    counts, tokens, offsets, vectors, rng = tiny_problem(8)
    keep = vocab.keep_probabilities(counts, 0.01)
    head, rows = heads(counts)["hs_step"]
    weights = (rng.random((rows, vectors.shape[1]), dtype=np.float32) - 0.5)
    later = offsets[7] - offsets[3]
    plan = np.array([[3, 7, 0], [0, 3, later]], np.int64)
    reordered = np.concatenate((tokens[offsets[3]:], tokens[:offsets[3]]))
    lengths = np.diff(offsets)
    reordered_offsets = np.concatenate(([0], np.cumsum(np.concatenate((lengths[3:], lengths[:3])))))
    want = train_one_thread(cpu, model, reordered, reordered_offsets,
                            file_order(reordered_offsets, [0, 7]), vectors, weights, keep, head)
    got = train_one_thread(cpu, model, tokens, offsets, plan, vectors, weights, keep, head)
    for a, b in zip(got, want):
        assert a.tobytes() == b.tobytes()
    plain = train_one_thread(reference, model, tokens, offsets, plan, vectors, weights, keep, head)
    for a, b in zip(got[:2], plain[:2]):
        np.testing.assert_allclose(a, b, atol=2e-6)
    rates_by_offset = np.array([[3, 7, offsets[3]], [0, 3, 0]], np.int64)
    other = train_one_thread(cpu, model, tokens, offsets, rates_by_offset, vectors, weights,
                             keep, head)
    assert not np.array_equal(other[0], got[0])     # the position column sets the rate


@pytest.mark.parametrize("model, step", KERNELS)
def test_edge_cases_two_word_vocabulary_and_sum_mode(model, step):
    """V = 2 (every code has length 1), sentences of 0 and 1 words, CBOW summing."""
    counts, tokens, offsets, vectors, rng = tiny_problem(5, V=2, sentences=(0, 1, 7, 0, 3))
    keep = np.ones(2, dtype=np.float32)
    (v1, w1, c1, _), (v2, w2, c2, _) = run_both(model, step, counts, tokens, offsets, vectors,
                                                rng, keep, window=2, cbow_mean=False)
    np.testing.assert_allclose(v1, v2, atol=2e-6)
    np.testing.assert_allclose(w1, w2, atol=2e-6)
    assert c1[0, 3] == (tokens < 2).sum()


def test_one_hierarchical_softmax_node_by_hand():
    # h = [1, 0], node row = [0.5, 0.5], code 0 (label 1), alpha 0.1:
    # f = 0.5, sigma = 0.622459, g = (1 - 0 - 0.622459) * 0.1 = 0.0377541
    h = np.array([1.0, 0.0], np.float32)
    grad = np.zeros(2, np.float32)
    weights = np.array([[0.5, 0.5]], np.float32)
    head = (np.array([[0]], np.uint8), np.array([[0]], np.int32), np.array([1], np.uint8))
    rows = (weights, np.int64(0), cpu.private_rows(0, 2))
    loss = cpu.hs_step(h, grad, rows, 0, head, 0.1, np.ones(1, np.uint64), True)
    np.testing.assert_allclose(grad, [0.0188770, 0.0188770], rtol=1e-5)
    np.testing.assert_allclose(weights[0], [0.5377541, 0.5], rtol=1e-6)
    assert loss == pytest.approx(-np.log(0.6224593), rel=1e-6)


def central_difference(function, x):
    return central_differences(function, x).reshape(x.shape)


@pytest.mark.parametrize("D, nodes", [(3, 2), (8, 5), (16, 9)])
def test_hs_gradient_against_finite_differences(D, nodes):
    rng = np.random.default_rng(D)
    h, weights = rng.normal(size=D), rng.normal(size=(nodes + 2, D)) * 0.5
    code, points = rng.integers(0, 2, nodes), rng.permutation(nodes + 2)[:nodes]
    _, grad_h, grad_w = reference.hs_loss_and_grads(h, weights, code, points)
    loss = lambda: reference.hs_loss_and_grads(h, weights, code, points)[0]
    for analytic, numeric in ((grad_h, central_difference(loss, h)), (grad_w, central_difference(loss, weights))):
        assert np.max(np.abs(analytic - numeric)) < 1e-7
        assert np.mean(np.abs(analytic - numeric)) < 1e-8


@pytest.mark.parametrize("D, k", [(3, 1), (8, 5), (16, 10)])
def test_ns_gradient_against_finite_differences(D, k):
    rng = np.random.default_rng(D + k)
    h, weights = rng.normal(size=D), rng.normal(size=(k + 3, D)) * 0.5
    negatives = rng.integers(1, k + 3, k)
    _, grad_h, grad_w = reference.ns_loss_and_grads(h, weights, 0, negatives)
    loss = lambda: reference.ns_loss_and_grads(h, weights, 0, negatives)[0]
    for analytic, numeric in ((grad_h, central_difference(loss, h)), (grad_w, central_difference(loss, weights))):
        assert np.max(np.abs(analytic - numeric)) < 1e-7
        assert np.mean(np.abs(analytic - numeric)) < 1e-8


@pytest.mark.parametrize("step", ["hs_step", "ns_step"])
def test_kernel_step_is_minus_alpha_times_the_checked_gradient(step):
    """One kernel step moves h's gradient buffer by -alpha * dLoss/dh (the gradient the
    finite differences verified), for the same negatives."""
    rng = np.random.default_rng(3)
    counts = np.sort(rng.integers(1, 100, 12))[::-1].astype(np.int64)
    head, rows = heads(counts, negative=4)[step]
    h = (rng.normal(size=6) * 0.3).astype(np.float32)
    weights = (rng.normal(size=(rows, 6)) * 0.3).astype(np.float32)
    before = weights.astype(np.float64)
    grad = np.zeros(6, np.float32)
    state = np.array([99], np.uint64)
    alpha = 1e-6      # small: a repeated negative then sees its own update only at O(alpha^2)
    cpu_rows = (weights, np.int64(0), cpu.private_rows(0, 6))
    getattr(cpu, step)(h, grad, cpu_rows, 7, head, alpha, state.copy(), False)
    if step == "hs_step":
        codes, points, lengths = head
        _, grad_h, _ = reference.hs_loss_and_grads(h.astype(np.float64), before, codes[7, :lengths[7]], points[7, :lengths[7]])
    else:
        draws = [rngmod.py_split_draw(state, counts.size) for _ in range(4)]
        negatives = [i if u < head[0][i] else head[1][i] for i, u in draws]
        _, grad_h, _ = reference.ns_loss_and_grads(h.astype(np.float64), before, 7, [n for n in negatives if n != 7])
    np.testing.assert_allclose(grad, -alpha * grad_h, rtol=1e-4, atol=1e-9)


def test_subsampling_keeps_words_at_the_formula_rate():
    counts = np.array([50000, 20000, 5000, 100], dtype=np.int64)
    keep = vocab.keep_probabilities(counts, 1e-3)
    tokens = np.repeat(np.arange(4, dtype=np.int32), 20000)
    buffer = np.empty(tokens.size, np.int32)
    kept, seen = cpu.kept_words(buffer, tokens, 0, tokens.size, 4, keep, np.array([7], np.uint64))
    assert seen == tokens.size
    observed = np.bincount(buffer[:kept], minlength=4) / 20000
    sd = np.sqrt(keep * (1 - keep) / 20000)
    assert np.all(np.abs(observed - keep) <= 5 * sd + 1e-12)
    assert keep[3] == 1.0 and observed[3] == 1.0


def test_random_draws_match_python_and_window_is_uniform():
    state_numba, state_python = np.array([12345], np.uint64), np.array([12345], np.uint64)
    for _ in range(100):
        assert rngmod.next_u64(state_numba) == rngmod.py_next_u64(state_python)
    radii = np.array([5 - rngmod.below(state_numba, 5) for _ in range(50000)])
    freq = np.bincount(radii, minlength=6)[1:] / radii.size
    assert set(np.unique(radii)) == {1, 2, 3, 4, 5}
    assert np.all(np.abs(freq - 0.2) < 0.01)


def test_negative_draws_follow_the_alias_table():
    counts = np.array([1000, 300, 100, 30, 10, 3], dtype=np.int64)
    accept, alias = vocab.negative_sampling_alias(counts)
    state = np.array([5], np.uint64)
    draws = []
    for _ in range(60000):
        index, u = rngmod.split_draw(state, counts.size)
        draws.append(index if u < accept[index] else alias[index])
    freq = np.bincount(draws, minlength=6) / len(draws)
    target = counts ** 0.75 / (counts ** 0.75).sum()
    assert np.all(np.abs(freq - target) < 5 * np.sqrt(target * (1 - target) / len(draws)))


def test_sigmoid_table_is_accurate_to_float32_rounding():
    below_bound = np.nextafter(np.float32(6.0), np.float32(0.0))   # rounds to the table's end
    x = np.concatenate([np.linspace(-5.9999, 5.9999, 40001).astype(np.float32),
                        [below_bound, -below_bound]]).astype(np.float32)
    table = np.array([cpu.sigmoid(v) for v in x], dtype=np.float64)
    exact = 1.0 / (1.0 + np.exp(-x.astype(np.float64)))
    assert np.max(np.abs(table - exact)) < 6e-7


def test_private_rows_merge_every_threads_changes():
    """Two threads' private copies of the same rows: both deltas land in the shared rows;
    only the rows a thread used are copied and merged, and a merge starts a new window in
    which the next use copies the row afresh."""
    shared = np.zeros((4, 3), np.float32)
    h, grad = np.ones(3, np.float32), np.zeros(3, np.float32)
    privates = [cpu.private_rows(2, 3) for _ in range(2)]       # rows 1 and 2 are private
    rows = [(shared, np.int64(1), private) for private in privates]
    # label 1 at h . w = 0: g = alpha * (1 - 1/2), so row += alpha / 2 * h
    cpu.output_unit(h, grad, rows[0], 1, 1, 2.0, False, False)      # row 1 += 1
    cpu.output_unit(h, grad, rows[1], 1, 1, 4.0, False, False)      # row 1 += 2
    cpu.output_unit(h, grad, rows[1], 2, 1, -2.0, False, False)     # row 2 -= 1
    cpu.output_unit(h, grad, rows[1], 3, 1, 2.0, False, False)      # row 3: shared
    assert not shared[1:3].any()                     # private changes wait for the merge
    np.testing.assert_array_equal(shared[3], [1.0, 1.0, 1.0])
    assert privates[0][4][1] == 1 and privates[1][4][1] == 2      # rows used this window
    for private in privates:
        cpu.merge_private(shared, 1, private)
    np.testing.assert_array_equal(shared[1], [3.0, 3.0, 3.0])
    np.testing.assert_array_equal(shared[2], [-1.0, -1.0, -1.0])
    assert not shared[0].any()
    assert privates[0][4][0] == 1 and privates[0][4][1] == 0      # a new window
    # the next use copies the merged row in afresh (both threads' changes)
    cpu.output_unit(h, grad, rows[0], 1, 1, 0.0, False, False)
    np.testing.assert_array_equal(privates[0][0][0], [3.0, 3.0, 3.0])


@pytest.mark.parametrize("model, step", KERNELS)
def test_private_rows_merged_during_a_run_change_only_rounding(model, step):
    """Two threads keep private copies of five output rows and merge them every three
    centre words; with a single block of sentences one thread trains it all (both start
    from the same RNG state, so which one does not matter). Its copies and merges must
    give the one-thread weights to float32 rounding: a delta lost or added twice at any
    merge would not. The last sentence is long, so the last merge window trains words too."""
    counts, tokens, offsets, vectors, rng = tiny_problem(4, sentences=(50, 1, 0, 70, 2, 130))
    head, rows = heads(counts)[step]
    weights = (rng.random((rows, vectors.shape[1]), dtype=np.float32) - 0.5) / vectors.shape[1]
    first = rows - 5 if step == "hs_step" else 0      # the hottest rows, as train.output_layer
    results = []
    for private, threads in ((cpu.NO_PRIVATE_ROWS, 1), ((first, 5, 3), 2)):
        v, w = vectors.copy(), weights.copy()
        args = [getattr(cpu, step), v, w, np.zeros((threads, cpu.COUNTERS)), tokens, offsets,
                file_order(offsets, [0, offsets.size - 1]), np.ones(counts.size, np.float32),
                head, private, 3] + ([True] if model == "cbow" else [])
        states = np.repeat(rngmod.seed_states(11, 1), threads)
        getattr(cpu, model)(*args, 0.05, 0.0001, 0, 2 * tokens.size, states)
        results.append((v, w))
    (v1, w1), (v2, w2) = results
    assert np.abs(w1[first:first + 5] - weights[first:first + 5]).max() > 1e-3   # rows trained
    np.testing.assert_allclose(w2, w1, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(v2, v1, rtol=1e-5, atol=1e-6)


def test_sigmoid_never_reads_past_its_table():
    """With bounds checking on, values just inside the bound (which round to the table's
    last position in float32) must not index past the table."""
    from numba import njit
    checked = njit(boundscheck=True)(cpu.sigmoid.py_func)
    edge = np.nextafter(np.float32(cpu.SIGMOID_BOUND), np.float32(0.0))
    for x in (edge, -edge, np.float32(0.0)):
        assert 0.0 < checked(x) < 1.0
    # NaN (diverged weights, met before the check after the chunk) reads inside the table
    # too, and stays NaN for that check to find
    assert np.isnan(checked(np.float32(np.nan)))
