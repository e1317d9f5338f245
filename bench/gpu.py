"""CUDA kernels on a real GPU: checked against the CPU kernels, then timed beside them.

1. Check: on the first 500 sentences of the corpus, one GPU worker against one CPU
   thread (same random draws): the largest difference of the trained vectors.
2. Time word2vec (skip-gram + HS, CBOW + HS, skip-gram + NS by default; dim 100, window 5,
   min_count 5, sample 1e-3, 5 epochs) on the GPU and on every CPU core of the same
   machine, with questions-words analogy accuracy for both. The GPU epoch loop's parts
   besides the kernels (checks, copies to the host, the time the loop gives to checkpoints,
   which are written in the background) are timed, and the loop
   is timed once more copying both matrices to the host after every chunk, as it did
   before its finiteness check ran on the device.

3. The RNN LM: one training window (B 32, T 35, V 10,002, D 128, H 256) timed on the GPU
   and on every CPU core, with the largest gradient difference between the two.
4. The rnnlm stage on Brown with rnnlm.device = "cuda" (the rnnlm_vs_torch.py settings):
   tokens/s and test perplexity, the CPU stage beside it with --rnnlm-cpu.
5. Registers, local memory (spills) and shared memory per thread of every compiled kernel.

    python bench/gpu.py --data DIR [--epochs 5] [--configs sg-hs,cbow-hs,sg-ns] [--no-registers]
    python bench/gpu.py --rnnlm-only [--brown FILE] [--lm-epochs 1] [--rnnlm-cpu]
    bash bench/device_run.sh       # on a machine where the repository travels alone

DIR holds the corpus text files (en-mix) and questions-words.txt; by default
../shared/data/corpora/en-mix and ../shared/data/eval (or $BENCH_DATA/...).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

# numba-cuda 0.30 registers an overload for np.row_stack, which NumPy 2.5 removed
if not hasattr(np, "row_stack"):
    np.row_stack = np.vstack

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (EN_MIX, SHARED_DATA, WORD2VEC_CONFIGS, print_table,  # noqa: E402
                          scratch_dir, timed, word2vec_inputs, zipf_lm_model)
from pipeline.config import Word2VecConfig  # noqa: E402
from pipeline.store import StageDir  # noqa: E402
from stages import corpus, evaluate, vocab  # noqa: E402
from stages.vectors import Vectors  # noqa: E402
from stages.word2vec import cpu, train  # noqa: E402
from stages.word2vec.rng import seed_states  # noqa: E402

def check_against_cpu(inputs: dict, model: str, loss: str, sentences: int = 500) -> float:
    """Largest |GPU - CPU| of the vectors after one pass, one worker vs one thread."""
    from numba import cuda
    from stages.word2vec import cuda as kernels
    tokens, offsets = corpus.load_split(inputs["corpus"], "train")
    offsets = offsets[:sentences + 1]
    counts = vocab.load_vocab(inputs["vocab"])[1]
    cfg = Word2VecConfig(model=model, loss=loss, dim=100)
    trainer = train.Trainer(cfg, tokens, offsets, counts, vocab.load_huffman(inputs["vocab"]), 1)
    start = train.initial_state(cfg, counts.size, trainer.output_rows, 1)
    start["weights"] = np.random.default_rng(0).normal(0, 0.1, start["weights"].shape).astype(np.float32)
    bounds = np.array([[0, sentences, 0]], dtype=np.int64)     # one block: all of them
    results = []
    for module in (cpu, kernels):
        v, w = start["vectors"].copy(), start["weights"].copy()
        counters, states = np.zeros((1, cpu.COUNTERS)), seed_states(7, 1)
        if module is kernels:
            longest = int(np.diff(offsets).max())
            dv, dw, dc, ds = (cuda.to_device(a) for a in (v, w, counters, states))
            head = tuple(cuda.to_device(a) if isinstance(a, np.ndarray) else a for a in trainer.head)
            args = (trainer.step, dv, dw, dc, cuda.to_device(tokens[:offsets[-1]]),
                    cuda.to_device(offsets), cuda.to_device(bounds), cuda.to_device(trainer.keep),
                    head, trainer.private, 5)
            tail = (trainer.alpha, trainer.alpha * 1e-4, 0, offsets[-1], ds,
                    cuda.device_array((1, longest), np.int32))
        else:
            args = (trainer.step, v, w, counters, tokens, offsets, bounds, trainer.keep,
                    trainer.head, trainer.private, 5)
            tail = (trainer.alpha, trainer.alpha * 1e-4, 0, offsets[-1], states)
        call = module.skipgram if model == "skipgram" else module.cbow
        if model == "skipgram":
            call(*args, *tail)
        else:
            call(*args, True, *tail)
        if module is kernels:
            v = dv.copy_to_host()
        results.append(v)
    return float(np.abs(results[0] - results[1]).max())


def train_and_score(inputs: dict, root: Path, name: str, device: str, epochs: int,
                    questions: Path | None, workers: int = 0) -> dict:
    """Train one configuration; analogy accuracy too unless questions is None."""
    model, loss = WORD2VEC_CONFIGS[name]
    out = root / f"{name}-{device}"
    cfg = Word2VecConfig(model=model, loss=loss, epochs=epochs, device=device, seed=1,
                         threads=workers,
                         chunk_words=5_000_000 if device == "cuda" else 1_000_000)
    train.run(cfg, inputs, StageDir(out, quiet=True, fingerprint="bench"))
    metrics = json.loads((out / "metrics.json").read_text())
    result = {"words_per_second": metrics["raw_words_per_second"], "seconds": metrics["seconds"],
              "threads": metrics["threads"]}
    if questions is not None:
        vectors = Vectors.load(out / "vectors.bin")
        result["analogy"] = evaluate.evaluate_analogies(
            vectors, evaluate.read_analogies(questions), 30000, True)["analogy_accuracy"]
    return result


# the GPU epoch loop's parts besides the kernels, as named in stages/word2vec/train.py
LOOP_PARTS = ("check_finite", "sync_to_host", "start_checkpoint")


def adding_seconds(function, totals: dict, key: str):
    """function, adding the seconds of each call to totals[key]."""
    def wrapper(*args, **kwargs):
        seconds, result = timed(function, *args, **kwargs)
        totals[key] = totals.get(key, 0.0) + seconds
        return result
    return wrapper


@contextlib.contextmanager
def gpu_loop_parts_timed(totals: dict, copy_every_chunk: bool = False):
    """Time the GPU epoch loop's parts besides the kernels: the finiteness checks, the
    weights' copies to the host (for checkpoints) and what checkpoints cost the loop (the
    state's copy and any wait for the previous write; the write runs in the background). With
    copy_every_chunk, each check copies both matrices to the host and checks them there,
    as the loop did before the check ran on the device."""
    from unittest import mock
    sync = train.CudaTrainer.sync_to_host          # unpatched: these copies count as checks

    def copy_then_check_on_host(self, state):
        sync(self, state)
        return train.Trainer.weights_finite(self, state)

    with contextlib.ExitStack() as stack:
        if copy_every_chunk:
            stack.enter_context(mock.patch.object(train.CudaTrainer, "weights_finite",
                                                  copy_then_check_on_host))
        for name in LOOP_PARTS:
            owner = train if name == "start_checkpoint" else train.CudaTrainer
            stack.enter_context(mock.patch.object(owner, name,
                                                  adding_seconds(getattr(owner, name), totals, name)))
        yield totals


def rnnlm_step(cell: str, output: str, windows: int = 20) -> dict:
    """Tokens/s of one training window (forward, backward, clipping, SGD; B 32, T 35,
    V 10,002, D 128, H 256; random ids) with the CPU kernels on every core and on the GPU,
    and the largest gradient difference between the two on the first window."""
    from numba import cuda
    from stages.rnnlm import cpu as lm_cpu, cuda as lm_cuda
    from stages.rnnlm.device import DeviceModel
    from stages.rnnlm.model import Optimiser
    from stages.rnnlm.train import set_threads
    set_threads(0)
    rng = np.random.default_rng(0)
    model, counts = zipf_lm_model(cell, output, rng)
    V = counts.size
    device = DeviceModel(model)
    batches = [(rng.integers(0, V, (35, 32)), rng.integers(0, V, (35, 32))) for _ in range(windows)]
    model.train_window(*batches[0], model.initial_state(32), True)
    device.train_window(*batches[0], device.initial_state(32), True)
    difference = float(np.abs(device.grads.copy_to_host() - model.grads).max())
    scale = float(np.abs(model.grads).max())

    def train(runner, kernels, window_batches):
        """As the stage's training loop: clip, then SGD where the gradient can be non-zero."""
        state, sgd = runner.initial_state(32), Optimiser("sgd", 0, kernels=kernels)
        for ids, targets in window_batches:
            _, state = runner.train_window(ids, targets, state, False)
            runner.clip_gradients(0.25)
            sgd.step(runner.params, runner.grads, 1.0, runner.gradient_segments())
        cuda.synchronize()

    rates = {}
    for name, runner, kernels in (("cpu", model, lm_cpu), ("gpu", device, lm_cuda)):
        train(runner, kernels, batches[:1])         # every kernel compiled before the clock
        clock = time.perf_counter()
        train(runner, kernels, batches)
        rates[name] = windows * 35 * 32 / (time.perf_counter() - clock)
    return {**rates, "max_gradient_difference": difference, "largest_gradient": scale}


