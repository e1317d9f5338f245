"""RNN LM kernels: NumPy reference against float64 central differences, @njit kernels
against the reference (float64 to rounding, float32 to float32 rounding)."""
import numpy as np
import pytest

from stages import vocab
from stages.rnnlm import activations, cpu, data, reference
from tests.conftest import central_differences

CELLS = {"tanh": 1, "relu": 1, "lstm": 4, "gru": 3}
GATE_STORE = {"tanh": 1, "relu": 1, "lstm": 4, "gru": 4}
EPS = 1e-6


def cell_problem(cell, T, B, D, H, seed, dtype=np.float64):
    rng = np.random.default_rng(seed)
    G = CELLS[cell] * H
    arrays = {"x": rng.normal(size=(T, B, D)), "w_x": rng.normal(scale=0.5, size=(G, D)),
              "w_h": rng.normal(scale=0.5, size=(G, H)), "b_x": rng.normal(scale=0.3, size=G),
              "b_h": rng.normal(scale=0.3, size=G), "h0": rng.normal(scale=0.5, size=(B, H)),
              "c0": rng.normal(scale=0.5, size=(B, H)), "d_h": rng.normal(size=(T, B, H))}
    if cell == "relu":      # keep pre-activations away from the kink at 0
        arrays["b_x"] += 0.05 * np.sign(arrays["b_x"])
    return {k: v.astype(dtype) for k, v in arrays.items()}


def run_forward(module, cell, p):
    T, B, _ = p["x"].shape
    H = p["h0"].shape[1]
    h_all = np.zeros((T + 1, B, H), p["x"].dtype)
    c_all = np.zeros_like(h_all)
    gates = np.zeros((T, B, GATE_STORE[cell] * H), p["x"].dtype)
    h_all[0], c_all[0] = p["h0"], p["c0"]
    getattr(module, f"{cell}_forward")(h_all, c_all, gates, p["x"], p["w_x"], p["w_h"],
                                       p["b_x"], p["b_h"])
    return h_all, c_all, gates


def objective(cell, p):
    """E = sum(d_h * h_1..T), so that dE/dh_t = d_h from the layers above."""
    h_all, _, _ = run_forward(reference, cell, p)
    return float((p["d_h"] * h_all[1:]).sum())


def run_backward(module, cell, p):
    h_all, c_all, gates = run_forward(module, cell, p)
    T, B, D = p["x"].shape
    H = p["h0"].shape[1]
    grads = {"x": np.zeros_like(p["x"]), "w_x": np.zeros_like(p["w_x"]),
             "w_h": np.zeros_like(p["w_h"]), "b_x": np.zeros_like(p["b_x"]),
             "b_h": np.zeros_like(p["b_h"]), "h0": np.zeros((B, H), p["x"].dtype),
             "c0": np.zeros((B, H), p["x"].dtype)}
    norms = np.zeros(T)
    d_h = p["d_h"].copy()
    getattr(module, f"{cell}_backward")(grads["x"], grads["w_x"], grads["w_h"], grads["b_x"],
                                        grads["b_h"], grads["h0"], grads["c0"], norms, d_h,
                                        h_all, c_all, gates, p["x"], p["w_x"], p["w_h"])
    return grads, norms


@pytest.mark.parametrize("cell", sorted(CELLS))
@pytest.mark.parametrize("module", [reference, cpu], ids=["reference", "cpu"])
def test_backward_without_the_input_gradient(cell, module):
    """A d_x with no rows (frozen embeddings) skips the input gradient and leaves every
    other gradient as it was."""
    p = cell_problem(cell, 4, 3, 5, 6, seed=3)
    grads, norms = run_backward(module, cell, p)
    h_all, c_all, gates = run_forward(module, cell, p)
    skipped = {k: np.zeros_like(v) for k, v in grads.items()}
    skipped["x"] = np.zeros((0, 3, 5))
    skipped_norms = np.zeros(4)
    getattr(module, f"{cell}_backward")(skipped["x"], skipped["w_x"], skipped["w_h"],
                                        skipped["b_x"], skipped["b_h"], skipped["h0"],
                                        skipped["c0"], skipped_norms, p["d_h"].copy(), h_all,
                                        c_all, gates, p["x"], p["w_x"], p["w_h"])
    assert np.abs(grads["x"]).max() > 0
    for name in ("w_x", "w_h", "b_x", "b_h", "h0", "c0"):
        np.testing.assert_array_equal(skipped[name], grads[name], err_msg=name)
    np.testing.assert_array_equal(skipped_norms, norms)


