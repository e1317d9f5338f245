"""Where one training window of the RNN LM spends its time on the CPU: forward (embedding
and cell), output layer (loss and its gradients), backward (cell and embeddings), gradient
clipping and the SGD step, in ms per window, for the benchmark's shapes (B 32, T 35,
embeddings 128, hidden 256, 10,002 words) on ids drawn from a Zipf law. No data needed.

    python bench/rnnlm_window.py --cell lstm --output hs [--frozen] [--threads 2]
    RNNLM_BLAS=openblas python bench/rnnlm_window.py ...     # without MKL's packed products
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import zipf_lm_model  # noqa: E402
from stages.rnnlm import blas  # noqa: E402
from stages.rnnlm.model import Model, Optimiser  # noqa: E402
from stages.rnnlm.train import set_threads  # noqa: E402

PHASES = ("forward", "output", "backward", "clip", "sgd")


def profile(model: Model, counts: np.ndarray, windows: int, warmup: int, T: int, B: int,
            lr: float = 1.0, clip: float = 0.25) -> dict:
    """Mean ms per window of each phase over `windows` windows after `warmup`."""
    rng = np.random.default_rng(1)
    ids = rng.choice(counts.size, size=(warmup + windows, T + 1, B), p=counts / counts.sum())
    optimiser, state = Optimiser("sgd", 0), model.initial_state(B)
    seconds = dict.fromkeys(PHASES, 0.0)
    for w in range(warmup + windows):
        x, y = ids[w, :-1], ids[w, 1:]
        stamps = [time.perf_counter()]
        work = model.forward(x, state, train=True)
        stamps.append(time.perf_counter())
        model.output_pass(work, y)
        stamps.append(time.perf_counter())
        model.backward(work, x, fresh=False)
        stamps.append(time.perf_counter())
        model.clip_gradients(clip)
        stamps.append(time.perf_counter())
        optimiser.step(model.params, model.grads, lr, model.gradient_segments())
        stamps.append(time.perf_counter())
        state = (work.h_all[-1].copy(), work.c_all[-1].copy())
        if w >= warmup:
            for phase, start, stop in zip(PHASES, stamps, stamps[1:]):
                seconds[phase] += stop - start
    return {phase: 1000 * s / windows for phase, s in seconds.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cell", default="lstm", choices=["tanh", "relu", "irnn", "lstm", "gru"])
    parser.add_argument("--output", default="hs", choices=["hs", "softmax"])
    parser.add_argument("--frozen", action="store_true", help="frozen embeddings")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--windows", type=int, default=60)
    parser.add_argument("--vocab", type=int, default=10_002)
    args = parser.parse_args()
    set_threads(args.threads)
    T, B = 35, 32
    model, counts = zipf_lm_model(args.cell, args.output, np.random.default_rng(0),
                                  not args.frozen, args.vocab)
    times = profile(model, counts, args.windows, warmup=5, T=T, B=B)
    total = sum(times.values())
    print(f"{args.cell} + {args.output}{' (frozen embeddings)' if args.frozen else ''}, "
          f"{args.threads} threads, {blas.BACKEND}, B {B}, T {T}, V {args.vocab}: ms per window")
    for phase, ms in times.items():
        print(f"  {phase:9s} {ms:7.2f}")
    print(f"  {'total':9s} {total:7.2f}  ({T * B / total * 1000:,.0f} tokens/s)")


if __name__ == "__main__":
    main()