def rnnlm_stage(brown: Path, root: Path, epochs: int, with_cpu: bool) -> None:
    """The rnnlm stage on Brown, as bench/rnnlm_vs_torch.py sets it up (word2vec on the GPU
    here), with rnnlm.device = "cuda" (and "cpu" on every core with with_cpu)."""
    from bench.rnnlm_vs_torch import lm_config, prepare as prepare_brown
    from stages.rnnlm import train as lm_train
    inputs = prepare_brown(root / "lm", 0, brown, device="cuda")
    rows = []
    for cell, output, extra in (("lstm", "softmax", {}), ("lstm", "hs", {}),
                                ("lstm", "hs", {"hs_tree": "clustered"}), ("tanh", "softmax", {}),
                                ("tanh", "hs", {}), ("gru", "hs", {}),
                                ("lstm", "hs", {"optimizer": "adam", "lr": 0.002, "dropout": 0.2})):
        for device in ("cuda", "cpu") if with_cpu else ("cuda",):
            out = root / f"lm-{cell}-{output}-{device}-{len(extra)}"
            clock = time.perf_counter()
            lm_train.run(lm_config(cell, output, epochs, 0, device=device, **extra), inputs,
                         StageDir(out, quiet=True))
            metrics = json.loads((out / "metrics.json").read_text())
            rows.append([cell, output + "".join(f" {k}={v}" for k, v in extra.items()), device,
                         f"{metrics['train_tokens_per_second']:.0f}",
                         f"{metrics['valid_perplexity']:.1f}", f"{metrics['test_perplexity']:.1f}",
                         f"{time.perf_counter() - clock:.0f}"])
            print(rows[-1], flush=True)
    print(f"\nrnnlm stage on Brown, {epochs} epoch(s), B 32, T 35, D 128, H 256")
    print_table(["cell", "output", "device", "train tok/s", "valid ppl", "test ppl", "stage s"], rows)


