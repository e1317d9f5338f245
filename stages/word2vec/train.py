"""The word2vec stage: initialisation, the epoch/chunk schedule, progress, checks and
checkpoints. No numerics here beyond bookkeeping; the kernels are in cpu.py.

Outputs: vectors.npy float32 [V, D] (input vectors), output_weights.npy float32 [V-1, D]
(HS inner nodes) or [V, D] (NS), vectors.bin and vectors.txt (word2vec C formats),
metrics.json (words, seconds, words/s, loss per epoch).
"""
from __future__ import annotations

import os
import time
from dataclasses import asdict

import numba
import numpy as np
from tqdm import tqdm

from pipeline.store import BackgroundWriter, load_npz
from stages import corpus, vocab
from stages.devices import choose_device
from stages.errors import TrainingDiverged
from stages.vectors import Vectors
from stages.word2vec import cpu
from stages.word2vec.rng import seed_states

DEFAULT_ALPHA = {"skipgram": 0.025, "cbow": 0.05}    # word2vec.c's defaults
# CPU threads take a chunk's sentences in this many blocks each, one at a time: equal token
# counts are not equal work (subsampling, path lengths), and a thread that finished its
# share early would wait for the other at the end of every chunk (3-10% of the time).
# What is left is the other thread's last block: with two threads and 1M-word chunks on
# en-mix, the first thread done idled 1.0-4.6% of each chunk (CBOW + NS, skip-gram + NS,
# CBOW + HS) with 16 blocks per thread, and 0.5-1.3% with 64. One thread trains the same
# sentences in the same order whatever the blocks.
BLOCKS_PER_THREAD = 64
CHECKPOINT = "checkpoint/state.npz"
# Part of a checkpoint's identity, raised whenever what a checkpoint holds changes meaning
# (2: the resume point is a block of the epoch plan), so that an older checkpoint starts
# the run afresh instead of resuming at the wrong place.
CHECKPOINT_FORMAT = 2


def resolve_threads(requested: int) -> int:
    available = len(os.sched_getaffinity(0))
    return available if requested == 0 else requested


def output_layer(cfg, counts: np.ndarray, huffman, threads: int):
    """(step function, head arrays, rows of the output weight matrix, the kernels' `private`
    argument: the rows threads keep private copies of and how often they merge them).
    huffman: the vocabulary stage's (codes, points, lengths), used for loss = "hs"."""
    step = cpu.hs_step if cfg.loss == "hs" else cpu.ns_step
    if cfg.loss == "hs":
        rows = max(counts.size - 1, 1)
        # the inner nodes nearest the root are the last created: the hottest rows
        count, merge_every = cpu.hs_private_rows(cfg.dim, threads, cfg.model)
        private = (max(rows - count, 0), count, merge_every)
        return step, tuple(huffman), rows, private
    accept, alias = vocab.negative_sampling_alias(counts)
    # the most frequent words (ids 0, 1, ...) are the most frequent negatives
    private = (0, *cpu.ns_private_rows(threads))
    return step, (accept, alias, np.int64(cfg.negative)), counts.size, private


def initial_state(cfg, V: int, output_rows: int, threads: int) -> dict:
    """word2vec.c's initialisation: input vectors uniform in [-0.5, 0.5) / D, output zeros."""
    rng = np.random.default_rng(cfg.seed)
    vectors = (rng.random((V, cfg.dim), dtype=np.float32) - 0.5) / np.float32(cfg.dim)
    return {"vectors": vectors, "weights": np.zeros((output_rows, cfg.dim), np.float32),
            "rng_states": seed_states(cfg.seed, threads), "epoch": np.int64(0),
            "block": np.int64(0), "counters": np.zeros((threads, cpu.COUNTERS)),
            "epoch_log": np.zeros((0, cpu.COUNTERS)), "seconds": np.float64(0.0)}


