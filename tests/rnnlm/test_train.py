"""The RNN LM: the composed model's gradients, learning, initialisation, the stage's
resume, divergence and outputs, the LM vocabulary, and the generation helpers."""
import json
import math

import numpy as np
import pytest

from pipeline.config import CorpusConfig, RnnlmConfig, VocabConfig, Word2VecConfig
from pipeline.store import StageDir
from stages import corpus, vocab
from stages.errors import InputError, TrainingDiverged
from stages.rnnlm import cpu, data, reference, sampling, train
from stages.rnnlm.generate import LanguageModel
from stages.rnnlm.model import (Architecture, Model, Optimiser, flat_size, initialise,
                                parameter_shapes)
from stages.vectors import Vectors
from stages.word2vec import train as word2vec_train
from tests.conftest import central_differences


def lm_inputs(root, sentences: int, min_count: int, dim: int, heldout_every: int = 20) -> dict:
    """Corpus, vocabulary and word2vec stages on `sentences` built-in sentences."""
    corpus.run(CorpusConfig(builtin_sentences=sentences, heldout_every=heldout_every), {},
               StageDir(root / "corpus"))
    inputs = {"corpus": root / "corpus"}
    vocab.run(VocabConfig(min_count=min_count), inputs, StageDir(root / "vocab"))
    inputs["vocab"] = root / "vocab"
    word2vec_train.run(Word2VecConfig(dim=dim, epochs=1, threads=1), inputs,
                       StageDir(root / "word2vec", quiet=True))
    inputs["word2vec"] = root / "word2vec"
    return inputs


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    return lm_inputs(tmp_path_factory.mktemp("lm"), sentences=3000, min_count=2, dim=12)


def train_once(prepared, out_dir, **settings):
    cfg = RnnlmConfig(**{"hidden": 16, "batch_size": 4, "bptt": 8, "epochs": 2, "lr": 1.0,
                         "cell": "tanh", "threads": 1, "seed": 3, "max_vocab": 150,
                         "diagnostic_windows": 2, **settings})
    out = StageDir(out_dir, quiet=True, fingerprint="test")
    train.run(cfg, prepared, out)
    return dict(np.load(out_dir / "model.npz")), json.loads((out_dir / "metrics.json").read_text())


def small_model(cell, output, V=7, D=3, H=4, seed=0, dtype=np.float64, train_embeddings=True):
    arch = Architecture(cell, output, V, D, H, train_embeddings)
    shapes = parameter_shapes(arch)
    rng = np.random.default_rng(seed)
    params = np.zeros(flat_size(shapes), dtype)
    huffman = data.lm_huffman(rng.integers(1, 50, V)) if output == "hs" else None
    frozen = None if train_embeddings else rng.normal(size=(V, D)).astype(dtype)
    model = Model(arch, params, frozen, huffman)
    initialise(model.p, arch, rng)
    params += rng.normal(scale=0.3, size=params.size)     # also h0, c0, biases, HS nodes
    return model


@pytest.mark.parametrize("cell, output, train_embeddings",
                         [("lstm", "softmax", True), ("gru", "hs", True), ("tanh", "hs", True),
                          ("irnn", "softmax", True), ("lstm", "hs", False)])
def test_whole_window_gradient_matches_finite_differences(cell, output, train_embeddings):
    """Every parameter (embeddings, when trained, and h0 included) of the composed model,
    float64; the training pass's loss is the evaluation's."""
    model = small_model(cell, output, train_embeddings=train_embeddings)
    rng = np.random.default_rng(1)
    ids, targets = rng.integers(0, 7, (5, 3)), rng.integers(0, 7, (5, 3))
    state = model.initial_state(3)
    loss, _ = model.train_window(ids, targets, state, fresh=True)
    analytic = model.grads.copy()
    assert loss == pytest.approx(model.evaluate_window(ids, targets, state)[0], rel=1e-10)

    def mean_loss():
        return model.evaluate_window(ids, targets, model.initial_state(3))[0] / targets.size

    picks = rng.choice(model.params.size, 40, replace=False)
    numeric = central_differences(mean_loss, model.params, picks)
    # HS steps run in float32 (word2vec's node step): looser there
    tolerance = 1e-4 if output == "hs" else 1e-6
    np.testing.assert_allclose(analytic[picks], numeric, rtol=tolerance, atol=1e-7)


