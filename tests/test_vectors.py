import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from stages import vectors as vectors_module
from stages.errors import InputError
from stages.vectors import Vectors


def sample_vectors(V=20, D=5, seed=0):
    rng = np.random.default_rng(seed)
    return Vectors([f"w{i}" for i in range(V - 1)] + ["café"], rng.normal(size=(V, D)).astype(np.float32))


@pytest.mark.parametrize("name", ["v.bin", "v.txt"])
def test_round_trip_both_formats(tmp_path, name):
    vectors = sample_vectors()
    vectors.save(tmp_path / name)
    loaded = Vectors.load(tmp_path / name)
    assert loaded.words == vectors.words
    tolerance = 0 if name.endswith(".bin") else 1e-6
    np.testing.assert_allclose(loaded.matrix, vectors.matrix, atol=tolerance)


def test_saving_and_loading_never_make_the_unit_vectors(tmp_path):
    """The unit vectors are a second V x D copy, made only for queries: converting a
    large file must not pay for it."""
    vectors = sample_vectors()
    vectors.save(tmp_path / "v.bin")
    loaded = Vectors.load(tmp_path / "v.bin")
    loaded.save(tmp_path / "v.txt", binary=False)
    assert "unit" not in vars(vectors) and "unit" not in vars(loaded)
    np.testing.assert_allclose(np.linalg.norm(loaded.unit, axis=1), 1.0, rtol=1e-6)
    zero = Vectors(["z"], np.zeros((1, 3), np.float32))
    assert np.array_equal(zero.unit, np.zeros((1, 3), np.float32))


@pytest.mark.parametrize("binary", [True, False])
def test_gensim_reads_ours_and_we_read_gensims(tmp_path, binary):
    from gensim.models import KeyedVectors
    vectors = sample_vectors()
    vectors.save(tmp_path / "ours", binary=binary)
    theirs = KeyedVectors.load_word2vec_format(str(tmp_path / "ours"), binary=binary)
    assert list(theirs.index_to_key) == vectors.words
    np.testing.assert_allclose(theirs.vectors, vectors.matrix, atol=1e-6)
    theirs.save_word2vec_format(str(tmp_path / "theirs"), binary=binary)
    back = Vectors.load(tmp_path / "theirs")
    assert back.words == vectors.words
    np.testing.assert_allclose(back.matrix, vectors.matrix, atol=1e-6)


def awkward_values(rng, count):
    """Random float32 bit patterns below the text kernel's limit, and the cases where
    formatting goes wrong first: ties half a millionth apart (dyadic, so they are exact),
    -0.0, negatives that round to zero, values that round up to the next integer."""
    bits = rng.integers(0, 2 ** 32, 4 * count, dtype=np.uint64).astype(np.uint32).view(np.float32)
    bits = bits[np.isfinite(bits) & (np.abs(bits) < vectors_module.TEXT_KERNEL_LIMIT)][:count]
    ties = (2 * np.arange(-300, 300) + 1) / 2 ** 7                    # k + 0.5 millionths
    edges = [0.0, -0.0, -4e-7, 4e-7, 5e-7, -5e-7, 0.9999995, 1.9999996, 999999.94,
             999999999999.0 - 2 ** 16, 1e-45, -1e-45]
    return np.concatenate([bits, ties, np.array(edges)]).astype(np.float32)


