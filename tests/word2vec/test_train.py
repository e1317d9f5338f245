"""The word2vec stage: reproducibility, whole epochs, divergence, resume, and learning."""
import json
import time

import numpy as np
import pytest

from pipeline.config import CorpusConfig, VocabConfig, Word2VecConfig
from pipeline.store import BackgroundWriter, StageDir
from stages import corpus, vocab
from stages.errors import InputError, TrainingDiverged
from stages.word2vec import cpu, train
from tests.conftest import simulated


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """Corpus and vocabulary stages on a small built-in corpus."""
    root = tmp_path_factory.mktemp("w2v")
    corpus.run(CorpusConfig(builtin_sentences=6000, heldout_every=0), {}, StageDir(root / "corpus"))
    vocab.run(VocabConfig(min_count=2), {"corpus": root / "corpus"}, StageDir(root / "vocab"))
    return {"corpus": root / "corpus", "vocab": root / "vocab"}


def train_once(prepared, out_dir, **settings):
    cfg = Word2VecConfig(**{"dim": 16, "epochs": 2, "threads": 1, "seed": 3, **settings})
    out = StageDir(out_dir, quiet=True, fingerprint="test")
    train.run(cfg, prepared, out)
    return np.load(out_dir / "vectors.npy"), json.loads((out_dir / "metrics.json").read_text())


@pytest.mark.parametrize("model, loss", [("skipgram", "hs"), ("cbow", "ns")])
def test_one_thread_and_a_seed_are_bit_for_bit_reproducible(prepared, tmp_path, model, loss):
    first, _ = train_once(prepared, tmp_path / "a", model=model, loss=loss, chunk_words=5000)
    second, _ = train_once(prepared, tmp_path / "b", model=model, loss=loss, chunk_words=5000)
    assert first.tobytes() == second.tobytes()
    third, _ = train_once(prepared, tmp_path / "c", model=model, loss=loss, chunk_words=5000, seed=4)
    assert not np.array_equal(first, third)


def test_one_thread_trains_the_same_whatever_the_chunks_and_blocks(prepared, tmp_path,
                                                                   monkeypatch):
    """With one thread the blocks only cut the file's order into pieces: their size and
    the chunks they are handed out in change nothing in the vectors."""
    first, _ = train_once(prepared, tmp_path / "a", model="cbow", loss="ns", chunk_words=5000)
    monkeypatch.setattr(train, "BLOCKS_PER_THREAD", 3)
    second, _ = train_once(prepared, tmp_path / "b", model="cbow", loss="ns", chunk_words=1700)
    assert first.tobytes() == second.tobytes()


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_every_epoch_reads_every_word_whatever_the_thread_count(prepared, tmp_path, threads):
    _, metrics = train_once(prepared, tmp_path, threads=threads, epochs=3, chunk_words=3000)
    tokens, _ = corpus.load_split(prepared["corpus"], "train")
    in_vocab = int((tokens < metrics["vocab_size"]).sum())
    assert metrics["words_per_epoch"] == [in_vocab] * 3
    assert all(0.3 * in_vocab < k <= in_vocab for k in metrics["trained_words_per_epoch"])


def test_loss_goes_down_over_epochs(prepared, tmp_path):
    _, metrics = train_once(prepared, tmp_path, epochs=4, model="cbow", loss="hs")
    losses = metrics["loss_per_epoch"]
    assert losses[-1] < losses[0]


def test_a_too_large_learning_rate_stops_with_advice(prepared, tmp_path):
    with pytest.raises(TrainingDiverged, match="lower word2vec.alpha"):
        train_once(prepared, tmp_path, alpha=1e30, model="cbow", loss="ns", cbow_mean=False)


def test_cuda_without_a_usable_gpu_is_a_clear_error(prepared, tmp_path):
    """Here no GPU (or only the simulator, which is for kernel tests) is usable."""
    with pytest.raises(InputError, match="device = 'cuda' but"):
        train_once(prepared, tmp_path, device="cuda")


def test_auto_device_falls_back_to_the_cpu_and_says_so(prepared, tmp_path):
    _, metrics = train_once(prepared, tmp_path, device="auto", epochs=1)
    assert metrics["device"] == "cpu"


def trainer_and_state(prepared, trainer_class, cfg, sentences: int | None = None):
    """A trainer of `trainer_class` with cfg.threads threads over the built-in corpus (or
    its first `sentences`), and its fresh state."""
    words, counts = vocab.load_vocab(prepared["vocab"])
    tokens, offsets = corpus.load_split(prepared["corpus"], "train")
    if sentences is not None:
        offsets = offsets[:sentences + 1]
        tokens = tokens[:offsets[-1]]
    trainer = trainer_class(cfg, tokens, offsets, counts, vocab.load_huffman(prepared["vocab"]),
                            cfg.threads)
    return trainer, train.initial_state(cfg, len(words), trainer.output_rows, cfg.threads)


