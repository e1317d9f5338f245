"""Corpus stage: stream text files, tokenize, encode to int32 token ids per split.

Outputs (in the stage directory):
    tokens-{split}.npy     int32 [N]       token ids, memory-mappable
    sentences-{split}.npy  int64 [S + 1]   sentence start offsets into tokens-{split}.npy
    words.tsv              word<TAB>train count, one line per id, in id order
    corpus.json            counts and facts (lines, tokens, replaced bytes, ...)
    builtin.txt, builtin-analogies.txt   only for the built-in corpus

Ids are ordered by training-split count, descending, ties broken by first appearance. So the
vocabulary stage's `min_count` cut is a prefix of the ids: id < V is in the vocabulary, and no
corpus-sized remapping is ever needed downstream.

Splits: one sentence per line; a line whose index (over all input files, counted from 0)
is 0 modulo `heldout_every` goes to "test", 1 modulo it to "valid", the rest to "train", unless
`valid_path`/`test_path` give those splits explicitly.
"""
from __future__ import annotations

import bz2
import glob
import gzip
import itertools
import lzma
import os
import re
from collections import defaultdict
from pathlib import Path

import numpy as np
from numba import njit

from pipeline.store import NpyAppender, atomic_path, load_npy, read_json
from stages import builtin_corpus
from stages.errors import InputError

BUILTIN = "@builtin"
SPLITS = ("train", "valid", "test")
READ_BYTES = 1 << 22
# word2vec.c ends words at space, tab and newline only, and drops carriage returns.
# Unicode whitespace that str.split() splits on but word2vec.c keeps inside words: it is
# swapped for private-use characters while splitting and swapped back in words.tsv.
OTHER_WHITESPACE = re.compile("[\x0b\x0c\x1c-\x1f\x85\xa0\u1680\u2000-\u200a\u2028\u2029"
                              "\u202f\u205f\u3000]")
PROTECT = {chr(c): chr(0xF0000 + c) for c in
           [0x0B, 0x0C, *range(0x1C, 0x20), 0x85, 0xA0, 0x1680, *range(0x2000, 0x200B),
            0x2028, 0x2029, 0x202F, 0x205F, 0x3000]}
UNPROTECT = {ord(v): k for k, v in PROTECT.items()}
ASCII_OTHER_WHITESPACE = "\x0b\x0c\x1c\x1d\x1e\x1f"
WORD_PATTERN = re.compile(r"[^\W_]+(?:['\u2019][^\W_]+)*")
UNDECODABLE = re.compile("[\udc80-\udcff]")


def resolve_paths(patterns) -> list[Path]:
    """Files named by paths, directories (all files below, sorted) and globs, in order."""
    files: list[Path] = []
    for pattern in patterns:
        if any(ch in pattern for ch in "*?["):
            matches = sorted(Path(p) for p in glob.glob(pattern, recursive=True))
            found = [p for p in matches if p.is_file()]
        elif os.path.isdir(pattern):
            found = sorted(p for p in Path(pattern).rglob("*")
                           if p.is_file() and not p.name.startswith("."))
        elif os.path.isfile(pattern):
            found = [Path(pattern)]
        else:
            raise InputError(f"corpus path {pattern!r} does not exist; set corpus.path to a "
                             f"file, a directory or a glob")
        if not found:
            raise InputError(f"corpus path {pattern!r} matches no files")
        files += found
    return files


def open_binary(path: Path):
    opener = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}.get(path.suffix, open)
    return opener(path, "rb")


def decode(raw: bytes) -> tuple[str, int]:
    """UTF-8 text with each undecodable byte replaced by U+FFFD, and how many there were."""
    try:
        return raw.decode("utf-8"), 0
    except UnicodeDecodeError:
        text = raw.decode("utf-8", errors="surrogateescape")
        return UNDECODABLE.subn("\ufffd", text)


