"""Corpus + vocabulary stages against gensim's build_vocab on en-mix (5.4M words).

    python bench/vocab_vs_gensim.py [--repeats 3]

Both count the whole corpus (no held-out lines) with min_count 5. Ours: the corpus stage
(read, tokenize, encode to int32 ids, write) and the vocabulary stage (cut, Huffman tree).
gensim: Word2Vec(...).build_vocab(corpus_file=...), which scans, counts, sorts, prunes and
builds its Huffman tree for hierarchical softmax (hs=1). Prints the best of N runs each.
"""
from __future__ import annotations

import argparse
import shutil

from common import concatenated_en_mix, print_table, scratch_dir, timed
from pipeline.config import CorpusConfig, VocabConfig
from pipeline.store import StageDir
from stages import corpus, vocab


def ours(text_path, work) -> int:
    if work.exists():
        shutil.rmtree(work)
    corpus.run(CorpusConfig(path=(str(text_path),), heldout_every=0), {}, StageDir(work / "corpus", quiet=True))
    summary = vocab.run(VocabConfig(min_count=5), {"corpus": work / "corpus"}, StageDir(work / "vocab", quiet=True))
    return summary["vocab_size"]


def gensim_build_vocab(text_path) -> int:
    from gensim.models import Word2Vec
    model = Word2Vec(vector_size=100, min_count=5, hs=1, negative=0, workers=2)
    model.build_vocab(corpus_file=str(text_path))
    return len(model.wv)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    scratch = scratch_dir()
    text_path = concatenated_en_mix(scratch)
    ours(text_path, scratch / "warm")          # compile the Numba kernels once (cached)
    ours_times, gensim_times = [], []
    for _ in range(args.repeats):
        seconds, ours_v = timed(ours, text_path, scratch / "run")
        ours_times.append(seconds)
        seconds, gensim_v = timed(gensim_build_vocab, text_path)
        gensim_times.append(seconds)
    best_ours, best_gensim = min(ours_times), min(gensim_times)
    print_table(["tool", "vocabulary", "best seconds", "all runs"],
                [["ours: corpus+vocab", ours_v, f"{best_ours:.2f}", " ".join(f"{t:.2f}" for t in ours_times)],
                 ["gensim build_vocab", gensim_v, f"{best_gensim:.2f}", " ".join(f"{t:.2f}" for t in gensim_times)]])
    print(f"speed ratio (gensim time / our time): {best_gensim / best_ours:.2f}x")


if __name__ == "__main__":
    main()