@pytest.mark.parametrize("trainer_class",
                         ["Trainer", pytest.param("CudaTrainer", marks=simulated)])
def test_warming_up_changes_nothing(prepared, trainer_class):
    """run() compiles the kernels on a block without sentences before it starts the clock;
    that call must leave weights, counters and random states exactly as they were."""
    cfg = Word2VecConfig(dim=16, threads=2, seed=3, model="cbow", loss="ns")
    trainer, state = trainer_and_state(prepared, getattr(train, trainer_class), cfg)
    state["counters"][:] = np.arange(state["counters"].size).reshape(state["counters"].shape)
    before = {name: np.copy(value) for name, value in state.items()}
    trainer.warm_up(state)
    for name, value in before.items():
        assert state[name].tobytes() == value.tobytes(), name


def few_sentence_cuda_trainer(prepared, sentences: int = 6):
    """A CudaTrainer (two workers, simulated) over the first sentences, and its fresh state."""
    cfg = Word2VecConfig(dim=8, epochs=1, threads=2, seed=3, model="cbow", loss="hs",
                         chunk_words=20)
    return trainer_and_state(prepared, train.CudaTrainer, cfg, sentences)


@simulated
def test_cuda_weights_reach_the_host_for_each_checkpoint(prepared, tmp_path, monkeypatch):
    """The GPU trainer leaves the weights on the device between chunks: the epoch's
    checkpoint and the state that run() writes out must still hold the trained ones."""
    trainer, state = few_sentence_cuda_trainer(prepared)
    assert len(trainer.plan) > trainer.blocks_per_chunk         # more than one chunk
    start = np.copy(state["vectors"])
    out = StageDir(tmp_path, quiet=True, fingerprint="test")
    saved = {}
    monkeypatch.setattr(train, "save_checkpoint", lambda out, state, identity: saved.update(
        {k: np.copy(v) for k, v in state.items()}))
    with BackgroundWriter() as checkpoints:
        train.train_epochs(trainer, state, out, "id", checkpoints)
    on_device = trainer.weights_on_device["vectors"].copy_to_host()
    assert not np.array_equal(on_device, start)
    assert state["vectors"].tobytes() == on_device.tobytes()
    assert saved["vectors"].tobytes() == on_device.tobytes()
    assert saved["weights"].tobytes() == trainer.weights_on_device["weights"].copy_to_host().tobytes()


@simulated
def test_cuda_divergence_is_found_on_the_device(prepared):
    """The check reads the device's weights, where training happens, not the host copy."""
    trainer, state = few_sentence_cuda_trainer(prepared)
    trainer.warm_up(state)                                      # uploads the weights
    trainer.check_finite(state)
    trainer.weights_on_device["weights"][3, 2] = np.nan
    assert np.isfinite(state["weights"]).all()
    with pytest.raises(TrainingDiverged, match="lower word2vec.alpha"):
        trainer.check_finite(state)


def test_reported_time_covers_the_checks_and_the_waits_for_checkpoints(prepared, tmp_path,
                                                                         monkeypatch):
    """words/s is over all that the epoch loop does, as a peer's timer around its train()
    call: a check that takes 0.1 s shows in `seconds`, and so does the time the loop waits
    for a checkpoint still being written in the background (0.3 s each here) before it
    can start the next one. The last one is written while the outputs are."""
    check_seconds, save_seconds = 0.1, 0.3
    check, save = train.Trainer.check_finite, train.save_checkpoint

    def slow_check(self, state):
        time.sleep(check_seconds)
        check(self, state)

    def slow_save(*args):
        time.sleep(save_seconds)
        save(*args)

    monkeypatch.setattr(train.Trainer, "check_finite", slow_check)
    monkeypatch.setattr(train, "save_checkpoint", slow_save)
    # no training, so that nothing else (a first call's compilation) takes that long
    monkeypatch.setattr(train.Trainer, "run_chunk", lambda self, state, first, last: None)
    _, metrics = train_once(prepared, tmp_path, epochs=2, chunk_words=1_000_000)
    # one chunk per epoch: two checks, and epoch 2's checkpoint waits for most of epoch 1's
    assert metrics["seconds"] >= check_seconds + save_seconds
    tokens, _ = corpus.load_split(prepared["corpus"], "train")
    assert metrics["raw_words_per_second"] == pytest.approx(2 * tokens.size / metrics["seconds"])


