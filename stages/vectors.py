"""Word vectors: the word2vec C text/binary formats, and similarity queries.

Usable without the pipeline:

    v = Vectors.load("vectors.bin")          # or .txt; files from gensim or word2vec.c
    v.most_similar("paris", n=10)
    v.analogy("man", "king", "woman")          # man : king :: woman : ?

Formats (as word2vec.c writes them): a header line "V D", then per word
    text:   word v1 v2 ... vD\\n
    binary: word<space><D little-endian float32><\\n>
Loading checks the header against the file's size before allocating anything, so a
truncated file or a lying header is a clear error, never a huge allocation.
"""
from __future__ import annotations

from functools import cached_property
from pathlib import Path

import numpy as np

from pipeline.store import atomic_path
from stages.errors import InputError

FLOAT32 = np.dtype("<f4")


class Vectors:
    """Words and their float32 vectors [V, D], with cosine-similarity queries."""

    def __init__(self, words: list[str], matrix: np.ndarray):
        if len(words) != matrix.shape[0]:
            raise ValueError(f"{len(words)} words but {matrix.shape[0]} vectors")
        self.words = list(words)
        self.matrix = np.ascontiguousarray(matrix, dtype=np.float32)
        self.index = {w: i for i, w in reversed(list(enumerate(self.words)))}

    @cached_property
    def unit(self) -> np.ndarray:
        """The vectors scaled to length 1 (zero vectors stay zero), made on first use: a
        second V x D copy that saving or converting a file never needs."""
        norms = np.linalg.norm(self.matrix, axis=1, keepdims=True)
        return self.matrix / np.where(norms > 0, norms, 1.0)

    def __len__(self) -> int:
        return len(self.words)

    def __contains__(self, word: str) -> bool:
        return word in self.index

    def __getitem__(self, word: str) -> np.ndarray:
        return self.matrix[self._id(word)]

    def _id(self, word: str) -> int:
        try:
            return self.index[word]
        except KeyError:
            raise KeyError(f"{word!r} is not in the vocabulary") from None

    # ----- queries -----

    def similarity(self, a: str, b: str) -> float:
        return float(self.unit[self._id(a)] @ self.unit[self._id(b)])

    def most_similar(self, positive=(), negative=(), n: int = 10, restrict: int | None = None):
        """Words nearest (cosine) to the mean of the unit vectors of `positive` minus
        `negative`, excluding the query words: [(word, similarity)]."""
        positive = [positive] if isinstance(positive, str) else list(positive)
        negative = [negative] if isinstance(negative, str) else list(negative)
        query = sum(self.unit[self._id(w)] for w in positive) - sum(
            (self.unit[self._id(w)] for w in negative), np.zeros(self.unit.shape[1]))
        candidates = self.unit[:restrict] if restrict else self.unit
        scores = candidates @ (query / max(np.linalg.norm(query), 1e-12))
        excluded = {self._id(w) for w in positive + negative}
        return self._top(scores, excluded, n)

    def _top(self, scores: np.ndarray, excluded: set[int], n: int):
        count = min(n + len(excluded), scores.size)
        best = np.argpartition(-scores, count - 1)[:count]
        best = best[np.argsort(-scores[best], kind="stable")]
        return [(self.words[i], float(scores[i])) for i in best if i not in excluded][:n]

    def analogy(self, a: str, b: str, c: str, n: int = 1, method: str = "add"):
        """a : b :: c : ?  method "add" (3CosAdd: b - a + c) or "mul" (3CosMul, Levy and
        Goldberg 2014: cos(x,b) cos(x,c) / (cos(x,a) + eps), cosines shifted to [0, 1])."""
        if method == "add":
            return self.most_similar(positive=[b, c], negative=[a], n=n)
        if method != "mul":
            raise ValueError(f"method must be 'add' or 'mul', not {method!r}")
        cos = [(self.unit @ self.unit[self._id(w)] + 1.0) / 2.0 for w in (a, b, c)]
        scores = cos[1] * cos[2] / (cos[0] + 1e-3)
        return self._top(scores, {self._id(w) for w in (a, b, c)}, n)

    def doesnt_match(self, words) -> str:
        """The word farthest from the mean of the others' unit vectors."""
        ids = [self._id(w) for w in words]
        mean = self.unit[ids].mean(axis=0)
        return words[int(np.argmin(self.unit[ids] @ mean))]

    # ----- files -----

    def save(self, path: Path, binary: bool | None = None) -> None:
        """word2vec C format; binary unless the name ends in .txt (or binary is given)."""
        path = Path(path)
        binary = path.suffix != ".txt" if binary is None else binary
        with atomic_path(path) as temp, open(temp, "wb") as handle:
            handle.write(f"{len(self.words)} {self.matrix.shape[1]}\n".encode())
            for word, row in zip(self.words, self.matrix):
                if binary:
                    handle.write(word.encode() + b" " + row.astype(FLOAT32).tobytes() + b"\n")
                else:
                    handle.write((word + " " + " ".join(f"{x:.6f}" for x in row) + "\n").encode())

    @classmethod
    def load(cls, path: Path, binary: bool | None = None) -> "Vectors":
        """Read a word2vec C format file (text or binary; guessed from the content)."""
        path = Path(path)
        try:
            data = path.read_bytes()
        except OSError as err:
            raise InputError(f"cannot read vectors file {path}: {err}") from None
        count, dim, start = _parse_header(data, path)
        if binary is None:
            binary = _looks_binary(data[start:start + 4 * dim + 200])
        reader = _read_binary if binary else _read_text
        words, matrix = reader(data, start, count, dim, path)
        return cls(words, matrix)