def test_text_rows_are_byte_for_byte_pythons_fixed_six_decimals():
    rng = np.random.default_rng(7)
    values = awkward_values(rng, 20_000)
    chunk = values[: values.size // 8 * 8].reshape(-1, 8)
    names = [f"w{i}".encode() if i % 3 else "ünï".encode() for i in range(chunk.shape[0])]
    ours = bytes(vectors_module.text_rows(names, chunk))
    assert ours == vectors_module.text_rows_reference(names, chunk)


def test_text_files_take_the_reference_for_huge_or_non_finite_rows_and_join_chunks(tmp_path,
                                                                                   monkeypatch):
    monkeypatch.setattr(vectors_module, "TEXT_CHUNK_VALUES", 10)    # 2 rows of 5 per chunk
    vectors = sample_vectors(V=9)
    vectors.matrix[3, 1], vectors.matrix[6, 4] = 3e20, np.nan
    vectors.save(tmp_path / "v.txt")
    names = [w.encode() for w in vectors.words]
    expected = b"9 5\n" + vectors_module.text_rows_reference(names, vectors.matrix)
    assert (tmp_path / "v.txt").read_bytes() == expected
    assert b" 300000006012263202816.000000 " in expected and b" nan\n" in expected


def text_file(rows: list[list[str]]) -> tuple[bytes, int]:
    """A text vectors file of the given tokens per row, and where its first row starts."""
    header = f"{len(rows)} {len(rows[0])}\n".encode()
    lines = [f"w{i}{'é' if i % 2 else ''} " + " ".join(row) for i, row in enumerate(rows)]
    return header + "\n".join(lines).encode() + b"\n", len(header)


def parse_both_ways(data: bytes, start: int) -> tuple[int, int]:
    """(lines the kernel parsed, lines): the file read through _read_text and through the
    reference gives the same words and bits, or the same error."""
    count, dim = (int(x) for x in data[:start].split())
    matrix, spans = np.empty((count, dim), np.float32), np.empty((count, 2), np.int64)
    parsed = vectors_module.parse_text_rows(np.frombuffer(data, np.uint8), start, count, dim,
                                            matrix, spans)
    try:
        reference = vectors_module._read_text_reference(data, start, count, dim, "f.txt")
    except InputError as error:
        with pytest.raises(InputError, match=re.escape(str(error))):
            vectors_module._read_text(data, start, count, dim, "f.txt")
        return parsed, count
    ours = vectors_module._read_text(data, start, count, dim, "f.txt")
    assert ours[0] == reference[0]
    assert np.array_equal(ours[1].view(np.uint32), reference[1].view(np.uint32))
    return parsed, count


def test_the_text_kernel_parses_every_usual_number_form_exactly():
    """Python's %.6f (ours, word2vec.c), numpy's shortest float32 text (gensim), %g, %e,
    signs, a bare point: all on the kernel's exact path, with the reference's bits."""
    rng = np.random.default_rng(3)
    values = awkward_values(rng, 3000)
    # the magnitudes trained vectors have: 9 digits at 10 ** -10 still need only 10 ** -18
    values = values[(np.abs(values) < 1e9) & ((np.abs(values) > 1e-10) | (values == 0))]
    values = np.concatenate([values, rng.standard_normal(3000) * 10.0 ** rng.uniform(-6, 6, 3000)])
    forms = [lambda x: f"{x:.6f}", lambda x: str(np.float32(x)), lambda x: f"{x:g}",
             lambda x: f"{x:.4E}", lambda x: f"+{abs(x):.3f}", lambda x: f"{x:.0f}.",
             lambda x: f"{x:.2f}".replace("0.", ".", 1), lambda x: "-0"]
    tokens = [forms[i % len(forms)](float(x)) for i, x in enumerate(values)]
    rows = [tokens[i:i + 6] for i in range(0, len(tokens) - 5, 6)]
    parsed, count = parse_both_ways(*text_file(rows))
    assert parsed == count


@pytest.mark.parametrize("odd", ["0.12345678901234567", "nan", "-inf", "1e-30", "1e400",
                                 "1_000", "1.5\t", "", "0x10", "1e", "+"])
def test_lines_the_text_kernel_does_not_take_are_read_by_the_reference(odd):
    """Too many digits or too large an exponent for the exact path, tokens float() takes
    or refuses, an empty field: the kernel stops at that line and the reference decides."""
    data, start = text_file([["0.5", "-1.25", "3"], ["1", odd, "2"], ["4", "5", "6"]])
    parsed, count = parse_both_ways(data, start)
    assert parsed == 1


def test_a_text_file_whose_first_word_is_not_ascii_is_read_as_text(tmp_path):
    vectors = Vectors(["été", "naïve"], np.array([[1.5, -2], [0.25, 4]], np.float32))
    vectors.save(tmp_path / "v.vec", binary=False)
    loaded = Vectors.load(tmp_path / "v.vec")
    assert loaded.words == vectors.words and np.array_equal(loaded.matrix, vectors.matrix)
    vectors.save(tmp_path / "v.bin", binary=True)
    assert np.array_equal(Vectors.load(tmp_path / "v.bin").matrix, vectors.matrix)
    # binary rows need not end in a newline (word2vec.c reads them without)
    rows = b"".join(w.encode() + b" " + row.tobytes() for w, row in zip(vectors.words, vectors.matrix))
    (tmp_path / "bare.bin").write_bytes(b"2 2\n" + rows)
    bare = Vectors.load(tmp_path / "bare.bin")
    assert bare.words == vectors.words and np.array_equal(bare.matrix, vectors.matrix)


@pytest.mark.parametrize("name", ["v.bin", "v.txt"])
def test_a_limit_loads_the_first_vectors_only(tmp_path, name):
    vectors = sample_vectors(V=20)
    vectors.save(tmp_path / name)
    first = Vectors.load(tmp_path / name, limit=7)
    assert first.words == vectors.words[:7]
    np.testing.assert_allclose(first.matrix, vectors.matrix[:7], atol=1e-6)
    assert len(Vectors.load(tmp_path / name, limit=100)) == 20
    assert Vectors.load(tmp_path / name, limit=0).matrix.shape == (0, 5)


def test_truncated_binary_file_is_a_clear_error(tmp_path):
    sample_vectors().save(tmp_path / "v.bin")
    data = (tmp_path / "v.bin").read_bytes()
    (tmp_path / "cut.bin").write_bytes(data[:-30])
    with pytest.raises(InputError, match="truncated"):
        Vectors.load(tmp_path / "cut.bin", binary=True)


def test_a_header_claiming_more_than_the_file_holds_is_refused(tmp_path):
    (tmp_path / "liar.bin").write_bytes(b"4000000000 300\nw \x00\x00\x80?\n")
    with pytest.raises(InputError, match="more than the file"):
        Vectors.load(tmp_path / "liar.bin", binary=True)


@pytest.mark.parametrize("content, message", [
    (b"", "not a word2vec file"), (b"hello world\n", "not a word2vec file"),
    (b"2 3\na 1 2 3\n", "claims 2 vectors"), (b"1 3\na 1 2\n", "expected 3"),
    (b"1 2\na 1 x\n", "not a number"),
])
def test_malformed_text_files_are_clear_errors(tmp_path, content, message):
    (tmp_path / "bad.txt").write_bytes(content)
    with pytest.raises(InputError, match=message):
        Vectors.load(tmp_path / "bad.txt", binary=False)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300), st.integers(0, 50), st.integers(0, 8))
