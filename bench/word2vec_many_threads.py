"""word2vec with many threads: how often the private output rows merge, against none.

    python bench/word2vec_many_threads.py [--threads 16] [--merge-every 128,1024]
                                          [--configs sg-hs,cbow-hs,sg-ns,cbow-ns]
                                          [--epochs 5] [--seeds 1] [--no-reference]

Trains ours on en-mix (the settings of bench/word2vec_vs_gensim.py) with `threads` threads,
once per merge interval, each thread keeping 256 private output rows (HS: the inner nodes
nearest the root; NS: the most frequent words) and adding its changes to the shared rows
every so many centre words, and once with no private rows (every update goes to the
shared rows, as in word2vec.c: the quality reference, many times slower on many cores).
Prints words/s, analogy accuracy and WordSim-353 of each.

Run it on a machine with a core per thread. With fewer cores the threads take turns, a
thread trains thousands of centre words per turn, and the merge windows of different
threads hardly overlap, which hides what merging does to training.
"""
from __future__ import annotations

import argparse
import os

from common import WORD2VEC_CONFIGS, concatenated_en_mix, print_table, scratch_dir, word2vec_inputs

PRIVATE_ROWS = 256


def train_with_merges(inputs: dict, out_dir, model: str, loss: str, epochs: int, threads: int,
                      seed: int, rows: int, merge_every: int):
    """Runs in a child process: train_ours with `rows` private rows (0: none) merged every
    `merge_every` centre words."""
    from stages.word2vec import cpu
    from word2vec_vs_gensim import train_ours
    cpu.hs_private_rows = lambda dim, thread_count, _model: (rows, merge_every)
    cpu.ns_private_rows = lambda thread_count: (rows, merge_every)
    return train_ours(inputs, out_dir, model, loss, epochs, threads, 0.0, seed)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--merge-every", default="128,1024",
                        help="comma-separated merge intervals (centre words per thread)")
    parser.add_argument("--configs", default=",".join(WORD2VEC_CONFIGS))
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--no-reference", action="store_true",
                        help="skip the run with no private rows")
    args = parser.parse_args()
    # Numba's thread pool is sized when it starts, from this variable: the children
    # inherit it
    os.environ["NUMBA_NUM_THREADS"] = str(max(args.threads, os.cpu_count() or 1))
    from word2vec_vs_gensim import in_child, quality
    scratch = scratch_dir()
    inputs = word2vec_inputs(scratch, [concatenated_en_mix(scratch)])
    settings = [(PRIVATE_ROWS, int(every)) for every in args.merge_every.split(",")]
    if not args.no_reference:
        settings.append((0, 1))
    rows = []
    for name in args.configs.split(","):
        model, loss = WORD2VEC_CONFIGS[name]
        for seed in range(1, args.seeds + 1):
            for private, every in settings:
                words_per_second, _, _, vectors = in_child(
                    train_with_merges, inputs, scratch / f"{name}-{private}-{every}", model,
                    loss, args.epochs, args.threads, seed, private, every)
                _, accuracy, wordsim = quality(vectors)
                setting = f"{private} rows every {every}" if private else "no private rows"
                rows.append([name, str(seed), setting, f"{words_per_second / 1e6:.3f}",
                             f"{100 * accuracy:.1f}", f"{wordsim:.3f}"])
                print_table(HEADER, rows[-1:])
    print()
    print(f"en-mix, {args.threads} threads on {os.cpu_count()} cores, {args.epochs} epochs")
    print_table(HEADER, rows)


HEADER = ["config", "seed", "private rows", "Mw/s", "analogy%", "ws353"]


if __name__ == "__main__":
    main()