def numeric_gradient(f, array, count, rng):
    """Central differences of f at `count` random entries of `array`: (picks, estimates)."""
    picks = rng.choice(array.size, size=min(count, array.size), replace=False)
    return picks, central_differences(f, array, picks, EPS)


@pytest.mark.parametrize("cell", sorted(CELLS))
@pytest.mark.parametrize("sizes", [(1, 1, 2, 3), (4, 3, 5, 6), (7, 2, 3, 4)])
@pytest.mark.parametrize("module", [reference, cpu], ids=["reference", "cpu"])
def test_cell_backward_matches_finite_differences(cell, sizes, module):
    p = cell_problem(cell, *sizes, seed=sum(sizes))
    grads, _ = run_backward(module, cell, p)
    rng = np.random.default_rng(7)
    names = ["x", "w_x", "w_h", "b_x", "b_h", "h0"] + (["c0"] if cell == "lstm" else [])
    for name in names:
        picks, numeric = numeric_gradient(lambda: objective(cell, p), p[name], 12, rng)
        analytic = grads[name].reshape(-1)[picks]
        np.testing.assert_allclose(analytic, numeric, rtol=1e-5, atol=1e-7, err_msg=name)


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_cell_kernels_equal_reference_in_float64(cell):
    p = cell_problem(cell, 6, 4, 5, 7, seed=3)
    for got, want in zip(run_forward(cpu, cell, p), run_forward(reference, cell, p)):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    (got, got_norms), (want, want_norms) = run_backward(cpu, cell, p), run_backward(reference, cell, p)
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-10, atol=1e-12, err_msg=name)
    np.testing.assert_allclose(got_norms, want_norms, rtol=1e-10)


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_cell_kernels_in_float32_match_the_float64_reference(cell):
    p64 = cell_problem(cell, 5, 3, 8, 16, seed=11)
    p32 = {k: v.astype(np.float32) for k, v in p64.items()}
    for got, want in zip(run_forward(cpu, cell, p32), run_forward(reference, cell, p64)):
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=2e-5)
    got, _ = run_backward(cpu, cell, p32)
    want, _ = run_backward(reference, cell, p64)
    for name in want:
        scale = np.abs(want[name]).max()
        assert np.abs(got[name] - want[name]).max() <= 1e-4 * max(scale, 1.0), name


def test_lstm_cell_state_carry_is_the_gradient_into_c0():
    """d_c_init is dE/dc_0 (what carries into the previous window), and not negligible."""
    p = cell_problem("lstm", 3, 2, 3, 4, seed=5)
    grads, _ = run_backward(cpu, "lstm", p)
    picks, numeric = numeric_gradient(lambda: objective("lstm", p), p["c0"], 8,
                                      np.random.default_rng(1))
    np.testing.assert_allclose(grads["c0"].reshape(-1)[picks], numeric, rtol=1e-5, atol=1e-8)
    assert np.abs(grads["c0"]).max() > 1e-3


def test_gradient_norms_by_lag_shrink_for_a_contracting_tanh_rnn():
    """With small recurrent weights and the loss at the last step only, the gradient that
    reaches h_k falls geometrically with the lag T-1-k (the vanishing gradient)."""
    p = cell_problem("tanh", 10, 4, 3, 8, seed=2)
    p["w_h"] *= 0.2
    p["d_h"][:-1] = 0.0
    _, norms = run_backward(cpu, "tanh", p)
    assert np.all(np.diff(norms) > 0)          # larger closer to the loss
    assert norms[0] < 1e-3 * norms[-1]


def output_problem(N, Hd, V, seed, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(N, Hd)).astype(dtype), rng.normal(scale=0.5, size=(V, Hd)).astype(dtype),
            rng.normal(scale=0.5, size=V).astype(dtype), rng.integers(0, V, size=N))