@pytest.mark.parametrize("output", ["hs", "softmax"])
def test_sparse_gradients_cover_every_non_zero_and_forget_the_last_window(output):
    """The embeddings' (and the HS layer's) gradient rows are zeroed only where the last
    window touched them: after two windows the gradient equals that of the second window
    alone, it is zero outside gradient_segments, and those segments skip most rows."""
    model = small_model("lstm", output, V=60)
    twin = small_model("lstm", output, V=60)
    rng = np.random.default_rng(2)
    first, second = [(rng.integers(0, 60, (3, 2)), rng.integers(0, 60, (3, 2))) for _ in range(2)]
    model.train_window(*first, model.initial_state(2), fresh=True)
    model.train_window(*second, model.initial_state(2), fresh=True)
    twin.train_window(*second, twin.initial_state(2), fresh=True)
    np.testing.assert_array_equal(model.grads, twin.grads)
    segments = model.gradient_segments()
    assert not model.grads[~reference.segment_mask(model.grads.size, segments)].any()
    for name, rows in model.touched.items():
        assert 0 < rows.size < model.g[name].shape[0] / 2
    dense = model.grads.copy()
    assert model.clip_gradients(0.01) == pytest.approx(cpu.clip_global_norm(dense, 0.01), rel=1e-12)
    np.testing.assert_allclose(model.grads, dense, rtol=1e-12)


def test_an_rnn_learns_a_deterministic_sequence_to_near_zero_loss():
    """0 1 2 3 4 5 0 1 2 ...: each word fixes the next, so the loss can reach 0."""
    arch = Architecture("tanh", "softmax", 6, 4, 16, True)
    shapes = parameter_shapes(arch)
    params = np.zeros(flat_size(shapes), np.float32)
    model = Model(arch, params, None)
    rng = np.random.default_rng(0)
    initialise(model.p, arch, rng)
    model.p["embeddings"][...] = rng.normal(size=(6, 4))
    batches = data.batchify(np.arange(3000, dtype=np.int32) % 6, 4, "training")
    optimiser, state = Optimiser("sgd", params.size), model.initial_state(4)
    for epoch in range(3):
        for start in data.window_starts(batches.shape[0], 10):
            ids, targets = data.window(batches, start, 10)
            loss, state = model.train_window(ids, targets, state, fresh=start == 0)
            cpu.clip_global_norm(model.grads, 1.0)
            optimiser.step(model.params, model.grads, 1.0)
    assert loss / targets.size < 0.02


def test_irnn_starts_from_the_identity_and_relu_does_not():
    arch = Architecture("irnn", "softmax", 7, 3, 5, True)
    fresh = Model(arch, np.zeros(flat_size(parameter_shapes(arch)), np.float32), None)
    initialise(fresh.p, arch, np.random.default_rng(0))
    np.testing.assert_array_equal(fresh.p["w_h"], np.eye(5))
    assert fresh.spectral_radii() == [pytest.approx(1.0)]
    relu = small_model("relu", "softmax", H=5)
    assert not np.allclose(relu.p["w_h"], np.eye(5))


def test_lstm_forget_gate_bias_starts_at_one():
    arch = Architecture("lstm", "softmax", 7, 3, 5, True)
    model = Model(arch, np.zeros(flat_size(parameter_shapes(arch)), np.float32), None)
    initialise(model.p, arch, np.random.default_rng(0))
    np.testing.assert_array_equal(model.p["b_x"][5:10], 1.0)
    np.testing.assert_array_equal(model.p["b_x"][:5], 0.0)


@pytest.mark.parametrize("settings", [
    {"cell": "tanh", "output": "softmax", "dropout": 0.3},
    {"cell": "gru", "output": "hs", "hs_tree": "clustered", "optimizer": "adam", "lr": 0.01},
])
def test_killed_run_resumes_to_the_same_weights(prepared, tmp_path, monkeypatch, settings):
    settings = {**settings, "checkpoint_minutes": 1e-9, "epochs": 3}
    expected, _ = train_once(prepared, tmp_path / "whole", **settings)
    calls = {"n": 0}
    original = Model.train_window

    def crash_after_some_windows(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 150:           # mid-epoch (about 460 windows per epoch)
            raise KeyboardInterrupt("simulated kill")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Model, "train_window", crash_after_some_windows)
    with pytest.raises(KeyboardInterrupt):
        train_once(prepared, tmp_path / "resumed", **settings)
    assert (tmp_path / "resumed" / train.CHECKPOINT).is_file()
    monkeypatch.setattr(Model, "train_window", original)
    if settings["output"] == "hs":      # the checkpoint's tree goes on, not a rebuilt one
        build = train.lm_tree
        monkeypatch.setattr(train, "lm_tree", lambda kind, *args: build("huffman", *args))
    resumed, metrics = train_once(prepared, tmp_path / "resumed", **settings)
    assert calls["n"] == 150
    for name in expected:
        assert resumed[name].tobytes() == expected[name].tobytes(), name
    assert len(metrics["per_epoch"]) == 3
    assert not (tmp_path / "resumed" / train.CHECKPOINT).parent.exists()    # nor its folder