def epoch_plan(offsets: np.ndarray, parts: int, block_words: int) -> np.ndarray:
    """The order in which an epoch trains its sentences: blocks int64 [K, 3] of (first
    sentence, end sentence, position in that order of the block's first token).
    The sentences are cut into `parts` contiguous parts of about equal token counts, each
    part into blocks of about block_words tokens, and the parts' blocks are interleaved
    (part 0's first, part 1's first, ..., part 0's second, ...). With one part per thread,
    threads taking blocks in turn train that many distant stretches of the corpus at once,
    as word2vec.c's threads do (thread i reads from i/T of the file): on a corpus made of
    different sources one after another, the model does not learn them one by one, the
    last learned at the smallest learning rate. One part is the file's order."""
    sentences = offsets.size - 1
    if sentences == 0:
        return np.zeros((0, 3), np.int64)
    cuts = np.searchsorted(offsets, np.linspace(0, offsets[-1], parts + 1)[1:-1])
    part_edges = np.unique(np.concatenate(([0], cuts, [sentences])))
    runs = [part_blocks(offsets, first, end, block_words)
            for first, end in zip(part_edges[:-1], part_edges[1:])]
    # interleaved: ordered by the block's rank within its part, then by part
    rank = np.concatenate([np.arange(len(run)) for run in runs])
    part = np.concatenate([np.full(len(run), p) for p, run in enumerate(runs)])
    plan = np.zeros((rank.size, 3), np.int64)
    plan[:, :2] = np.concatenate(runs)[np.lexsort((part, rank))]
    sizes = offsets[plan[:, 1]] - offsets[plan[:, 0]]
    plan[1:, 2] = np.cumsum(sizes)[:-1]
    return plan


def part_blocks(offsets: np.ndarray, first: int, end: int, block_words: int) -> np.ndarray:
    """Sentences [first, end) as consecutive runs of about block_words tokens: int64 [k, 2]
    of (first, end)."""
    targets = np.arange(offsets[first], offsets[end], max(block_words, 1))
    bounds = np.clip(np.searchsorted(offsets, targets), first, end)
    bounds = np.unique(np.concatenate((bounds, [first, end]))).astype(np.int64)
    return np.stack((bounds[:-1], bounds[1:]), axis=1)


class Trainer:
    """Runs the kernel chunk by chunk over all epochs, from a fresh or a saved state."""

    def __init__(self, cfg, tokens, offsets, counts, huffman, threads: int):
        self.cfg, self.tokens, self.offsets, self.threads = cfg, tokens, offsets, threads
        self.step, self.head, self.output_rows, self.private = output_layer(cfg, counts, huffman,
                                                                            threads)
        self.keep = vocab.keep_probabilities(counts, cfg.sample)
        self.alpha = cfg.alpha or DEFAULT_ALPHA[cfg.model]
        self.total = cfg.epochs * tokens.size
        parts, self.blocks_per_chunk = self.chunk_layout()
        block_words = cfg.chunk_words // self.blocks_per_chunk       # part_blocks takes 0 as 1
        self.plan = epoch_plan(offsets, parts, block_words)     # taken blocks_per_chunk at a time

    def chunk_layout(self) -> tuple[int, int]:
        """(parts of the epoch plan, blocks per kernel call): one part per thread, each
        thread taking BLOCKS_PER_THREAD blocks per call."""
        return self.threads, self.threads * BLOCKS_PER_THREAD

    def run_chunk(self, state: dict, first: int, last: int) -> None:
        """Train blocks [first, last) of the epoch plan."""
        self.train_blocks(state, self.plan[first:last])

    def warm_up(self, state: dict) -> None:
        """Compile the kernels (or load them from Numba's cache) by training one block that
        holds no sentence, which changes nothing, so that the first chunk's time is
        training time."""
        self.train_blocks(state, np.zeros((1, 3), np.int64))

    def train_blocks(self, state: dict, blocks: np.ndarray) -> None:
        """Train the blocks (rows of an epoch plan) in the state's current epoch."""
        cfg, epoch = self.cfg, int(state["epoch"])
        common = (self.step, state["vectors"], state["weights"], state["counters"],
                  self.tokens, self.offsets, blocks,
                  self.keep, self.head, self.private, cfg.window)
        schedule = (self.alpha, self.alpha * cfg.min_alpha_ratio, epoch * self.tokens.size,
                    self.total, state["rng_states"])
        if cfg.model == "skipgram":
            cpu.skipgram(*common, *schedule)
        else:
            cpu.cbow(*common, cfg.cbow_mean, *schedule)

    def check_finite(self, state: dict) -> None:
        if not self.weights_finite(state):
            raise TrainingDiverged(
                f"word2vec diverged: weights became NaN/inf in epoch {int(state['epoch']) + 1}; "
                f"lower word2vec.alpha (now {self.alpha})")

    def weights_finite(self, state: dict) -> bool:
        return bool(np.isfinite(state["vectors"]).all() and np.isfinite(state["weights"]).all())

    def sync_to_host(self, state: dict) -> None:
        """Make state's weights current before they are saved (here they always are)."""


