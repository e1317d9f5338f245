"""word2vec with many threads: how a thread's changes to its private output rows are merged.

    python bench/word2vec_many_threads.py [--threads 16] [--merge-every 16384]
                                          [--configs sg-hs,cbow-hs,sg-ns,cbow-ns]
                                          [--epochs 5] [--seeds 1]

Trains ours on en-mix (the settings of bench/word2vec_vs_gensim.py) with `threads` threads
twice per configuration and seed: with each merge's change divided by the row's holders
less one (the kernels' rule from three threads on), and with changes added whole (the rule
before it), then prints words/s and the quality figures of both.
The private rows merge every --merge-every centre words per thread (HS: 256 rows nearest
the root; NS: the 256 most frequent words), for both rules. On a machine with fewer cores
than threads, the threads take turns on the cores, and a merge interval far longer than
what a thread trains in one turn makes each thread's merge window span the other threads'
turns, so that as many windows overlap as on a machine with a core per thread.
Words/s are then not those of such a machine; the quality figures are the point.
"""
from __future__ import annotations

import argparse
import os

from common import WORD2VEC_CONFIGS, concatenated_en_mix, print_table, scratch_dir, word2vec_inputs


def train_with_rule(inputs: dict, out_dir, model: str, loss: str, epochs: int, threads: int,
                    seed: int, merge_every: int, divided: bool):
    """Runs in a child process: train_ours with the merge rule and interval set."""
    from stages.word2vec import cpu
    from word2vec_vs_gensim import train_ours
    if not divided:
        cpu.HOLDER_COUNTING_THREADS = threads + 1          # holders never counted: whole
    cpu.NS_MERGE_EVERY = merge_every
    cpu.hs_private_rows = lambda dim, count: (cpu.HS_MANY_THREADS_ROWS, merge_every)
    return train_ours(inputs, out_dir, model, loss, epochs, threads, 0.0, seed)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--merge-every", type=int, default=16384)
    parser.add_argument("--configs", default=",".join(WORD2VEC_CONFIGS))
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seeds", type=int, default=1)
    args = parser.parse_args()
    # Numba's thread pool is sized when it starts, from this variable: the children
    # inherit it
    os.environ["NUMBA_NUM_THREADS"] = str(max(args.threads, os.cpu_count() or 1))
    from word2vec_vs_gensim import in_child, quality
    scratch = scratch_dir()
    inputs = word2vec_inputs(scratch, [concatenated_en_mix(scratch)])
    rows = []
    for name in args.configs.split(","):
        model, loss = WORD2VEC_CONFIGS[name]
        for seed in range(1, args.seeds + 1):
            row = [name, str(seed)]
            for divided in (True, False):
                words_per_second, _, _, vectors = in_child(
                    train_with_rule, inputs, scratch / f"{name}-{divided}", model, loss,
                    args.epochs, args.threads, seed, args.merge_every, divided)
                _, accuracy, wordsim = quality(vectors)
                row += [f"{words_per_second / 1e6:.3f}", f"{100 * accuracy:.1f}",
                        f"{wordsim:.3f}"]
            rows.append(row)
            print_table(HEADER, rows[-1:])
    print()
    print(f"en-mix, {args.threads} threads on {os.cpu_count()} cores, private rows merged "
          f"every {args.merge_every} centre words, {args.epochs} epochs")
    print_table(HEADER, rows)


HEADER = ["config", "seed", "divided Mw/s", "divided analogy%", "divided ws353",
          "whole Mw/s", "whole analogy%", "whole ws353"]


if __name__ == "__main__":
    main()