def read_pieces(path: Path):
    """Yield (bytes, ends_line) pieces of a file in bounded memory. A piece ends at a newline
    or, inside a line longer than the read size, at a space or tab (never inside a UTF-8
    character or a word)."""
    carry = b""
    try:
        with open_binary(path) as handle:
            while block := handle.read(READ_BYTES):
                data = carry + block
                cut = data.rfind(b"\n")
                if cut < 0:
                    cut = max(data.rfind(b" "), data.rfind(b"\t"))
                if cut < 0:
                    carry = data
                    continue
                yield data[:cut + 1], data[cut] == 0x0A
                carry = data[cut + 1:]
    except (OSError, EOFError, lzma.LZMAError) as err:
        raise InputError(f"cannot read {path}: {err} (a truncated or corrupt file?)") from None
    yield carry, True   # the last line, with or without its trailing newline


@njit(cache=True)
def tokens_per_line(raw, line_count):
    """raw uint8 [n] -> int64 [line_count]: whitespace tokens on each line, counted as
    word2vec.c splits: space, tab and newline separate; carriage returns are invisible."""
    counts = np.zeros(line_count, dtype=np.int64)
    line, in_token = 0, False
    for byte in raw:
        if byte == 13:
            continue
        if byte == 10 or byte == 32 or byte == 9:
            in_token = False
            if byte == 10:
                line += 1
        elif not in_token:
            in_token = True
            counts[line] += 1
    return counts


def tokens_per_line_reference(raw, line_count):
    """Plain NumPy twin of tokens_per_line (the truth the kernel is tested against)."""
    data = raw[raw != 13]
    separator = (data == 32) | (data == 10) | (data == 9)
    starts = ~separator
    starts[1:] &= separator[:-1]
    line_of_byte = np.cumsum(data == 10)
    return np.bincount(line_of_byte[starts], minlength=line_count)[:line_count]


def prepare_text(text: str, kind: str, lowercase: bool) -> str:
    """Apply lowercasing and word2vec.c's separator rules to a block of text. After this,
    for the whitespace tokenizer, str.split() splits exactly where word2vec.c does: other
    Unicode whitespace (which str.split() would also split on) is masked first."""
    if lowercase:
        text = text.lower()
    if kind == "whitespace":
        if "\t" in text:
            text = text.replace("\t", " ")
        if "\r" in text:
            text = text.replace("\r", "")
        if not text.isascii() or any(c in text for c in ASCII_OTHER_WHITESPACE):
            text = OTHER_WHITESPACE.sub(lambda m: PROTECT[m.group()], text)
    return text


class SplitWriter:
    """Token ids and sentence offsets of one split, streamed to disk."""

    def __init__(self, tokens_path: Path, sentences_path: Path, max_length: int):
        self.tokens = NpyAppender(tokens_path, np.int32)
        self.starts = NpyAppender(sentences_path, np.int64)
        self.max_length = max_length
        self.written = 0          # tokens written so far
        self.sentence_start = 0   # where the open sentence began
        self.cuts = 0             # extra sentence breaks made inside over-long lines
        self.counts = np.zeros(0, dtype=np.int64)   # occurrences per id
        self.starts.append([0])

    def add_lines(self, ids: np.ndarray, lengths: np.ndarray, last_complete: bool) -> None:
        """Append whole lines (the last one possibly unfinished) as sentences, cutting any
        sentence at every max_length tokens. Empty lines make no sentence."""
        self.tokens.append(ids)
        self._count(ids)
        line_ends = self.written + np.cumsum(lengths)
        self.written += int(ids.size)
        closed = line_ends if last_complete else line_ends[:-1]
        bounds = np.unique(np.concatenate(([self.sentence_start], closed)))
        too_long = np.flatnonzero(np.diff(bounds) > self.max_length)
        if too_long.size:   # rare: only lines longer than max_length
            extra = [np.arange(bounds[i] + self.max_length, bounds[i + 1], self.max_length)
                     for i in too_long]
            bounds = np.sort(np.concatenate([bounds] + extra))
            self.cuts += sum(e.size for e in extra)
        ends = bounds[1:]
        self.sentence_start = int(bounds[-1])
        if not last_complete:   # cut the unfinished line's full blocks now
            tail = np.arange(self.sentence_start + self.max_length, self.written, self.max_length)
            ends = np.concatenate((ends, tail))
            self.cuts += tail.size
            self.sentence_start = int(ends[-1]) if ends.size else self.sentence_start
        self.starts.append(ends)

    def _count(self, ids: np.ndarray) -> None:
        if ids.size:
            block = np.bincount(ids)
            if block.size > self.counts.size:
                self.counts = np.concatenate((self.counts, np.zeros(block.size - self.counts.size, np.int64)))
            self.counts[:block.size] += block

    def close(self) -> tuple[int, int]:
        self.tokens.close()
        self.starts.close()
        return self.written, self.starts.length - 1


