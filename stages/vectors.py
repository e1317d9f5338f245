"""Word vectors: the word2vec C text/binary formats, and similarity queries.

Usable without the pipeline:

    v = Vectors.load("vectors.bin")          # or .txt; files from gensim or word2vec.c
    v.most_similar("paris", n=10)
    v.analogy("man", "king", "woman")          # man : king :: woman : ?

Formats (as word2vec.c writes them): a header line "V D", then per word
    text:   word v1 v2 ... vD\\n
    binary: word<space><D little-endian float32><\\n>
A file whose first row is a word and D numbers is text, any other binary. Loading checks
the header against the file's size before allocating anything, so a truncated file or a
lying header is a clear error, never a huge allocation. Text is written and read by
kernels (Python's "%.6f" and float() exactly: tests compare them with the reference).
"""
from __future__ import annotations

import math
import mmap
import os
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path

import numpy as np
from numba import njit

from pipeline.store import atomic_path
from stages.errors import InputError

FLOAT32 = np.dtype("<f4")
MAX_WORD_BYTES = 10000          # a longer "word" means a malformed file
# Text files hold each value as Python's f"{x:.6f}" writes it (word2vec.c: "%lf"). The
# kernel that writes them handles |x| < TEXT_KERNEL_LIMIT, as many digits as an int64 holds
# with room to spare; rows with larger or non-finite values take the reference.
TEXT_KERNEL_LIMIT = 1e12
TEXT_SCALE = 1_000_000                      # 10 ** 6 decimals
TEXT_VALUE_BYTES = 1 + 12 + 1 + 6 + 1       # sign, integer digits, point, decimals, space
# Values formatted per kernel call: bounds the text buffer (at most 22 MB, half of it
# touched) on any vocabulary; the old writer's lines took next to nothing, and a 4M-value
# buffer had added about 20 MiB to training's peak memory (bench/RESULTS.md).
TEXT_CHUNK_VALUES = 1 << 20


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
            if binary:
                for word, row in zip(self.words, self.matrix):
                    handle.write(word.encode() + b" " + row.astype(FLOAT32).tobytes() + b"\n")
            else:
                write_text_rows(handle, self.words, self.matrix)

    @classmethod
    def load(cls, path: Path, binary: bool | None = None, limit: int | None = None) -> "Vectors":
        """Read a word2vec C format file (text or binary; guessed from the content); with
        `limit`, only its first `limit` vectors (the most frequent ones, in the files
        word2vec.c and gensim write). The file is mapped, not copied: beyond the page
        cache, which the system can drop, only the vectors loaded take memory."""
        path = Path(path)
        try:
            with open(path, "rb") as handle, mapped(handle) as data:
                count, dim, start = _parse_header(data, path)
                count = count if limit is None else min(count, max(limit, 0))
                if binary is None:
                    binary = not _first_row_is_text(data, start, dim)
                reader = _read_binary if binary else _read_text
                words, matrix = reader(data, start, count, dim, path)
        except OSError as err:
            raise InputError(f"cannot read vectors file {path}: {err}") from None
        return cls(words, matrix)


@contextmanager
def mapped(handle):
    """The open file's bytes, memory-mapped read-only (an empty file cannot be mapped)."""
    if os.fstat(handle.fileno()).st_size == 0:
        yield b""
        return
    with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
        yield data