@pytest.mark.parametrize("module", [reference, cpu], ids=["reference", "cpu"])
@pytest.mark.parametrize("N, Hd, V", [(1, 2, 2), (5, 4, 9), (12, 3, 30)])
def test_softmax_backward_matches_finite_differences(module, N, Hd, V):
    h, w, b, targets = output_problem(N, Hd, V, seed=N + V)
    scale = 1.0 / N

    def loss():
        return scale * reference.softmax_forward(np.empty((N, V)), np.empty(N), h, w, b, targets)

    exps, inverse = np.empty((N, V)), np.empty(N)
    module.softmax_forward(exps, inverse, h, w, b, targets)
    d_h, d_w, d_b = np.empty_like(h), np.empty_like(w), np.empty_like(b)
    module.softmax_backward(d_h, d_w, d_b, exps, inverse, h, w, targets, scale)
    rng = np.random.default_rng(0)
    for array, grad in ((h, d_h), (w, d_w), (b, d_b)):
        picks, numeric = numeric_gradient(loss, array, 15, rng)
        np.testing.assert_allclose(grad.reshape(-1)[picks], numeric, rtol=1e-5, atol=1e-8)


def test_softmax_kernel_equals_reference_and_survives_huge_logits():
    h, w, b, targets = output_problem(20, 6, 50, seed=4, dtype=np.float32)
    got, want = np.empty((20, 50), np.float32), np.empty((20, 50), np.float32)
    got_inverse, want_inverse = np.empty(20, np.float32), np.empty(20, np.float32)
    loss = cpu.softmax_forward(got, got_inverse, h, w, b, targets)
    assert loss == pytest.approx(reference.softmax_forward(want, want_inverse, h, w, b, targets),
                                 rel=1e-5)
    probs = got * got_inverse[:, None]
    np.testing.assert_allclose(probs, want * want_inverse[:, None], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    big = h * 1000                           # the target's probability underflows float32
    assert np.isfinite(cpu.softmax_forward(got, got_inverse, big, w, b, targets))


def test_float32_exp_tanh_sigmoid_are_exact_to_float32_rounding():
    x = np.linspace(-40, 40, 200_001).astype(np.float32)
    exp, tanh, sig = (np.empty_like(x) for _ in range(3))
    activations.activations_for_test(exp, tanh, sig, x)
    x64 = x.astype(np.float64)
    assert np.max(np.abs(exp / np.exp(x64) - 1)) < 2e-7
    assert np.max(np.abs(tanh - np.tanh(x64)) / np.maximum(np.abs(np.tanh(x64)), 1e-30)) < 3e-7
    assert np.max(np.abs(sig - 1 / (1 + np.exp(-x64)))) < 2e-7


def huffman_problem(V, Hd, N, seed, dtype=np.float64, scale=0.7):
    rng = np.random.default_rng(seed)
    counts = np.sort(rng.integers(1, 1000, size=V))[::-1].copy()
    codes, points, lengths = vocab.build_huffman(counts)
    w = rng.normal(scale=scale, size=(max(V - 1, 1), Hd)).astype(dtype)
    h = rng.normal(size=(N, Hd)).astype(dtype)
    return h, w, codes, points, lengths, rng.integers(0, V, size=N)


@pytest.mark.parametrize("V", [2, 3, 17, 64])
def test_hs_backward_reference_matches_finite_differences(V):
    h, w, codes, points, lengths, targets = huffman_problem(V, 5, 9, seed=V)
    scale = 1.0 / 9

    def loss():
        return scale * reference.hs_forward(np.empty(9), h, w, codes, points, lengths, targets)

    d_h, d_w = np.empty_like(h), np.zeros_like(w)
    reference.hs_backward(d_h, d_w, h, w, codes, points, lengths, targets, scale)
    rng = np.random.default_rng(1)
    for array, grad in ((h, d_h), (w, d_w)):
        picks, numeric = numeric_gradient(loss, array, 15, rng)
        np.testing.assert_allclose(grad.reshape(-1)[picks], numeric, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("V", [2, 17, 300])
def test_hs_kernels_match_reference(V):
    """hs_forward, and hs_train, whose node step is word2vec's float32 logistic_step (table
    sigmoid): equal to the float64 reference to float32 rounding, and to its float32
    twin. Weights small enough that no |h . w| reaches the step's saturation bound (6),
    past which the step uses sigma = 0 or 1 (an error of at most sigma(-6) = 0.0025 per
    node; the next test covers it)."""
    h, w, codes, points, lengths, targets = huffman_problem(V, 16, 40, seed=V, dtype=np.float32,
                                                            scale=0.25)
    h64, w64 = h.astype(np.float64), w.astype(np.float64)
    losses, want_losses = np.empty(40), np.empty(40)
    total = cpu.hs_forward(losses, h, w, codes, points, lengths, targets)
    want = reference.hs_forward(want_losses, h64, w64, codes, points, lengths, targets)
    assert total == pytest.approx(want, rel=1e-6)
    np.testing.assert_allclose(losses, want_losses, rtol=1e-5)
    train_losses, d_h, d_w = np.empty(40), np.empty_like(h), np.zeros_like(w)
    train_total = cpu.hs_train(train_losses, d_h, d_w, h, w, codes, points, lengths, targets,
                               0.025)
    ref_losses, ref_h, ref_w = np.empty(40), np.empty((40, 16)), np.zeros(w.shape)
    ref_total = reference.hs_train(ref_losses, ref_h, ref_w, h64, w64, codes, points, lengths,
                                   targets, 0.025)
    assert train_total == pytest.approx(ref_total, rel=1e-6)
    assert train_total == pytest.approx(train_losses.sum(), rel=1e-12)
    np.testing.assert_allclose(train_losses, ref_losses, rtol=1e-5)
    np.testing.assert_allclose(d_h, ref_h, atol=2e-5)
    np.testing.assert_allclose(d_w, ref_w, atol=2e-5)
    twin_h, twin_w = np.empty_like(h), np.zeros_like(w)
    reference.hs_train_gradients_shared(twin_h, twin_w, h, w, codes, points, lengths, targets,
                                        0.025)
    np.testing.assert_allclose(d_h, twin_h, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(d_w, twin_w, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("V", [2, 17, 300])
def test_hs_train_saturates_as_word2vec_and_keeps_the_exact_loss(V):
    """Weights large enough that many |h . w| pass the node step's bound (6): the
    gradients follow word2vec's saturating step (its float32 twin), while the losses stay
    those of hs_forward (no bound there), to float32 rounding of the dots."""
    h, w, codes, points, lengths, targets = huffman_problem(V, 16, 40, seed=V, dtype=np.float32,
                                                            scale=2.0)
    losses, d_h, d_w = np.empty(40), np.empty_like(h), np.zeros_like(w)
    total = cpu.hs_train(losses, d_h, d_w, h, w, codes, points, lengths, targets, 0.025)
    twin_h, twin_w = np.empty_like(h), np.zeros_like(w)
    reference.hs_train_gradients_shared(twin_h, twin_w, h, w, codes, points, lengths, targets,
                                        0.025)
    np.testing.assert_allclose(d_h, twin_h, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(d_w, twin_w, rtol=1e-5, atol=1e-7)
    forward_losses = np.empty(40)
    assert total == pytest.approx(cpu.hs_forward(forward_losses, h, w, codes, points, lengths,
                                                 targets), rel=1e-6)
    np.testing.assert_allclose(losses, forward_losses, rtol=1e-5)
    saturated = np.abs(np.einsum("nd,nld->nl", h, w[points[targets]]))[
        np.arange(points.shape[1]) < lengths[targets][:, None]] >= 6
    assert saturated.any()


@pytest.mark.parametrize("V", [2, 5, 200])
def test_hs_probabilities_sum_to_one_over_the_vocabulary(V):
    h, w, codes, points, lengths, targets = huffman_problem(V, 8, 6, seed=V)
    probs = np.empty((6, V))
    cpu.hs_word_probabilities(probs, h, w, codes, points, lengths)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-10)
    losses = np.empty(6)
    cpu.hs_forward(losses, h, w, codes, points, lengths, targets)
    np.testing.assert_allclose(np.exp(-losses), probs[np.arange(6), targets], rtol=1e-10)
    small = np.empty((6, V))
    reference.hs_word_probabilities(small, h, w, codes, points, lengths)
    np.testing.assert_allclose(probs, small, rtol=1e-10)


def test_clipping_keeps_the_direction_and_caps_the_norm():
    """The clipped gradient of E is min(1, c / ||dE||) times the finite-difference gradient."""
    p = cell_problem("tanh", 3, 2, 3, 4, seed=9)
    grads, _ = run_backward(cpu, "tanh", p)
    flat = np.concatenate([grads[k].ravel() for k in ("w_x", "w_h", "b_x")])
    rng = np.random.default_rng(3)
    picks, numeric = numeric_gradient(lambda: objective("tanh", p), p["w_h"], 6, rng)
    norm = np.linalg.norm(flat)
    for module in (cpu, reference):
        clipped = flat.copy()
        assert module.clip_global_norm(clipped, norm / 4) == pytest.approx(norm)
        assert np.linalg.norm(clipped) == pytest.approx(norm / 4, rel=1e-6)
        start = grads["w_x"].size
        got = clipped[start:start + grads["w_h"].size][picks]
        np.testing.assert_allclose(got, numeric / 4, rtol=1e-5, atol=1e-8)
        untouched = flat.copy()
        module.clip_global_norm(untouched, norm * 2)
        np.testing.assert_array_equal(untouched, flat)
        module.clip_global_norm(untouched, 0.0)
        np.testing.assert_array_equal(untouched, flat)


def test_optimiser_and_embedding_kernels_equal_reference():
    rng = np.random.default_rng(6)
    params, grads = rng.normal(size=50), rng.normal(size=50)
    m, v = rng.normal(size=50) ** 2, rng.normal(size=50) ** 2
    want = [a.copy() for a in (params, m, v)]
    reference.adam_step(*[want[0], grads, want[1], want[2]], 0.01, 0.9, 0.999, 1e-8, 3)
    got = [a.copy() for a in (params, m, v)]
    cpu.adam_step(got[0], grads, got[1], got[2], 0.01, 0.9, 0.999, 1e-8, 3)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-12)
    a, b = params.copy(), params.copy()
    cpu.sgd_step(a, grads, 0.5)
    reference.sgd_step(b, grads, 0.5)
    np.testing.assert_allclose(a, b, rtol=1e-12)
    embeddings, ids = rng.normal(size=(7, 3)), rng.integers(0, 7, size=(4, 5))
    x, want_x = np.empty((4, 5, 3)), np.empty((4, 5, 3))
    cpu.embed_forward(x, embeddings, ids)
    reference.embed_forward(want_x, embeddings, ids)
    np.testing.assert_array_equal(x, want_x)
    d_e, want_e = np.zeros((7, 3)), np.zeros((7, 3))
    cpu.embed_backward(d_e, x, ids)
    reference.embed_backward(want_e, x, ids)
    np.testing.assert_allclose(d_e, want_e, rtol=1e-12)


def test_dropout_mask_kernel_draws_as_its_reference():
    """Same generator, same order: identical masks; about `keep` of the units survive."""
    got, want = np.empty((40, 30), np.float32), np.empty((40, 30), np.float32)
    state, twin = np.array([99], np.uint64), np.array([99], np.uint64)
    cpu.dropout_mask(got, 0.75, state)
    reference.dropout_mask(want, 0.75, twin)
    np.testing.assert_array_equal(got, want)
    assert state[0] == twin[0]
    assert set(np.unique(got)) == {0.0, np.float32(1 / 0.75)}
    assert abs((got > 0).mean() - 0.75) < 0.04


def test_segment_kernels_equal_the_whole_array_kernels():
    """A gradient that is zero outside its segments: clipping and SGD over the segments
    equal clipping and SGD over the whole array (and the reference)."""
    rng = np.random.default_rng(8)
    segments = np.array([[0, 7], [20, 24], [24, 30], [41, 50]], np.int64)
    grads = np.where(reference.segment_mask(60, segments), rng.normal(size=60), 0.0)
    params = rng.normal(size=60)
    results = []
    for clip, step, args in ((cpu.clip_segments, cpu.sgd_segments, (segments,)),
                             (reference.clip_segments, reference.sgd_segments, (segments,)),
                             (cpu.clip_global_norm, cpu.sgd_step, ())):
        g, p = grads.copy(), params.copy()
        norm = clip(g, *args, 0.5)
        step(p, g, *args, 0.1)
        results.append((norm, g, p))
    for norm, g, p in results[1:]:
        assert norm == pytest.approx(results[0][0], rel=1e-12)
        np.testing.assert_allclose(g, results[0][1], rtol=1e-12)
        np.testing.assert_allclose(p, results[0][2], rtol=1e-12)
    assert np.linalg.norm(results[0][1]) == pytest.approx(0.5, rel=1e-5)


def test_distinct_rows_in_first_seen_order():
    rng = np.random.default_rng(9)
    codes, points, lengths = data.lm_huffman(rng.integers(1, 100, 40))
    targets = rng.integers(0, 40, 25)
    ids = rng.integers(0, 40, (5, 6))
    for kernel, args in (("path_nodes", (points, lengths, targets)), ("distinct_ids", (ids,))):
        results = []
        for module in (cpu, reference):
            out, marks = np.full(200, -1, np.int64), np.zeros(40, np.bool_)
            count = getattr(module, kernel)(out, marks, *args)
            results.append(out[:count])
            assert not marks.any()                  # the scratch is left clean
        np.testing.assert_array_equal(results[0], results[1])
        assert len(set(results[0])) == results[0].size > 5
