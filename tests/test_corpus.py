import bz2
import gzip
import lzma

import numpy as np
import pytest

from pipeline.config import CorpusConfig
from pipeline.store import StageDir
from stages import corpus
from stages.errors import InputError
from tests.conftest import write_lines


def run_corpus(tmp_path, path, **overrides):
    settings = {"path": (str(path),), "heldout_every": 0, **overrides}
    out = StageDir(tmp_path / "out")
    corpus.run(CorpusConfig(**settings), {}, out)
    return out.path


def sentences(out_dir, split="train"):
    """The split's sentences as lists of words (decoded back through words.tsv)."""
    words, _ = corpus.load_words(out_dir)
    tokens, offsets = corpus.load_split(out_dir, split)
    return [[words[t] for t in tokens[a:b]] for a, b in zip(offsets[:-1], offsets[1:])]


def test_round_trip_and_ids_ordered_by_count(tmp_path):
    path = write_lines(tmp_path / "a.txt", ["b a c", "a b", "a"])
    out = run_corpus(tmp_path, path)
    assert sentences(out) == [["b", "a", "c"], ["a", "b"], ["a"]]
    words, counts = corpus.load_words(out)
    assert words == ["a", "b", "c"] and counts.tolist() == [3, 2, 1]


def test_ties_keep_first_appearance_order(tmp_path):
    path = write_lines(tmp_path / "a.txt", ["z y x", "x y z"])
    words, _ = corpus.load_words(run_corpus(tmp_path, path))
    assert words == ["z", "y", "x"]


def test_no_trailing_newline_crlf_tabs_and_blank_lines(tmp_path):
    path = tmp_path / "a.txt"
    path.write_bytes(b"one two\r\n\r\nthree\tfour  five\r\nsix")
    assert sentences(run_corpus(tmp_path, path)) == [["one", "two"], ["three", "four", "five"], ["six"]]


def test_whitespace_tokenizer_splits_only_where_word2vec_c_does(tmp_path):
    # word2vec.c splits on space, tab and newline; \x0b, \x0c and no-break space are word bytes
    path = tmp_path / "a.txt"
    path.write_text("a\x0bb c\u00a0d e\x0cf\n", encoding="utf-8")
    assert sentences(run_corpus(tmp_path, path)) == [["a\x0bb", "c\u00a0d", "e\x0cf"]]


def test_invalid_utf8_is_replaced_and_counted(tmp_path):
    path = tmp_path / "a.txt"
    path.write_bytes(b"good w\xffrd \xfe\xfd\nok\n")
    out = run_corpus(tmp_path, path)
    assert sentences(out) == [["good", "w\ufffdrd", "\ufffd\ufffd"], ["ok"]]
    assert corpus.load_facts(out)["replaced_bytes"] == 3


def test_empty_file_is_a_clear_error(tmp_path):
    path = tmp_path / "empty.txt"
    path.write_bytes(b"\n\n  \n")
    with pytest.raises(InputError, match="has no tokens"):
        run_corpus(tmp_path, path)


def test_missing_path_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        run_corpus(tmp_path, tmp_path / "nope.txt")
    with pytest.raises(InputError, match="matches no files"):
        run_corpus(tmp_path, tmp_path / "*.nothing")


def test_a_million_token_line_is_cut_into_sentences(tmp_path, monkeypatch):
    monkeypatch.setattr(corpus, "READ_BYTES", 1 << 16)   # the line spans many reads
    rng = np.random.default_rng(0)
    line = " ".join(f"w{i}" for i in rng.integers(0, 50, size=1_000_000))
    path = tmp_path / "long.txt"
    path.write_text(line + "\nshort line\n")
    out = run_corpus(tmp_path, path, max_sentence_length=10000)
    tokens, offsets = corpus.load_split(out, "train")
    lengths = np.diff(offsets)
    assert lengths.tolist() == [10000] * 100 + [2]
    words, _ = corpus.load_words(out)
    assert [words[t] for t in tokens[:5]] == line.split()[:5]
    assert [words[t] for t in tokens[999_998:1_000_000]] == line.split()[-2:]
    assert corpus.load_facts(out)["cut_sentences"] == 99


