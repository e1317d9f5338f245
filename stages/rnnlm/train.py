"""The RNN LM stage: data and embeddings in, the epoch loop (truncated BPTT windows,
clipping, SGD with learning-rate decay on a validation plateau, or Adam), validation and
diagnostics per epoch, checkpoints, and the outputs, on the CPU (model.py over cpu.py) or a
GPU (device.py over cuda.py). No numerics here.

Outputs: model.npz (the best epoch's parameters by name, plus frozen embeddings),
lm_vocab.tsv (LM words and their training counts), lm_tree.npz (output = "hs"),
metrics.json.
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict
from pathlib import Path

import numba
import numpy as np
from threadpoolctl import threadpool_limits
from tqdm import tqdm

from pipeline.store import load_npz
from stages import corpus, vocab
from stages.devices import choose_device
from stages.errors import InputError, TrainingDiverged
from stages.rnnlm import blas, data
from stages.rnnlm.model import (Architecture, Model, Optimiser, flat_size, initialise,
                                parameter_shapes, to_host)
from stages.rnnlm.tree import lm_tree
from stages.vectors import Vectors
from stages.word2vec.rng import seed_states

CHECKPOINT = "checkpoint/state.npz"


def set_threads(requested: int) -> int:
    """Numba's and BLAS's thread counts (0 = every core available to this process)."""
    threads = len(os.sched_getaffinity(0)) if requested == 0 else requested
    numba.set_num_threads(min(blas.numba_threads(threads), numba.config.NUMBA_NUM_THREADS))
    threadpool_limits(threads)          # OpenBLAS's and MKL's alike
    return threads


def input_files(cfg) -> list:
    """An external embeddings file (for the runner's fingerprint)."""
    if not cfg.embeddings:
        return []
    path = Path(cfg.embeddings)
    if not path.is_file():
        raise InputError(f"rnnlm.embeddings file not found: {path}")
    return [path]


def input_embeddings(cfg, inputs, lm: data.LmVocabulary, rng) -> np.ndarray:
    """[V, D] float32: the word2vec stage's vectors (or an external C-format file) for the
    LM words; words without a vector get N(0, s^2), s the vectors' own spread."""
    if cfg.embeddings:
        source = Vectors.load(cfg.embeddings)
        rows = [source.index.get(w, -1) for w in lm.words]
        vectors = source.matrix
    else:
        vectors = np.load(inputs["word2vec"] / "vectors.npy", mmap_mode="r")
        rows = [i if i < lm.kept and i < vectors.shape[0] else -1 for i in range(lm.size)]
    known = np.array([r for r in rows if r >= 0], dtype=np.int64)
    spread = float(np.std(vectors[known])) if known.size else 0.1
    table = rng.normal(0.0, spread, (lm.size, vectors.shape[1])).astype(np.float32)
    found = np.array([r >= 0 for r in rows])
    table[found] = vectors[known]
    return table


class Streams:
    """The three splits as LM id streams, batched."""

    def __init__(self, cfg, corpus_dir, lm: data.LmVocabulary):
        self.stream = {split: data.lm_stream(*corpus.load_split(corpus_dir, split), lm)
                       for split in ("train", "valid", "test")}
        self.train = data.batchify(self.stream["train"], cfg.batch_size, "training")
        self.valid = self._eval_batches(cfg, "valid")
        self.test = self._eval_batches(cfg, "test")
        self.counts = data.unigram_counts(self.stream["train"], lm.size)

    def _eval_batches(self, cfg, split):
        if self.stream[split].size < 2:
            raise InputError(f"the {split} split is empty: the LM needs held-out text; set "
                             f"corpus.heldout_every (e.g. 20) or corpus.{split}_path")
        streams = min(cfg.eval_batch_size, max(self.stream[split].size // 2, 1))
        return data.batchify(self.stream[split], streams, split)


def build_model(cfg, lm, embeddings, tree, rng) -> Model:
    """tree: the HS output's (codes, points, lengths), None for the full softmax."""
    arch = Architecture(cfg.cell, cfg.output, lm.size, embeddings.shape[1], cfg.hidden,
                        not cfg.freeze_embeddings)
    shapes = parameter_shapes(arch)
    params = np.zeros(flat_size(shapes), np.float32)
    model = Model(arch, params, embeddings, tree, cfg.dropout, seed_states(cfg.seed, 1))
    initialise(model.p, arch, rng)
    if arch.train_embeddings:
        model.p["embeddings"][...] = embeddings
    return model


def evaluate(model, batches: np.ndarray, bptt: int) -> float:
    """Perplexity exp(mean -log p) over a batched split, the state carried across windows
    (model: a Model or a DeviceModel)."""
    state, total, tokens = model.initial_state(batches.shape[1]), 0.0, 0
    for start in data.window_starts(batches.shape[0], bptt):
        ids, targets = data.window(batches, start, bptt)
        loss, state = model.evaluate_window(ids, targets, state)
        total, tokens = total + loss, tokens + targets.size
    return math.exp(total / max(tokens, 1))


def diagnostics(model: Model, batches: np.ndarray, bptt: int, windows: int) -> dict:
    """The lecture's picture of vanishing/exploding gradients: mean ||dE_t/dh_k|| by lag
    t - k over up to `windows` full validation windows, and W_h's spectral radius."""
    starts = [s for s in data.window_starts(batches.shape[0], bptt) if s + bptt < batches.shape[0]]
    picks = starts[::max(len(starts) // max(windows, 1), 1)][:windows]
    state, norms = model.initial_state(batches.shape[1]), []
    for start in picks:
        ids, targets = data.window(batches, start, bptt)
        norms.append(model.gradient_by_lag(ids, targets, state))
    by_lag = np.mean(norms, axis=0).tolist() if norms else []
    return {"gradient_norm_by_lag": by_lag, "spectral_radius": model.spectral_radii()}


def fresh_state(cfg, model: Model) -> dict:
    """Everything a checkpoint holds besides the identity: position, schedule, history."""
    return {"epoch": 0, "window": 0, "lr": cfg.lr, "best_valid": math.inf,
            "best_params": model.params.copy(), "carry": model.initial_state(cfg.batch_size),
            "seconds": 0.0, "tokens": 0, "history": [], "loss_sum": 0.0, "loss_tokens": 0,
            "clipped": 0, "windows": 0}


def save_checkpoint(out, identity: str, model: Model, optimiser: Optimiser, state: dict) -> None:
    """Host arrays only: model and optimiser are the host copies (Trainer.sync first)."""
    scalars = {k: v for k, v in state.items() if k not in ("best_params", "carry")}
    out.save_npz(CHECKPOINT, identity=np.array(identity), params=model.params,
                 best_params=state["best_params"], carry_h=to_host(state["carry"][0]),
                 carry_c=to_host(state["carry"][1]), rng_state=model.rng_state,
                 scalars=np.array(json.dumps(scalars)),
                 **{f"optimiser_{k}": v for k, v in optimiser.state.items()},
                 **{f"tree_{k}": v for k, v in tree_arrays(model).items()})


TREE_PARTS = ("codes", "points", "lengths")


def tree_arrays(model: Model) -> dict:
    """The HS tree by name ({} for the full softmax)."""
    return {} if model.tree is None else dict(zip(TREE_PARTS, model.tree))


def read_checkpoint(out, identity: str) -> dict | None:
    """The saved arrays of this very run's checkpoint, if there is one."""
    path = out / CHECKPOINT
    if not path.is_file():
        return None
    saved = load_npz(path)
    return saved if str(saved["identity"]) == identity else None


def output_tree(cfg, streams: Streams, saved: dict | None):
    """The HS tree (None for the full softmax): a resumed run goes on with its checkpoint's,
    the tree its output rows were trained for (whatever BLAS would build now); a new run
    builds one."""
    if cfg.output != "hs":
        return None
    if saved is not None:
        return tuple(saved[f"tree_{k}"] for k in TREE_PARTS)
    return lm_tree(cfg.hs_tree, streams.stream["train"], streams.counts)


def restore_checkpoint(saved: dict, model: Model, optimiser: Optimiser) -> dict:
    """Weights, optimiser and RNG from a checkpoint; returns the training state."""
    model.params[...] = saved["params"]
    model.rng_state[...] = saved["rng_state"]
    for k in optimiser.state:
        optimiser.state[k][...] = saved[f"optimiser_{k}"]
    state = json.loads(str(saved["scalars"]))
    state["best_params"] = saved["best_params"]
    state["carry"] = (saved["carry_h"], saved["carry_c"])
    return state


class Trainer:
    """One epoch of windows at a time; the learning-rate schedule after each. The engine
    trains (the host Model itself, or a DeviceModel holding its parameters on the GPU);
    the host model and optimiser are what checkpoints, diagnostics and outputs read."""

    def __init__(self, cfg, model: Model, optimiser: Optimiser, streams: Streams, out,
                 identity: str, device: str):
        self.cfg, self.model, self.streams, self.out, self.identity = cfg, model, streams, out, identity
        self.host_optimiser = optimiser
        if device == "cuda":
            from stages.rnnlm.device import DeviceModel, device_optimiser
            self.engine, self.optimiser = DeviceModel(model), device_optimiser(optimiser)
        else:
            self.engine, self.optimiser = model, optimiser
        self.starts = data.window_starts(streams.train.shape[0], cfg.bptt)

    def sync(self) -> None:
        """The host model and optimiser catch up with the engine's."""
        if self.engine is self.model:
            return
        self.engine.pull()
        for key, value in self.optimiser.state.items():
            self.host_optimiser.state[key][...] = to_host(value)

    def save(self, state: dict) -> None:
        self.sync()
        save_checkpoint(self.out, self.identity, self.model, self.host_optimiser, state)

    def train_epoch(self, state: dict, bar) -> None:
        cfg, engine, last_save = self.cfg, self.engine, time.monotonic()
        while state["window"] < len(self.starts):
            ids, targets = data.window(self.streams.train, self.starts[state["window"]], cfg.bptt)
            clock = time.perf_counter()
            loss, state["carry"] = engine.train_window(ids, targets, state["carry"],
                                                       fresh=state["window"] == 0)
            norm = engine.clip_gradients(cfg.clip_norm)
            self.check_finite(loss, norm, state)
            self.optimiser.step(engine.params, engine.grads, state["lr"],
                                engine.gradient_segments())
            state["seconds"] += time.perf_counter() - clock
            state["tokens"] += targets.size
            state["loss_sum"] += loss
            state["loss_tokens"] += targets.size
            state["clipped"] += int(cfg.clip_norm > 0 and norm > cfg.clip_norm)
            state["windows"] += 1
            state["window"] += 1
            bar.update(targets.size)
            bar.set_postfix(loss=f"{state['loss_sum'] / state['loss_tokens']:.3f}",
                            lr=f"{state['lr']:.3g}")
            if time.monotonic() - last_save > 60 * cfg.checkpoint_minutes:
                self.save(state)
                last_save = time.monotonic()

    def check_finite(self, loss: float, norm: float, state: dict) -> None:
        """Before the update: a non-finite gradient shows as a non-finite norm (which the
        clipping computed anyway), so no second pass over all the gradients is needed."""
        if not (math.isfinite(loss) and math.isfinite(norm)):
            raise TrainingDiverged(
                f"the RNN LM diverged in epoch {state['epoch'] + 1} (loss {loss}): exploding "
                f"gradients; lower rnnlm.lr (now {state['lr']:g}) or set rnnlm.clip_norm "
                f"(now {self.cfg.clip_norm:g}; 0.25 is a safe choice)")

    def finish_epoch(self, state: dict) -> None:
        """Validation, diagnostics, best weights, the learning-rate decay, reset counters.
        The diagnostics run on the host copy (a few windows)."""
        cfg, model = self.cfg, self.model
        valid = evaluate(self.engine, self.streams.valid, cfg.bptt)
        self.sync()
        entry = {"epoch": state["epoch"] + 1, "lr": state["lr"],
                 "train_loss": state["loss_sum"] / max(state["loss_tokens"], 1),
                 "train_perplexity": math.exp(state["loss_sum"] / max(state["loss_tokens"], 1)),
                 "valid_perplexity": valid,
                 "clipped_fraction": state["clipped"] / max(state["windows"], 1),
                 **diagnostics(model, self.streams.valid, cfg.bptt, cfg.diagnostic_windows)}
        state["history"].append(entry)
        if valid < state["best_valid"]:
            state["best_valid"], state["best_params"] = valid, model.params.copy()
        elif cfg.optimizer == "sgd":
            state["lr"] /= cfg.lr_decay
        state.update(epoch=state["epoch"] + 1, window=0, loss_sum=0.0, loss_tokens=0,
                     clipped=0, windows=0, carry=self.engine.initial_state(cfg.batch_size))


def run(cfg, inputs, out) -> dict:
    device = choose_device(cfg.device, "rnnlm")
    threads = set_threads(cfg.threads)
    lm = data.lm_vocabulary(vocab.load_vocab(inputs["vocab"])[0], cfg.max_vocab)
    streams = Streams(cfg, inputs["corpus"], lm)
    rng = np.random.default_rng(cfg.seed)
    identity = repr((asdict(cfg), lm.size, streams.train.shape, out.fingerprint))
    saved = read_checkpoint(out, identity)
    model = build_model(cfg, lm, input_embeddings(cfg, inputs, lm, rng),
                        output_tree(cfg, streams, saved), rng)
    optimiser = Optimiser(cfg.optimizer, model.params.size)
    state = (restore_checkpoint(saved, model, optimiser) if saved is not None
             else fresh_state(cfg, model))
    trainer = Trainer(cfg, model, optimiser, streams, out, identity, device)
    engine = device if device != "cpu" else f"cpu, {blas.BACKEND}"     # what auto chose
    bar = tqdm(total=cfg.epochs * streams.train.shape[0] * cfg.batch_size, unit="tok",
               unit_scale=True, disable=out.quiet, desc=f"rnnlm {cfg.cell}/{cfg.output} ({engine})",
               initial=(state["epoch"] * len(trainer.starts) + state["window"]) * cfg.bptt * cfg.batch_size)
    while state["epoch"] < cfg.epochs:
        trainer.train_epoch(state, bar)
        trainer.finish_epoch(state)
        trainer.save(state)
    bar.close()
    trainer.engine.load_params(state["best_params"])
    test = evaluate(trainer.engine, streams.test, cfg.bptt)
    return write_outputs(out, cfg, lm, streams, model, state, test, device, threads)


def write_outputs(out, cfg, lm, streams, model: Model, state: dict, test: float, device,
                  threads) -> dict:
    """model: the host model holding the best epoch's parameters; test: its perplexity."""
    arrays = {f"param_{k}": v for k, v in model.p.items()}
    if not model.arch.train_embeddings:
        arrays["param_embeddings"] = model.embeddings
    out.save_npz("model.npz", architecture=np.array(json.dumps(asdict(model.arch))), **arrays)
    out.write_text("lm_vocab.tsv", "".join(f"{w}\t{c}\n" for w, c in zip(lm.words, streams.counts)))
    if model.tree is not None:
        out.save_npz("lm_tree.npz", **tree_arrays(model))
    seconds = state["seconds"]
    metrics = {
        "cell": cfg.cell, "output": cfg.output, "device": device, "threads": threads,
        "blas": blas.BACKEND if device == "cpu" else None,
        "vocab_size": lm.size, "unk": lm.words[lm.unk], "eos": lm.words[lm.eos],
        "dim": model.arch.dim, "hidden": cfg.hidden, "epochs": cfg.epochs,
        "train_tokens": int(streams.train.size), "seconds": seconds,
        "train_tokens_per_second": state["tokens"] / seconds if seconds > 0 else None,
        "valid_perplexity": state["best_valid"], "test_perplexity": test,
        "per_epoch": state["history"],
    }
    if model.tree is not None:      # what an HS token costs: inner nodes on its path
        lengths = model.tree[2].astype(np.float64)
        metrics.update(hs_tree=cfg.hs_tree, hs_mean_path=float(
            lengths @ streams.counts / max(streams.counts.sum(), 1)))
    out.write_json("metrics.json", metrics)
    out.discard(CHECKPOINT)
    return {"device": device, "valid_perplexity": round(state["best_valid"], 2),
            "test_perplexity": round(test, 2),
            "tokens_per_second": round(metrics["train_tokens_per_second"] or 0)}
