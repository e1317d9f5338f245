import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

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