class Encoder:
    """Tokenize lines and give every new word the next id (first-appearance order)."""

    def __init__(self, cfg, writers: dict, heldout: dict[str, bool]):
        self.cfg = cfg
        self.ids = defaultdict(itertools.count().__next__)
        self.writers, self.heldout = writers, heldout
        self.line_index = 0
        self.replaced_bytes = 0

    def split_of_lines(self, count: int) -> np.ndarray:
        """Split number (index into SPLITS) of the next `count` lines."""
        index = self.line_index + np.arange(count)
        split = np.zeros(count, dtype=np.int8)
        every = self.cfg.heldout_every
        if every > 0:
            if self.heldout["test"]:
                split[index % every == 0] = SPLITS.index("test")
            if self.heldout["valid"]:
                split[index % every == 1 % every] = SPLITS.index("valid")
        return split

    def encode_file(self, path: Path, split: str | None = None) -> None:
        """Encode one file; `split` forces every line into that split."""
        for raw, ends_line in read_pieces(path):
            text, replaced = decode(raw)
            self.replaced_bytes += replaced
            text = prepare_text(text, self.cfg.tokenizer, self.cfg.lowercase)
            line_count = text.count("\n") + (0 if text.endswith("\n") or not text else 1)
            if line_count == 0:
                continue
            if self.cfg.tokenizer == "whitespace":   # one split() call for the whole piece
                words = text.split()
                lengths = tokens_per_line(np.frombuffer(raw, dtype=np.uint8), line_count)
            else:
                lines = text.split("\n")[:line_count]
                per_line = list(map(WORD_PATTERN.findall, lines))
                lengths = np.fromiter(map(len, per_line), dtype=np.int64, count=line_count)
                words = itertools.chain.from_iterable(per_line)
            ids = np.fromiter(map(self.ids.__getitem__, words), dtype=np.int32,
                              count=int(lengths.sum()))
            self._add_lines(ids, lengths, ends_line, split)

    def _add_lines(self, ids, lengths, last_complete: bool, split: str | None) -> None:
        if split is not None:
            self.writers[split].add_lines(ids, lengths, last_complete)
        else:
            line_split = self.split_of_lines(lengths.size)
            token_split = np.repeat(line_split, lengths)
            for number, name in enumerate(SPLITS):
                chosen = line_split == number
                if chosen.any():
                    # only the very last line of the piece can be unfinished
                    complete = last_complete or not chosen[-1]
                    self.writers[name].add_lines(ids[token_split == number], lengths[chosen], complete)
        self.line_index += lengths.size - (0 if last_complete else 1)


def _check_not_empty(sizes: dict, train_files: list[Path], heldout_every: int) -> None:
    if sizes["train"][0] > 0:
        return
    names = ", ".join(map(str, train_files))
    if sizes["valid"][0] + sizes["test"][0] > 0:
        raise InputError(f"every line of {names} went to the held-out splits; set "
                         f"corpus.heldout_every=0 (now {heldout_every}) or give more lines")
    raise InputError(f"the corpus {names} has no tokens; point corpus.path at text with one "
                     f"sentence per line")


def _renumber(tokens_path: Path, new_id: np.ndarray) -> None:
    """Rewrite token ids in place, chunk by chunk (constant memory)."""
    tokens = np.lib.format.open_memmap(tokens_path, mode="r+")
    for start in range(0, tokens.size, 1 << 24):
        block = tokens[start:start + (1 << 24)]
        block[:] = new_id[block]
    tokens.flush()
    del tokens