def test_a_checkpoint_written_while_training_goes_on_holds_the_state_it_was_taken_from(
        prepared, tmp_path, monkeypatch):
    """Checkpoints are written late (0.05 s after they are taken, while the next chunks
    train): resuming from any of them must still give the uninterrupted run's vectors, so
    each file held the state of its own block, not a later one."""
    settings = {"chunk_words": 4000, "checkpoint_minutes": 1e-9, "epochs": 2}
    expected, _ = train_once(prepared, tmp_path / "whole", **settings)
    save, run_chunk, written = train.save_checkpoint, train.Trainer.run_chunk, []

    def late_save(out, state, identity):
        time.sleep(0.05)
        written.append((dict(state), identity))
        save(out, state, identity)

    def slow_chunk(self, state, first, last):
        run_chunk(self, state, first, last)
        time.sleep(0.02)                    # a few chunks train while a checkpoint is written

    monkeypatch.setattr(train, "save_checkpoint", late_save)
    monkeypatch.setattr(train.Trainer, "run_chunk", slow_chunk)
    train_once(prepared, tmp_path / "late", **settings)
    monkeypatch.setattr(train.Trainer, "run_chunk", run_chunk)
    monkeypatch.setattr(train, "save_checkpoint", save)
    mid_epoch = [(state, identity) for state, identity in written if int(state["block"]) > 0]
    assert len(mid_epoch) >= 3
    for n, (state, identity) in enumerate(mid_epoch):
        resumed_dir = tmp_path / f"resumed-{n}"
        save(StageDir(resumed_dir, quiet=True, fingerprint="test"), state, identity)
        resumed, _ = train_once(prepared, resumed_dir, **settings)
        assert resumed.tobytes() == expected.tobytes(), (int(state["epoch"]), int(state["block"]))


def test_checkpoints_are_copies_while_training_goes_on_and_the_last_is_the_state(
        prepared, tmp_path, monkeypatch):
    """Training changes the state after every chunk, so each checkpoint taken before the end
    is written from a copy; the last, taken when no chunk is left, from the state itself."""
    cfg = Word2VecConfig(dim=8, epochs=2, threads=1, seed=3, chunk_words=1000,
                         checkpoint_minutes=1e-9)
    trainer, state = trainer_and_state(prepared, train.Trainer, cfg, sentences=600)
    handed = []
    monkeypatch.setattr(train, "save_checkpoint", lambda out, snapshot, identity:
                        handed.append((snapshot, np.copy(snapshot["vectors"]))))
    with BackgroundWriter() as checkpoints:
        train.train_epochs(trainer, state, StageDir(tmp_path, quiet=True, fingerprint="t"),
                           "id", checkpoints)
    assert len(handed) >= 3
    *earlier, (last, _) = handed
    assert last is state
    for snapshot, vectors_when_taken in earlier:
        assert not np.shares_memory(snapshot["vectors"], state["vectors"])
        assert snapshot["vectors"].tobytes() == vectors_when_taken.tobytes()
    assert not np.array_equal(earlier[0][1], state["vectors"])       # training went on


def test_killed_run_resumes_from_its_checkpoint_to_the_same_vectors(prepared, tmp_path, monkeypatch):
    settings = {"chunk_words": 4000, "checkpoint_minutes": 1e-9, "epochs": 3}
    expected, _ = train_once(prepared, tmp_path / "whole", **settings)
    calls = {"n": 0}
    original = train.Trainer.run_chunk

    def crash_after_some_chunks(self, state, first, last):
        calls["n"] += 1
        if calls["n"] == 9:
            raise KeyboardInterrupt("simulated kill")
        original(self, state, first, last)

    monkeypatch.setattr(train.Trainer, "run_chunk", crash_after_some_chunks)
    with pytest.raises(KeyboardInterrupt):
        train_once(prepared, tmp_path / "resumed", **settings)
    assert (tmp_path / "resumed" / train.CHECKPOINT).is_file()
    monkeypatch.setattr(train.Trainer, "run_chunk", original)
    resumed, metrics = train_once(prepared, tmp_path / "resumed", **settings)
    assert resumed.tobytes() == expected.tobytes()
    assert len(metrics["loss_per_epoch"]) == 3
    assert not (tmp_path / "resumed" / train.CHECKPOINT).parent.exists()    # nor its folder