def _parse_header(data: bytes, path: Path) -> tuple[int, int, int]:
    end = data.find(b"\n", 0, 200)
    fields = data[:end].split() if end >= 0 else []
    if len(fields) != 2 or not all(f.isdigit() for f in fields):
        raise InputError(f"{path}: not a word2vec file (the first line must be 'COUNT DIMS')")
    count, dim = int(fields[0]), int(fields[1])
    if dim == 0 and count > 0:
        raise InputError(f"{path}: header says {count} words of 0 dimensions")
    return count, dim, end + 1


def _looks_binary(sample: bytes) -> bool:
    try:
        sample.decode("ascii")
    except UnicodeDecodeError:
        return True
    return any(b < 9 for b in sample)


def _read_binary(data: bytes, start: int, count: int, dim: int, path: Path):
    row_bytes = 4 * dim
    if count * (row_bytes + 2) > len(data) - start:      # each word: >= 1 byte + space
        raise InputError(f"{path}: header claims {count} vectors of {dim} dims, more than the "
                         f"file's {len(data)} bytes hold (truncated?)")
    words, rows, pos = [], np.empty((count, dim), dtype=np.float32), start
    for i in range(count):
        while pos < len(data) and data[pos] in b"\n\r":   # gensim/C put a newline per row
            pos += 1
        space = data.find(b" ", pos, pos + 10000)
        if space < 0 or space + 1 + row_bytes > len(data):
            raise InputError(f"{path}: vector {i + 1} of {count} is truncated or malformed")
        words.append(data[pos:space].decode("utf-8", errors="replace"))
        rows[i] = np.frombuffer(data, dtype=FLOAT32, count=dim, offset=space + 1)
        pos = space + 1 + row_bytes
    return words, rows


def _read_text(data: bytes, start: int, count: int, dim: int, path: Path):
    lines = data[start:].decode("utf-8", errors="replace").split("\n")
    lines = [line for line in lines if line.strip()]
    if len(lines) < count:
        raise InputError(f"{path}: header claims {count} vectors, the file has {len(lines)}")
    words, rows = [], np.empty((count, dim), dtype=np.float32)
    for i, line in enumerate(lines[:count]):
        parts = line.rstrip().split(" ")
        if len(parts) != dim + 1:
            raise InputError(f"{path}: line {i + 2} has {len(parts) - 1} numbers, expected {dim}")
        try:
            rows[i] = np.array(parts[1:], dtype=np.float32)
        except ValueError:
            raise InputError(f"{path}: line {i + 2} holds a value that is not a number") from None
        words.append(parts[0])
    return words, rows
