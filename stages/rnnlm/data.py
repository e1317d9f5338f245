"""The LM vocabulary and token streams.

LM vocabulary: the vocabulary stage's words (which are the corpus ids 0..K-1, most frequent
first), optionally capped at `max_vocab`, then `<unk>` and `<eos>`. A corpus that already
holds a literal `<unk>` (the Penn Treebank convention) or `<eos>` among the kept words uses
that word instead of adding one. Every other word maps to `<unk>`; `<eos>` follows each
sentence, so the model learns where sentences end (as the PyTorch example does).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stages.errors import InputError
from stages.vocab import build_huffman

UNK, EOS = "<unk>", "<eos>"


@dataclass(frozen=True)
class LmVocabulary:
    words: list[str]
    kept: int            # corpus ids below this are LM ids as they are
    unk: int
    eos: int

    @property
    def size(self) -> int:
        return len(self.words)

    def ids(self, words: list[str]) -> np.ndarray:
        index = {w: i for i, w in enumerate(self.words)}
        return np.array([index.get(w, self.unk) for w in words], dtype=np.int32)


def lm_vocabulary(vocab_words: list[str], max_vocab: int) -> LmVocabulary:
    kept = min(len(vocab_words), max_vocab) if max_vocab > 0 else len(vocab_words)
    words = list(vocab_words[:kept])
    specials = []
    for token in (UNK, EOS):
        if token not in words:
            words.append(token)
        specials.append(words.index(token))
    return LmVocabulary(words, kept, *specials)


def lm_stream(tokens: np.ndarray, offsets: np.ndarray, lm: LmVocabulary) -> np.ndarray:
    """Corpus ids of a split -> LM ids int32, `<eos>` after every sentence."""
    mapped = np.where(tokens < lm.kept, tokens, lm.unk).astype(np.int32)
    ends = np.asarray(offsets[1:], dtype=np.int64)
    return np.insert(mapped, ends, np.int32(lm.eos)).astype(np.int32)


def batchify(stream: np.ndarray, streams: int, split: str) -> np.ndarray:
    """[rows, B]: column b is the b-th contiguous piece of the stream (the tail that does
    not fill a row is dropped, as in the PyTorch example)."""
    rows = stream.size // streams
    if rows < 2:
        raise InputError(f"the {split} text has {stream.size} tokens: too few for "
                         f"{streams} parallel streams; lower rnnlm.batch_size or give more text")
    return np.ascontiguousarray(stream[:rows * streams].reshape(streams, rows).T)


def window_starts(rows: int, bptt: int) -> list[int]:
    return list(range(0, rows - 1, bptt))


def window(data: np.ndarray, start: int, bptt: int) -> tuple[np.ndarray, np.ndarray]:
    """(inputs, targets) int32 [T, B] of the window at `start` (the last may be shorter)."""
    length = min(bptt, data.shape[0] - 1 - start)
    return data[start:start + length], data[start + 1:start + 1 + length]


def unigram_counts(stream: np.ndarray, size: int) -> np.ndarray:
    return np.bincount(stream, minlength=size).astype(np.int64)


def lm_huffman(counts: np.ndarray):
    """Huffman codes over the LM vocabulary, built by the vocabulary stage's builder (its own
    tree has no `<unk>` or `<eos>`). The builder wants counts sorted descending, so the tree
    is built in frequency order and the rows are put back in LM id order.
    Returns codes uint8 [V, L], points int32 [V, L], lengths uint8 [V]."""
    counts = np.maximum(np.asarray(counts, dtype=np.int64), 1)
    order = np.argsort(-counts, kind="stable")
    codes, points, lengths = build_huffman(counts[order])
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    return codes[rank].copy(), points[rank].copy(), lengths[rank].copy()