class CudaTrainer(Trainer):
    """The same schedule on the GPU: corpus, tables and weights stay on the device; each
    chunk is one launch over `threads` workers (warps). The finiteness check after each
    chunk runs on the device; the weights come back to the host only for checkpoints and
    the outputs (sync_to_host; the loop ends with an epoch, whose checkpoint syncs): copying
    both matrices after every chunk cost 2-8% of the words/s (bench/RESULTS.md)."""

    def __init__(self, cfg, tokens, offsets, counts, huffman, threads: int):
        from numba import cuda
        from stages.word2vec import cuda as kernels
        super().__init__(cfg, tokens, offsets, counts, huffman, threads)
        self.cuda, self.kernels = cuda, kernels
        self.device = {name: cuda.to_device(np.ascontiguousarray(a)) for name, a in
                       (("tokens", tokens), ("offsets", offsets), ("keep", self.keep))}
        self.device_head = tuple(cuda.to_device(a) if isinstance(a, np.ndarray) else a
                                 for a in self.head)
        longest = int(np.diff(offsets).max()) if offsets.size > 1 else 1
        self.scratch = cuda.device_array((threads, max(longest, 1)), np.int32)
        self.weights_on_device = None

    def chunk_layout(self) -> tuple[int, int]:
        """One block per worker and launch, and one part: a launch's thousands of workers
        already train a whole chunk of the corpus at once."""
        return 1, self.threads

    def device_weights(self, state: dict) -> dict:
        """The weights on the device, uploaded from `state` on first use; from then on they
        are the current ones, and the host copy follows them through sync_to_host."""
        if self.weights_on_device is None:
            self.weights_on_device = {k: self.cuda.to_device(state[k]) for k in ("vectors", "weights")}
        return self.weights_on_device

    def train_blocks(self, state: dict, blocks: np.ndarray) -> None:
        cuda, cfg, epoch = self.cuda, self.cfg, int(state["epoch"])
        # counters are reset between epochs on the host: small, so sent with every chunk
        live = {**self.device_weights(state),
                **{k: cuda.to_device(state[k]) for k in ("counters", "rng_states")}}
        blocks = cuda.to_device(blocks)
        common = (self.step, live["vectors"], live["weights"], live["counters"],
                  self.device["tokens"], self.device["offsets"], blocks, self.device["keep"],
                  self.device_head, self.private, cfg.window)
        schedule = (self.alpha, self.alpha * cfg.min_alpha_ratio, epoch * self.tokens.size,
                    self.total, live["rng_states"], self.scratch)
        if cfg.model == "skipgram":
            self.kernels.skipgram(*common, *schedule)
        else:
            self.kernels.cbow(*common, cfg.cbow_mean, *schedule)
        for name in ("counters", "rng_states"):
            live[name].copy_to_host(state[name])

    def weights_finite(self, state: dict) -> bool:
        return self.kernels.all_finite(*self.device_weights(state).values())

    def sync_to_host(self, state: dict) -> None:
        for name, array in self.device_weights(state).items():
            array.copy_to_host(state[name])


def cuda_workers() -> int:
    """Warps in flight: 16 per multiprocessor keeps every SM busy while warps wait on memory."""
    from numba import cuda
    return cuda.get_current_device().MULTIPROCESSOR_COUNT * 16


def start_checkpoint(checkpoints: BackgroundWriter, out, state: dict, fingerprint: str,
                     final: bool) -> None:
    """Hand the state to the background writer, once the previous checkpoint is on disk:
    a copy while training goes on changing `state`; the state itself once training is over
    (`final`), as nothing changes it afterwards. That copy of both matrices took 19 ms, and
    once 229 ms, of a one-epoch CBOW run's 1.7 s."""
    snapshot = state if final else {k: np.copy(v) for k, v in state.items()}
    checkpoints.run(save_checkpoint, out, snapshot, fingerprint)


def save_checkpoint(out, state: dict, fingerprint: str) -> None:
    out.save_npz(CHECKPOINT, fingerprint=np.array(fingerprint), **state)


def load_checkpoint(out, fingerprint: str, threads: int) -> dict | None:
    path = out / CHECKPOINT
    if not path.is_file():
        return None
    state = load_npz(path)
    if str(state.pop("fingerprint")) != fingerprint or state["rng_states"].size != threads:
        return None
    return state


def run(cfg, inputs, out) -> dict:
    device = choose_device(cfg.device, "word2vec")
    words, counts = vocab.load_vocab(inputs["vocab"])
    tokens, offsets = corpus.load_split(inputs["corpus"], "train")
    if device == "cuda":
        threads, trainer_class = cfg.threads or cuda_workers(), CudaTrainer
    else:
        threads, trainer_class = resolve_threads(cfg.threads), Trainer
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    trainer = trainer_class(cfg, tokens, offsets, counts, vocab.load_huffman(inputs["vocab"]), threads)
    identity = repr((CHECKPOINT_FORMAT, asdict(cfg), tokens.size, len(words), out.fingerprint))
    state = load_checkpoint(out, identity, threads)
    if state is None:
        state = initial_state(cfg, len(words), trainer.output_rows, threads)
    clock = time.perf_counter()
    trainer.warm_up(state)
    compile_seconds = time.perf_counter() - clock
    with BackgroundWriter() as checkpoints:
        train_epochs(trainer, state, out, identity, checkpoints)
        # the last epoch's checkpoint is written meanwhile: it covers a crash in here
        summary = write_outputs(out, cfg, words, state, device, threads, tokens.size,
                                compile_seconds)
    out.discard(CHECKPOINT)
    return summary