def test_binary_loader_never_crashes_on_garbage(tmp_path_factory, body, count, dim):
    path = tmp_path_factory.mktemp("fuzz") / "f.bin"
    path.write_bytes(f"{count} {dim}\n".encode() + body)
    try:
        loaded = Vectors.load(path, binary=True)
    except InputError:
        return
    assert len(loaded) == count and loaded.matrix.shape == (count, dim)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([b"a", b"\xc3\xa9", b" ", b"\n", b"\r", b"\t", b"-", b"+",
                                 b".", b"e", b"E", b"0", b"7", b"9", b"1e22", b"nan", b"\x00",
                                 b"w 0.5\n", b"w -1e-3 "]),
                max_size=60),
       st.integers(0, 4), st.integers(1, 2))
def test_text_loader_never_crashes_on_garbage(tmp_path_factory, pieces, count, dim):
    """The text kernel reads untrusted bytes without Python's bounds checks: on any input
    it must give the reference's result or its error."""
    data = f"{count} {dim}\n".encode() + b"".join(pieces)
    parsed, _ = parse_both_ways(data, data.index(b"\n") + 1)
    assert 0 <= parsed <= count


BOUNDS_SCRIPT = """
import random, numpy as np
from stages import vectors as vm
random.seed(0)
pieces = [b"w", b" ", b"\\n", b"\\r", b"-", b".", b"e", b"5", b"1e22", b"w 0.5\\n", b"\\xc3\\xa9"]
for _ in range(3000):
    count, dim = random.randint(1, 3), random.randint(1, 2)
    data = f"{count} {dim}\\n".encode() + b"".join(random.choice(pieces) for _ in range(random.randint(0, 25)))
    start = data.index(b"\\n") + 1
    vm.parse_text_rows(np.frombuffer(data, np.uint8), start, count, dim,
                       np.empty((count, dim), np.float32), np.empty((count, 2), np.int64))
values = np.array([0.0, -0.0, 999999999999.0 - 2 ** 16, -5e-7, 1e-45], np.float32)
vm.text_rows([b"w", b"\\xc3\\xa9"] * 2, np.resize(values, (4, 5)).astype(np.float32))
"""


def test_the_text_kernels_stay_inside_their_arrays(tmp_path):
    """Compiled kernels do not check indices: run them on garbage with Numba's bounds
    checks on (a fresh process, as the switch is read at start-up)."""
    env = {**os.environ, "NUMBA_BOUNDSCHECK": "1", "NUMBA_CACHE_DIR": str(tmp_path)}
    result = subprocess.run([sys.executable, "-c", BOUNDS_SCRIPT], env=env, capture_output=True,
                            text=True, cwd=Path(__file__).resolve().parents[1])
    assert result.returncode == 0, result.stderr[-2000:]


def test_queries_on_a_hand_made_space():
    words = ["king", "queen", "man", "woman", "apple"]
    matrix = np.array([[1, 1, 0], [1, -1, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1]], np.float32)
    vectors = Vectors(words, matrix)
    assert vectors.analogy("man", "king", "woman")[0][0] == "queen"
    assert vectors.analogy("man", "king", "woman", method="mul")[0][0] == "queen"
    # cosines to king: man 0.707, queen 0, apple 0, woman -0.707; king itself excluded
    nearest = [w for w, _ in vectors.most_similar("king", n=10)]
    assert nearest[0] == "man" and nearest[-1] == "woman" and sorted(nearest[1:3]) == ["apple", "queen"]
    assert vectors.similarity("king", "apple") == pytest.approx(0.0)
    assert vectors.similarity("man", "woman") == pytest.approx(-1.0)
    fruit = Vectors(["a", "b", "c", "d"], np.array([[1, .1, 0], [1, 0, .1], [1, .05, .05], [0, 0, 1]], np.float32))
    assert fruit.doesnt_match(["a", "b", "c", "d"]) == "d"
    with pytest.raises(KeyError, match="not in the vocabulary"):
        vectors.most_similar("pear")