@pytest.mark.parametrize("opener, suffix", [(gzip.open, ".gz"), (bz2.open, ".bz2"), (lzma.open, ".xz")])
def test_compressed_input_equals_plain(tmp_path, opener, suffix):
    text = "the cat sat\non the mat\n" * 50
    with opener(tmp_path / f"a.txt{suffix}", "wt") as handle:
        handle.write(text)
    (tmp_path / "plain.txt").write_text(text)
    packed = sentences(run_corpus(tmp_path / "x", tmp_path / f"a.txt{suffix}"))
    plain = sentences(run_corpus(tmp_path / "y", tmp_path / "plain.txt"))
    assert packed == plain and len(packed) == 100


def test_truncated_compressed_file_is_a_clear_error(tmp_path):
    with gzip.open(tmp_path / "a.gz", "wt") as handle:
        handle.write("word " * 100000)
    data = (tmp_path / "a.gz").read_bytes()
    (tmp_path / "a.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="truncated or corrupt"):
        run_corpus(tmp_path, tmp_path / "a.gz")


def test_directories_and_globs_read_files_in_sorted_order(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    write_lines(folder / "b.txt", ["second"])
    write_lines(folder / "a.txt", ["first"])
    assert sentences(run_corpus(tmp_path / "d", folder)) == [["first"], ["second"]]
    assert sentences(run_corpus(tmp_path / "g", folder / "*.txt")) == [["first"], ["second"]]


def test_heldout_lines_by_index(tmp_path):
    path = write_lines(tmp_path / "a.txt", [f"line{i}" for i in range(10)])
    out = run_corpus(tmp_path, path, heldout_every=4)
    assert sentences(out, "test") == [["line0"], ["line4"], ["line8"]]
    assert sentences(out, "valid") == [["line1"], ["line5"], ["line9"]]
    assert sentences(out, "train") == [["line2"], ["line3"], ["line6"], ["line7"]]


def test_explicit_valid_and_test_files(tmp_path):
    train = write_lines(tmp_path / "train.txt", [f"line{i}" for i in range(6)])
    valid = write_lines(tmp_path / "valid.txt", ["v w"])
    out = run_corpus(tmp_path, train, heldout_every=3, valid_path=(str(valid),))
    assert sentences(out, "valid") == [["v", "w"]]
    assert sentences(out, "test") == [["line0"], ["line3"]]
    words, counts = corpus.load_words(out)
    assert counts[words.index("v")] == 0    # counted on the training split only


def test_words_tokenizer_and_lowercase(tmp_path):
    path = write_lines(tmp_path / "a.txt", ["Hello, World! It's John's dog_house 42."])
    out = run_corpus(tmp_path, path, tokenizer="words", lowercase=True)
    assert sentences(out) == [["hello", "world", "it's", "john's", "dog", "house", "42"]]


def test_builtin_corpus_is_generated_and_deterministic(tmp_path):
    first = run_corpus(tmp_path / "a", "@builtin", builtin_sentences=500)
    second = run_corpus(tmp_path / "b", "@builtin", builtin_sentences=500)
    assert (first / "builtin.txt").read_bytes() == (second / "builtin.txt").read_bytes()
    assert (first / "builtin-analogies.txt").read_text().startswith(": capital-country\n")
    assert corpus.load_facts(first)["builtin"]["perplexity_floor"] > 1


@pytest.mark.parametrize("seed", range(5))
def test_tokens_per_line_kernel_matches_reference(seed):
    rng = np.random.default_rng(seed)
    alphabet = np.frombuffer(b"ab \t\n\r\x0b\xc3\xa9", dtype=np.uint8)
    raw = alphabet[rng.integers(0, alphabet.size, size=rng.integers(0, 400))]
    lines = int((raw == 10).sum()) + 1
    expected = corpus.tokens_per_line_reference(raw, lines)
    np.testing.assert_array_equal(corpus.tokens_per_line(raw, lines), expected)
    text = raw.tobytes().decode("utf-8", "replace").replace("\r", "")
    assert expected.tolist() == [len(l.replace("\t", " ").split(" ")) - l.replace("\t", " ").split(" ").count("")
                                 for l in text.split("\n")]