def train_epochs(trainer: Trainer, state: dict, out, identity: str,
                 checkpoints: BackgroundWriter) -> None:
    """Train from the state's epoch and block to the end. Checkpoints are written in the
    background, from a copy of the state (the last from the state itself: start_checkpoint),
    while training goes on (on the GPU, writing them in the loop took 0.21-0.25 s of a
    5-epoch run: bench/RESULTS.md). A checkpoint starts only once the previous one is on
    disk; waiting for it counts as training time."""
    cfg, block_count = trainer.cfg, len(trainer.plan)
    starts = np.append(trainer.plan[:, 2], trainer.tokens.size)  # of each block; the epoch's end
    done = int(state["epoch"]) * trainer.tokens.size + int(starts[int(state["block"])])
    bar = tqdm(total=trainer.total, initial=done, unit="w", unit_scale=True,
               disable=out.quiet, desc="word2vec")
    last_save = time.monotonic()
    while int(state["epoch"]) < cfg.epochs:
        first = int(state["block"])
        last = min(first + trainer.blocks_per_chunk, block_count)
        clock = time.perf_counter()
        trainer.run_chunk(state, first, last)
        trainer.check_finite(state)
        state["block"] = np.int64(last)
        bar.update(int(starts[last] - starts[first]))
        totals = state["counters"].sum(axis=0)
        bar.set_postfix(loss=f"{totals[0] / max(totals[1], 1):.4f}")
        if last == block_count:
            finish_epoch(state)
        add_seconds(state, clock)
        if last == block_count or time.monotonic() - last_save > 60 * cfg.checkpoint_minutes:
            clock = time.perf_counter()
            trainer.sync_to_host(state)
            start_checkpoint(checkpoints, out, state, identity, int(state["epoch"]) == cfg.epochs)
            add_seconds(state, clock)
            last_save = time.monotonic()
    bar.close()


def add_seconds(state: dict, clock: float) -> None:
    """Count the time since `clock` as training time. It covers all that the epoch loop
    does (the kernels, the checks, progress, and for checkpoints the copy of the state and
    any wait for the previous write), as a peer's timer around its train() call does; only
    a checkpoint's own copy is missing from the time that checkpoint holds."""
    state["seconds"] = np.float64(state["seconds"] + time.perf_counter() - clock)


def finish_epoch(state: dict) -> None:
    """Log the epoch's totals (summed over threads in a fixed order) and reset counters."""
    totals = state["counters"].sum(axis=0)
    state["epoch_log"] = np.vstack([state["epoch_log"], totals[None, :]])
    state["counters"][:] = 0.0
    state["epoch"] = np.int64(int(state["epoch"]) + 1)
    state["block"] = np.int64(0)


def write_outputs(out, cfg, words, state, device, threads, raw_tokens, compile_seconds) -> dict:
    seconds = float(state["seconds"])
    out.save_npy("vectors.npy", state["vectors"])
    out.save_npy("output_weights.npy", state["weights"])
    vectors = Vectors(words, state["vectors"])
    vectors.save(out / "vectors.bin", binary=True)
    vectors.save(out / "vectors.txt", binary=False)
    log = state["epoch_log"]
    metrics = {
        "model": cfg.model, "loss_function": cfg.loss, "device": device, "threads": threads,
        "vocab_size": len(words), "dim": cfg.dim, "epochs": cfg.epochs,
        "seconds": seconds, "compile_seconds": compile_seconds,
        "raw_words_per_epoch": int(raw_tokens),
        "predictions_per_epoch": [int(x) for x in log[:, 2]],
        "words_per_epoch": [int(x) for x in log[:, 3]],
        "trained_words_per_epoch": [int(x) for x in log[:, 4]],
        "loss_per_epoch": [float(l / max(n, 1)) for l, n in zip(log[:, 0], log[:, 1])],
        "raw_words_per_second": raw_tokens * cfg.epochs / seconds if seconds > 0 else None,
    }
    out.write_json("metrics.json", metrics)
    return {"device": device, "threads": threads,
            "words_per_second": round(metrics["raw_words_per_second"] or 0),
            "final_loss": round(metrics["loss_per_epoch"][-1], 4)}