def test_killed_two_thread_run_resumes_at_its_block_and_reads_every_word_once(prepared, tmp_path,
                                                                            monkeypatch):
    """Two threads train two parts at once; the checkpoint holds the next block of the
    plan, so the resumed run neither repeats nor skips a block of any epoch."""
    settings = {"chunk_words": 3000, "checkpoint_minutes": 1e-9, "epochs": 3, "threads": 2}
    original = train.Trainer.run_chunk

    def crash_in_the_second_epoch(self, state, first, last):
        if int(state["epoch"]) == 1 and first > 0:
            raise KeyboardInterrupt("simulated kill")
        original(self, state, first, last)

    monkeypatch.setattr(train.Trainer, "run_chunk", crash_in_the_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        train_once(prepared, tmp_path, **settings)
    monkeypatch.setattr(train.Trainer, "run_chunk", original)
    _, metrics = train_once(prepared, tmp_path, **settings)
    tokens, _ = corpus.load_split(prepared["corpus"], "train")
    in_vocab = int((tokens < metrics["vocab_size"]).sum())
    assert metrics["words_per_epoch"] == [in_vocab] * 3


@pytest.mark.parametrize("model", ["cbow", "skipgram"])
@pytest.mark.parametrize("threads", [2, 16])
@pytest.mark.parametrize("dim", [1, 100, 300, 1000, 10**7])
def test_hs_private_rows_are_the_hottest_within_the_byte_budget(dim, threads, model):
    """Each thread keeps the inner nodes nearest the root (the last rows) privately: as many
    as HS_TWO_THREADS gives for the model and HS_PRIVATE_BYTES allows (copy and merge base,
    8 D bytes a row), and at least one; skip-gram, with several predictions per centre word,
    merges them more often than CBOW, and more than two threads keep fewer rows and merge
    them more often."""
    counts = np.arange(10_000, 0, -1, dtype=np.int64)
    cfg = Word2VecConfig(model=model, loss="hs", dim=dim)
    _, _, rows, (first, count, merge_every) = train.output_layer(
        cfg, counts, vocab.build_huffman(counts), threads)
    cap, interval = (cpu.HS_TWO_THREADS[model] if threads <= 2 else
                     (cpu.MANY_THREADS_ROWS, cpu.MANY_THREADS_MERGE_EVERY))
    assert cpu.HS_TWO_THREADS["skipgram"][1] < cpu.HS_TWO_THREADS["cbow"][1]
    assert cpu.MANY_THREADS_MERGE_EVERY < min(every for _, every in cpu.HS_TWO_THREADS.values())
    assert rows == counts.size - 1 and first == rows - count and merge_every == interval
    fits = 8 * dim * count <= cpu.HS_PRIVATE_BYTES
    assert count == cap and fits or count == 1 and not fits or (
        fits and 8 * dim * (count + 1) > cpu.HS_PRIVATE_BYTES)


@pytest.mark.parametrize("threads", [1, 2, 3, 16])
def test_ns_private_rows_are_the_most_frequent_words_kept_only_by_many_threads(threads):
    """Up to two threads share every output row; more keep the most frequent words (ids 0,
    1, ...) privately and merge them every MANY_THREADS_MERGE_EVERY centre words."""
    counts = np.arange(10_000, 0, -1, dtype=np.int64)
    _, _, rows, private = train.output_layer(Word2VecConfig(loss="ns"), counts, None, threads)
    expected = (cpu.NO_PRIVATE_ROWS if threads <= 2 else
                (0, cpu.MANY_THREADS_ROWS, cpu.MANY_THREADS_MERGE_EVERY))
    assert rows == counts.size and private == expected


def test_one_part_plans_the_file_order_in_blocks_of_about_the_size_asked():
    offsets = np.array([0, 10, 10, 30, 31, 60, 100], dtype=np.int64)
    plan = train.epoch_plan(offsets, 1, 25)
    np.testing.assert_array_equal(plan[:, 0], np.concatenate(([0], plan[:-1, 1])))
    assert plan[-1, 1] == 6
    np.testing.assert_array_equal(plan[:, 2], offsets[plan[:, 0]])    # positions = offsets
    assert plan.shape[0] == 3                                        # 0-30, 30-60, 60-100


@pytest.mark.parametrize("parts", [2, 3, 5])
def test_parts_are_interleaved_and_every_sentence_is_planned_once(parts):
    rng = np.random.default_rng(parts)
    offsets = np.concatenate(([0], np.cumsum(rng.integers(0, 40, 300)))).astype(np.int64)
    plan = train.epoch_plan(offsets, parts, 500)
    planned = np.concatenate([np.arange(first, end) for first, end, _ in plan])
    np.testing.assert_array_equal(np.sort(planned), np.arange(300))
    sizes = offsets[plan[:, 1]] - offsets[plan[:, 0]]
    np.testing.assert_array_equal(plan[:, 2], np.concatenate(([0], np.cumsum(sizes)[:-1])))
    # the first `parts` blocks start about 1/parts of the corpus apart, in order
    starts = offsets[plan[:parts, 0]] / offsets[-1]
    np.testing.assert_allclose(starts, np.arange(parts) / parts, atol=0.05)


def test_an_empty_corpus_plans_no_block():
    assert train.epoch_plan(np.zeros(1, np.int64), 2, 100).shape == (0, 3)