def _inputs_by_split(cfg, out) -> tuple[dict[str, list[Path]], dict]:
    """The files of each split; generates the built-in corpus when asked for it."""
    facts = {}
    if tuple(cfg.path) == (BUILTIN,):
        with atomic_path(out / "builtin.txt") as text, \
                atomic_path(out / "builtin-analogies.txt") as questions:
            facts["builtin"] = builtin_corpus.write_builtin_corpus(
                text, questions, cfg.builtin_sentences, cfg.builtin_seed)
        train = [out / "builtin.txt"]
    else:
        train = resolve_paths(cfg.path)
    files = {"train": train,
             "valid": resolve_paths(cfg.valid_path) if cfg.valid_path else [],
             "test": resolve_paths(cfg.test_path) if cfg.test_path else []}
    return files, facts


def input_files(cfg) -> list[Path]:
    """The user's files this stage reads (for the runner's fingerprint); none for builtin."""
    paths = [] if tuple(cfg.path) == (BUILTIN,) else list(cfg.path)
    return resolve_paths(paths + list(cfg.valid_path) + list(cfg.test_path))


def run(cfg, inputs, out) -> dict:
    files, facts = _inputs_by_split(cfg, out.path)
    heldout = {split: not files[split] for split in ("valid", "test")}
    temps = {split: (out / f".tokens-{split}.npy.tmp-{os.getpid()}",
                     out / f".sentences-{split}.npy.tmp-{os.getpid()}") for split in SPLITS}
    writers = {split: SplitWriter(*temps[split], cfg.max_sentence_length) for split in SPLITS}
    encoder = Encoder(cfg, writers, heldout)
    for path in files["train"]:
        encoder.encode_file(path)
    for split in ("valid", "test"):
        for path in files[split]:
            encoder.encode_file(path, split)
    sizes = {split: writer.close() for split, writer in writers.items()}
    _check_not_empty(sizes, files["train"], cfg.heldout_every)
    words = list(encoder.ids)
    counts = np.zeros(len(words), dtype=np.int64)
    counts[:writers["train"].counts.size] = writers["train"].counts
    order = np.lexsort((np.arange(len(words)), -counts))     # count desc, then first seen
    new_id = np.empty(len(words), dtype=np.int32)
    new_id[order] = np.arange(len(words), dtype=np.int32)
    for split in SPLITS:
        _renumber(temps[split][0], new_id)
        os.replace(temps[split][0], out / f"tokens-{split}.npy")
        os.replace(temps[split][1], out / f"sentences-{split}.npy")
    table = "".join(f"{words[i]}\t{counts[i]}\n" for i in order)
    out.write_text("words.tsv", table.translate(UNPROTECT))
    facts.update({
        "files": [str(p) for split in SPLITS for p in files[split]],
        "lines": encoder.line_index, "types": len(words),
        "tokens": {split: sizes[split][0] for split in SPLITS},
        "sentences": {split: sizes[split][1] for split in SPLITS},
        "replaced_bytes": encoder.replaced_bytes,
        "cut_sentences": sum(writer.cuts for writer in writers.values()),
    })
    out.write_json("corpus.json", facts)
    return {"tokens": facts["tokens"], "types": len(words),
            "replaced_bytes": encoder.replaced_bytes}


# ----- readers for downstream stages -----

def load_split(corpus_dir: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(token ids, sentence offsets) of a split, memory-mapped."""
    return (load_npy(corpus_dir / f"tokens-{split}.npy", mmap=True),
            load_npy(corpus_dir / f"sentences-{split}.npy"))


def read_counts_tsv(path: Path) -> tuple[list[str], np.ndarray]:
    """word<TAB>count lines -> (words, counts). Split on "\\n" only: a word may hold any
    other character, as word2vec.c's tokens may."""
    with open(path, encoding="utf-8", newline="") as handle:
        text = handle.read()
    rows = [line.rsplit("\t", 1) for line in text.split("\n") if line]
    return [w for w, _ in rows], np.array([int(c) for _, c in rows], dtype=np.int64)


def load_words(corpus_dir: Path) -> tuple[list[str], np.ndarray]:
    """All corpus words in id order and their training counts."""
    return read_counts_tsv(corpus_dir / "words.tsv")


def load_facts(corpus_dir: Path) -> dict:
    return read_json(corpus_dir / "corpus.json")