def test_metrics_hold_perplexities_and_the_diagnostics(prepared, tmp_path):
    _, metrics = train_once(prepared, tmp_path / "run", cell="irnn")
    for key in ("train_tokens_per_second", "valid_perplexity", "test_perplexity"):
        assert metrics[key] > 0
    assert metrics["vocab_size"] == 152 and metrics["unk"] == "<unk>"
    epochs = metrics["per_epoch"]
    assert len(epochs) == 2 and epochs[1]["train_loss"] < epochs[0]["train_loss"]
    assert len(epochs[0]["gradient_norm_by_lag"]) == 8
    assert len(epochs[0]["spectral_radius"]) == 1
    assert metrics["valid_perplexity"] == min(e["valid_perplexity"] for e in epochs)


def test_a_too_large_learning_rate_stops_with_advice(prepared, tmp_path):
    with pytest.raises(TrainingDiverged, match="lower rnnlm.lr"):
        train_once(prepared, tmp_path / "run", cell="relu", lr=1e6, clip_norm=0.0)


def test_cuda_without_a_usable_gpu_is_a_clear_error(prepared, tmp_path):
    with pytest.raises(InputError, match="rnnlm.device = 'cuda' but .*use 'cpu' or 'auto'"):
        train_once(prepared, tmp_path / "run", device="cuda")


def test_auto_without_a_usable_gpu_trains_on_the_cpu_and_says_so(prepared, tmp_path):
    _, metrics = train_once(prepared, tmp_path / "run", device="auto", epochs=1)
    assert metrics["device"] == "cpu"


def test_external_embeddings_set_the_input_size(prepared, tmp_path):
    words = vocab.load_vocab(prepared["vocab"])[0][:40]
    rng = np.random.default_rng(0)
    Vectors(words, rng.normal(size=(40, 5)).astype(np.float32)).save(tmp_path / "v.txt", binary=False)
    params, metrics = train_once(prepared, tmp_path / "run", embeddings=str(tmp_path / "v.txt"),
                                 freeze_embeddings=True, epochs=1)
    assert metrics["dim"] == 5
    kept = params["param_embeddings"]
    np.testing.assert_allclose(kept[:40], Vectors.load(tmp_path / "v.txt").matrix)
    assert np.abs(kept[40:]).sum() > 0           # seeded random vectors for the rest


def test_lm_vocabulary_uses_a_literal_unk_and_appends_eos():
    lm = data.lm_vocabulary(["the", "<unk>", "a", "cat"], max_vocab=3)
    assert lm.words == ["the", "<unk>", "a", "<eos>"] and lm.unk == 1 and lm.eos == 3
    stream = data.lm_stream(np.array([0, 3, 2, 1, 0]), np.array([0, 2, 5]), lm)
    np.testing.assert_array_equal(stream, [0, 1, 3, 2, 1, 0, 3])


def test_generation_helpers_sample_the_model_distribution():
    """The HS tree walk draws words with the probabilities the model assigns."""
    model = small_model("gru", "hs", V=6, dtype=np.float32)
    children = sampling.hs_children(*model.tree)
    h = np.random.default_rng(2).normal(size=4).astype(np.float32)
    probs = np.zeros((1, 6))
    cpu.hs_word_probabilities(probs, h[None, :].astype(np.float64),
                              model.p["w_out"].astype(np.float64), *model.tree)
    state = np.array([7], np.uint64)
    draws = np.bincount([sampling.hs_sample(h, model.p["w_out"], children, state)
                         for _ in range(20000)], minlength=6) / 20000
    np.testing.assert_allclose(draws, probs[0], atol=0.015)


@pytest.mark.parametrize("hs_tree", ["huffman", "clustered"])
def test_language_model_verbs_on_a_trained_model(prepared, tmp_path, hs_tree):
    _, metrics = train_once(prepared, tmp_path / "run", output="hs", hs_tree=hs_tree, epochs=1)
    counts = np.array([int(line.split("\t")[1]) for line in
                       (tmp_path / "run" / "lm_vocab.tsv").read_text().splitlines()], float)
    p = counts[counts > 0] / counts.sum()
    entropy = -(p * np.log2(p)).sum()      # no prefix code is shorter on average
    assert metrics["hs_tree"] == hs_tree
    assert entropy <= metrics["hs_mean_path"] < entropy + (1 if hs_tree == "huffman" else 2)
    lm = LanguageModel.load(tmp_path / "run")
    words = lm.generate(30, seed=4)
    assert len(words) == 30 and set(words) <= set(lm.lm.words)
    assert lm.generate(30, seed=4) == words
    predictions = lm.predict("the", k=5)
    assert len(predictions) == 5 and all(0 < p < 1 for _, p in predictions)
    assert predictions == sorted(predictions, key=lambda wp: -wp[1])
    assert sum(lm.next_word_probabilities("the")) == pytest.approx(1.0, rel=1e-6)
    text = tmp_path / "t.txt"
    text.write_text("the woman said that\n\nthe man\n")
    perplexity, tokens = lm.score(text)
    assert tokens == 8 and 1 < perplexity < lm.lm.size
    assert math.isfinite(perplexity)