def register_report() -> None:
    """Registers and memory per thread of every kernel, compiled here for this GPU with a
    real run's argument types (local memory above zero means spills or local arrays)."""
    from stages.rnnlm import cuda as lm_cuda
    from stages.word2vec import cuda as w2v_cuda
    rows = []
    for module in (w2v_cuda, lm_cuda):
        for name, (kernel, signature) in module.kernel_signatures().items():
            compiled = kernel.compile(signature)
            rows.append([f"{module.__name__.split('.')[1]}.{name}", compiled.regs_per_thread,
                         compiled.local_mem_per_thread, compiled.shared_mem_per_block])
    print("\nkernel registers and memory (bytes)")
    print_table(["kernel", "registers/thread", "local/thread", "shared/block"], rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--configs", default="sg-hs,cbow-hs,sg-ns")
    parser.add_argument("--workers-per-sm", default="16",
                        help="GPU workers (blocks) per multiprocessor, comma-separated to compare")
    parser.add_argument("--gpu-only", action="store_true", help="skip the checks and the CPU runs")
    parser.add_argument("--rnnlm-only", action="store_true", help="only the RNN LM parts")
    parser.add_argument("--brown", type=Path, default=EN_MIX / "brown.txt",
                        help="the Brown corpus for the rnnlm stage run")
    parser.add_argument("--lm-epochs", type=int, default=1)
    parser.add_argument("--rnnlm-cpu", action="store_true", help="run the rnnlm stage on the CPU too")
    parser.add_argument("--no-registers", action="store_true", help="skip the register report")
    args = parser.parse_args()
    if args.rnnlm_only:
        for cell, output in (("lstm", "softmax"), ("lstm", "hs"), ("gru", "hs")):
            print(f"rnnlm {cell}/{output}: {rnnlm_step(cell, output)}", flush=True)
        if args.brown.is_file():
            rnnlm_stage(args.brown, scratch_dir(), args.lm_epochs, args.rnnlm_cpu)
        register_report()
        return
    texts_dir = args.data or EN_MIX
    questions = (args.data / "questions-words.txt" if args.data
                 else SHARED_DATA / "eval" / "questions-words.txt")
    texts = sorted(p for p in texts_dir.iterdir() if p.is_file() and p.name != "questions-words.txt")
    from numba import cuda
    device = cuda.get_current_device()
    print(f"GPU: {device.name.decode() if isinstance(device.name, bytes) else device.name}, "
          f"{device.MULTIPROCESSOR_COUNT} SMs; CPU threads: {len(os.sched_getaffinity(0))}")
    root = scratch_dir()
    clock = time.perf_counter()
    inputs = word2vec_inputs(root, texts)
    print(f"corpus + vocabulary: {time.perf_counter() - clock:.1f} s")
    for name in [] if args.gpu_only else args.configs.split(","):
        print(f"check {name}: max |GPU - CPU| of the vectors after one worker's pass = "
              f"{check_against_cpu(inputs, *WORD2VEC_CONFIGS[name]):.2e}", flush=True)
    for per_sm in map(int, args.workers_per_sm.split(",")):
        workers = per_sm * device.MULTIPROCESSOR_COUNT
        print(f"\n{workers} GPU workers ({per_sm} per SM)")
        compare(inputs, root, args, questions, workers)
    if not args.no_registers:
        register_report()


def compare(inputs, root, args, questions, workers):
    rows, loop_rows = [], []
    for name in args.configs.split(","):
        train_and_score(inputs, root, name, "cuda", 1, None, workers)    # compiles
        with gpu_loop_parts_timed({}, copy_every_chunk=True) as before:
            previous_loop = train_and_score(inputs, root, name, "cuda", args.epochs, None, workers)
        with gpu_loop_parts_timed({}) as parts:
            gpu = train_and_score(inputs, root, name, "cuda", args.epochs, questions, workers)
        loop_rows.append([name, f"{gpu['words_per_second'] / 1e6:.2f}", f"{gpu['seconds']:.2f}",
                          *(f"{parts.get(key, 0.0):.2f}" for key in LOOP_PARTS),
                          f"{previous_loop['words_per_second'] / 1e6:.2f}",
                          f"{before.get('check_finite', 0.0):.2f}"])
        print(loop_rows[-1], flush=True)
        if args.gpu_only:
            print(f"{name}: GPU {gpu['words_per_second'] / 1e6:.2f} Mw/s, analogy "
                  f"{100 * gpu['analogy']:.1f}%", flush=True)
            continue
        train_and_score(inputs, root, name, "cpu", 1, None)
        host = train_and_score(inputs, root, name, "cpu", args.epochs, questions)
        rows.append([name, f"{gpu['words_per_second'] / 1e6:.2f}", f"{host['words_per_second'] / 1e6:.2f}",
                     f"{gpu['words_per_second'] / host['words_per_second']:.1f}x",
                     f"{100 * gpu['analogy']:.1f}", f"{100 * host['analogy']:.1f}",
                     f"{100 * (gpu['analogy'] - host['analogy']):+.1f}", host["threads"]])
        print(rows[-1], flush=True)
    print(f"\nthe GPU epoch loop, {args.epochs} epochs: seconds in all and in its parts besides "
          "the kernels; then the loop as it was, copying both matrices to the host after "
          "every chunk for the check")
    print_table(["config", "GPU Mw/s", "loop s", "checks s", "host copies s", "checkpoints s",
                 "copy-every-chunk Mw/s", "its checks s"], loop_rows)
    if not rows:
        return
    print(f"\nword2vec, {args.epochs} epochs, raw words/s in millions")
    print_table(["config", "GPU Mw/s", "CPU Mw/s", "GPU/CPU", "GPU analogy %", "CPU analogy %",
                 "diff", "CPU threads"], rows)


if __name__ == "__main__":
    main()