def write_text_rows(handle, words: list[str], matrix: np.ndarray) -> None:
    """The text format's lines ("word v1 ... vD"), written a chunk of rows at a time:
    formatting 60M values in Python took 26 s, the kernel does it in a fraction of that."""
    rows_per_chunk = max(1, TEXT_CHUNK_VALUES // max(matrix.shape[1], 1))
    for first in range(0, len(words), rows_per_chunk):
        names = [word.encode() for word in words[first:first + rows_per_chunk]]
        chunk = matrix[first:first + rows_per_chunk]
        if np.all(np.abs(chunk) < TEXT_KERNEL_LIMIT):
            handle.write(text_rows(names, chunk))
        else:
            handle.write(text_rows_reference(names, chunk))


def text_rows(names: list[bytes], chunk: np.ndarray) -> memoryview:
    """The lines of `chunk` (float32 [n, D], every |value| < TEXT_KERNEL_LIMIT) as bytes."""
    word_bytes = np.frombuffer(b"".join(names), np.uint8)
    word_ends = np.cumsum([len(name) for name in names], dtype=np.int64)
    out = np.empty(word_bytes.size + chunk.shape[0] * (1 + chunk.shape[1] * TEXT_VALUE_BYTES),
                   np.uint8)
    return memoryview(out[:format_text_rows(word_bytes, word_ends, chunk, out)])


def text_rows_reference(names: list[bytes], chunk: np.ndarray) -> bytes:
    """What text_rows writes, the obvious way (and for any value)."""
    return b"".join(name + b" " + " ".join(f"{x:.6f}" for x in row).encode() + b"\n"
                    for name, row in zip(names, chunk))


@njit(cache=True)
def format_text_rows(word_bytes, word_ends, chunk, out):
    """Write row i as word i (word_bytes[word_ends[i-1]:word_ends[i]]), then " %.6f" per
    value, then a newline, into out (uint8, large enough); returns the bytes written.
    x * 10**6 is exact in float64 for any float32 x (a 24-bit mantissa times 15625 fits in
    53 bits), so rounding it half to even gives exactly Python's correctly rounded %.6f."""
    position, word_start = 0, 0
    digits = np.empty(20, np.uint8)
    for i in range(chunk.shape[0]):
        for b in range(word_start, word_ends[i]):
            out[position] = word_bytes[b]
            position += 1
        word_start = word_ends[i]
        for k in range(chunk.shape[1]):
            out[position] = 32                              # space
            position = format_fixed6(np.float64(chunk[i, k]), out, position + 1, digits)
        out[position] = 10                                  # newline
        position += 1
    return position


@njit(cache=True, inline="always")
def format_fixed6(value, out, position, digits):
    """Write float64 `value` (|value| < TEXT_KERNEL_LIMIT) as "%.6f" into out at position;
    returns the position after it. digits: uint8 scratch for the integer part."""
    if value < 0 or (value == 0 and math.copysign(1.0, value) < 0):
        out[position] = 45                                  # "-", also for -0.0 as Python
        position += 1
    scaled = np.int64(np.rint(abs(value) * TEXT_SCALE))
    whole, fraction = scaled // TEXT_SCALE, scaled % TEXT_SCALE
    count = 0
    while True:                                             # at least one integer digit
        digits[count] = 48 + whole % 10
        whole //= 10
        count += 1
        if whole == 0:
            break
    for d in range(count - 1, -1, -1):
        out[position] = digits[d]
        position += 1
    out[position] = 46                                      # "."
    for d in range(6, 0, -1):
        out[position + d] = 48 + fraction % 10
        fraction //= 10
    return position + 7


def _parse_header(data: bytes, path: Path) -> tuple[int, int, int]:
    end = data.find(b"\n", 0, 200)
    fields = data[:end].split() if end >= 0 else []
    if len(fields) != 2 or not all(f.isdigit() for f in fields):
        raise InputError(f"{path}: not a word2vec file (the first line must be 'COUNT DIMS')")
    count, dim = int(fields[0]), int(fields[1])
    if dim == 0 and count > 0:
        raise InputError(f"{path}: header says {count} words of 0 dimensions")
    return count, dim, end + 1


def _first_row_is_text(data: bytes, start: int, dim: int) -> bool:
    """Whether the first row is a text line: a word and `dim` numbers. (Raw float32 bytes
    that split into `dim` numbers and hold no newline are not a risk worth naming; non-ASCII
    words, which a test on the bytes alone would take for binary, are.)"""
    window = min(len(data), start + MAX_WORD_BYTES + 64 * dim)    # a binary file may have
    end = data.find(b"\n", start, window)                         # no newline at all
    fields = data[start:end if end >= 0 else window].rstrip().split(b" ")
    if len(fields) != dim + 1:
        return False
    try:
        [float(field) for field in fields[1:]]
    except ValueError:
        return False
    return True


def _read_binary(data: bytes, start: int, count: int, dim: int, path: Path):
    row_bytes = 4 * dim
    if count * (row_bytes + 2) > len(data) - start:      # each word: >= 1 byte + space
        raise InputError(f"{path}: header claims {count} vectors of {dim} dims, more than the "
                         f"file's {len(data)} bytes hold (truncated?)")
    words, rows, pos = [], np.empty((count, dim), dtype=np.float32), start
    for i in range(count):
        while pos < len(data) and data[pos] in b"\n\r":   # gensim/C put a newline per row
            pos += 1
        space = data.find(b" ", pos, pos + MAX_WORD_BYTES)
        if space < 0 or space + 1 + row_bytes > len(data):
            raise InputError(f"{path}: vector {i + 1} of {count} is truncated or malformed")
        words.append(data[pos:space].decode("utf-8", errors="replace"))
        rows[i] = np.frombuffer(data, dtype=FLOAT32, count=dim, offset=space + 1)
        pos = space + 1 + row_bytes
    return words, rows


def _read_text(data: bytes, start: int, count: int, dim: int, path: Path):
    """The text format, parsed by a kernel when every line is in the canonical form and
    every number converts exactly by its fast path; otherwise (and for every error message)
    the reference: parsing 60M values line by line in Python took 19 s."""
    if count * (2 * dim + 1) > len(data) - start:       # no room for count lines: an error
        return _read_text_reference(data, start, count, dim, path)
    matrix, spans = np.empty((count, dim), np.float32), np.empty((count, 2), np.int64)
    if parse_text_rows(np.frombuffer(data, np.uint8), start, count, dim, matrix, spans) < count:
        return _read_text_reference(data, start, count, dim, path)
    return [data[a:b].decode("utf-8", errors="replace") for a, b in spans], matrix


# 10 ** e as exact float64 values (every one up to 10 ** 22 is representable)
EXACT_POWERS_OF_TEN = np.array([float(10 ** e) for e in range(23)])
# A decimal mantissa below this stays below 2 ** 53 after one more digit: exact in float64.
MANTISSA_LIMIT = 900_000_000_000_000


@njit(cache=True)
def parse_text_rows(data, start, count, dim, matrix, spans):
    """Parse `count` lines "word v1 ... vD" (single spaces; a trailing space and a \r are
    allowed) from data[start:] (uint8) into matrix (float32 [count, D]) and spans (int64
    [count, 2]: each word's byte range). Returns the lines parsed: fewer than count when
    a line is not in that form or holds a number parse_decimal cannot convert exactly."""
    position, end = start, data.size
    for i in range(count):
        word_start = position
        while position < end and data[position] != 32 and data[position] != 10:
            position += 1
        if position == word_start or position >= end or data[position] != 32:
            return i
        spans[i, 0], spans[i, 1] = word_start, position
        for k in range(dim):
            value, position = parse_decimal(data, position + 1)
            if position < 0:
                return i
            matrix[i, k] = value
            if k < dim - 1 and (position >= end or data[position] != 32):
                return i
        if position < end and data[position] == 32:
            position += 1
        if position < end and data[position] == 13:
            position += 1
        if position < end:
            if data[position] != 10:
                return i
            position += 1
    return count


@njit(cache=True, inline="always")
def parse_decimal(data, position):
    """(value, position after it) of the number [+-]digits[.digits][(e|E)[+-]digits] at
    data[position], or (0, -1) if there is none or it has too many digits for the exact
    path. Exact: a mantissa below 2 ** 53 times or over an exact power of ten up to 10 ** 22
    is one correctly rounded float64 operation, i.e. float(token), as the reference."""
    end = data.size
    negative = position < end and data[position] == 45
    if position < end and (data[position] == 45 or data[position] == 43):
        position += 1
    mantissa, exponent, digits = np.int64(0), 0, 0
    after_point = False
    while position < end:
        byte = data[position]
        if byte == 46 and not after_point:
            after_point = True
        elif 48 <= byte <= 57:
            if mantissa >= MANTISSA_LIMIT:
                return 0.0, -1
            mantissa = mantissa * 10 + (byte - 48)
            exponent -= 1 if after_point else 0
            digits += 1
        else:
            break
        position += 1
    if digits == 0:
        return 0.0, -1
    if position < end and (data[position] == 101 or data[position] == 69):
        position += 1
        sign = -1 if position < end and data[position] == 45 else 1
        if position < end and (data[position] == 45 or data[position] == 43):
            position += 1
        written, exponent_digits = 0, 0
        while position < end and 48 <= data[position] <= 57 and written < 1000:
            written = written * 10 + (data[position] - 48)
            exponent_digits += 1
            position += 1
        if exponent_digits == 0 or written >= 1000:
            return 0.0, -1
        exponent += sign * written
    value = np.float64(mantissa)
    if mantissa != 0:
        if 0 <= exponent <= 22:
            value *= EXACT_POWERS_OF_TEN[exponent]
        elif -22 <= exponent < 0:
            value /= EXACT_POWERS_OF_TEN[-exponent]
        else:
            return 0.0, -1
    return -value if negative else value, position


def _read_text_reference(data: bytes, start: int, count: int, dim: int, path: Path):
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
