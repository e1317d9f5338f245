import numpy as np
import pytest
from scipy import stats

from stages import evaluate
from stages.errors import InputError
from stages.vectors import Vectors
from tests.conftest import write_lines


def analogy_space():
    """Capitals = country + (0, 0, 1); one distractor near everything."""
    words = ["France", "Paris", "Italy", "Rome", "Spain", "Madrid", "noise"]
    base = {"France": [1, 0, 0], "Italy": [0, 1, 0], "Spain": [0.7, 0.7, 0]}
    rows = []
    for w in words[:-1]:
        country = [k for k in base if words.index(k) in (words.index(w), words.index(w) - 1)][0]
        rows.append(np.array(base[country]) + (np.array([0, 0, 1.0]) if w != country else 0))
    rows.append([0.3, 0.3, 0.3])
    return Vectors(words, np.array(rows, np.float32))


def test_analogies_accuracy_coverage_and_case(tmp_path):
    path = write_lines(tmp_path / "q.txt", [": capitals", "france paris italy rome", "italy rome spain madrid",
                                            "france paris spain madrid", "france paris berlin germany",
                                            ": other", "paris france rome italy"])
    sections = evaluate.read_analogies(path)
    result = evaluate.evaluate_analogies(analogy_space(), sections, restrict_vocab=100, case_insensitive=True)
    assert result["analogy_questions"] == 5
    assert result["analogy_coverage"] == pytest.approx(4 / 5)          # berlin/germany unknown
    assert result["analogy_sections"]["capitals"]["answered"] == 3
    assert result["analogy_sections"]["capitals"]["accuracy"] == 1.0
    assert result["analogy_sections"]["other"]["accuracy"] == 1.0
    strict = evaluate.evaluate_analogies(analogy_space(), sections, 100, case_insensitive=False)
    assert strict["analogy_coverage"] == 0.0                             # lower-case questions


def test_restrict_vocab_limits_answers_and_questions():
    sections = {"s": [["France", "Paris", "Italy", "Rome"]]}
    result = evaluate.evaluate_analogies(analogy_space(), sections, restrict_vocab=3, case_insensitive=True)
    assert result["analogy_coverage"] == 0.0                             # Rome is word 4


def test_answered_positions_match_the_totals():
    sections = {"s": [["France", "Paris", "Italy", "Rome"], ["France", "Paris", "Berlin", "Germany"],
                      ["Italy", "Rome", "Spain", "Madrid"]]}
    positions, add_correct, mul_correct = evaluate.answered_analogies(analogy_space(), sections, 100, True)["s"]
    assert positions.tolist() == [0, 2] and add_correct.tolist() == [True, True]
    totals = evaluate.evaluate_analogies(analogy_space(), sections, 100, True)
    assert totals["analogy_accuracy_3cosmul"] == mul_correct.mean()
    restricted = evaluate.answered_analogies(analogy_space(), sections, 4, True)["s"]
    assert restricted[0].tolist() == [0]                                 # Spain is word 5


def test_shared_question_accuracy_compares_the_same_questions():
    def answered(positions, correct):
        return {"s": (np.array(positions), np.array(correct), np.array(correct))}
    # the first model also answers question 3, wrongly; the second never sees it
    first = answered([0, 1, 3], [True, False, False])
    second = answered([0, 1, 2], [True, True, False])
    assert evaluate.shared_question_accuracy(first, second) == (0.5, 1.0, 2)
    assert evaluate.shared_question_accuracy(first, answered([], [])) == (None, None, 0)


def test_answers_never_repeat_the_question_words():
    unit = np.eye(4, dtype=np.float32)
    add, mul = evaluate.answer_analogies(unit, np.array([[0, 1, 2]]))
    assert add[0] == 3 and mul[0] == 3


def test_similarity_correlations_and_oov(tmp_path):
    rng = np.random.default_rng(0)
    vectors = Vectors([f"w{i}" for i in range(10)], rng.normal(size=(10, 4)).astype(np.float32))
    lines = ["# comment", *(f"W{i}\tw{i + 1}\t{rng.uniform(0, 10):.2f}" for i in range(9)), "w1 unknown 3.0"]
    pairs = evaluate.read_word_pairs(write_lines(tmp_path / "p.tsv", lines))
    result = evaluate.evaluate_similarity(vectors, pairs, case_insensitive=True)
    model = [vectors.similarity(f"w{i}", f"w{i + 1}") for i in range(9)]
    assert result["known_pairs"] == 9 and result["oov_share"] == pytest.approx(0.1)
    assert result["spearman"] == pytest.approx(stats.spearmanr(model, [p[2] for p in pairs[:9]])[0])


def test_bad_files_are_clear_errors(tmp_path):
    with pytest.raises(InputError, match="four words"):
        evaluate.read_analogies(write_lines(tmp_path / "q.txt", [": s", "a b c"]))
    with pytest.raises(InputError, match="word1 word2 score"):
        evaluate.read_word_pairs(write_lines(tmp_path / "p.txt", ["a b notanumber"]))
    with pytest.raises(InputError, match="cannot read"):
        evaluate.read_analogies(tmp_path / "missing.txt")
