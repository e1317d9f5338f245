"""Writing and reading word2vec C format files: ours against gensim's KeyedVectors.

    python bench/vectors_io.py [--words 200000] [--dim 300] [--repeats 3]

Random vectors (normal, sigma 0.3, as trained ones are small) for `words` words of up to
12 letters, some non-ASCII. Each tool writes the text and the binary format, then reads its
own file back (save_word2vec_format / load_word2vec_format for gensim). Prints the best of
N runs of each, in seconds, and how many times faster ours is. Both write to the same
scratch directory; ours also fsyncs each file before renaming it into place (gensim does
neither), which the figures include.
"""
from __future__ import annotations

import argparse

import numpy as np

from common import print_table, scratch_dir, timed
from stages.vectors import Vectors


def random_vectors(words: int, dim: int) -> Vectors:
    rng = np.random.default_rng(0)
    names = [("wörd" if i % 7 == 0 else "word")[: 1 + i % 4] + str(i) for i in range(words)]
    return Vectors(names, (rng.standard_normal((words, dim)) * 0.3).astype(np.float32))


def gensim_keyed_vectors(vectors: Vectors):
    from gensim.models import KeyedVectors
    keyed = KeyedVectors(vectors.matrix.shape[1], dtype=np.float32)
    keyed.add_vectors(vectors.words, vectors.matrix)
    return keyed


def best(repeats: int, function) -> float:
    return min(timed(function)[0] for _ in range(repeats))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--words", type=int, default=200_000)
    parser.add_argument("--dim", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from gensim.models import KeyedVectors
    scratch = scratch_dir()
    ours = random_vectors(args.words, args.dim)
    theirs = gensim_keyed_vectors(ours)
    Vectors(["warm"], np.zeros((1, 2), np.float32)).save(scratch / "warm.txt")   # compile
    Vectors.load(scratch / "warm.txt")
    rows = []
    for binary, suffix in ((False, "txt"), (True, "bin")):
        ours_file, gensim_file = scratch / f"ours.{suffix}", scratch / f"gensim.{suffix}"
        write = [best(args.repeats, lambda: ours.save(ours_file, binary=binary)),
                 best(args.repeats, lambda: theirs.save_word2vec_format(str(gensim_file),
                                                                         binary=binary))]
        read = [best(args.repeats, lambda: Vectors.load(ours_file, binary=binary)),
                best(args.repeats, lambda: KeyedVectors.load_word2vec_format(str(gensim_file),
                                                                             binary=binary))]
        for what, (mine, peer) in ((f"write {suffix}", write), (f"read {suffix}", read)):
            rows.append([what, f"{mine:.2f}", f"{peer:.2f}", f"{peer / mine:.1f}x"])
    print(f"{args.words} words x {args.dim} dims, best of {args.repeats}")
    print_table(["", "ours s", "gensim s", "ours faster"], rows)


if __name__ == "__main__":
    main()
