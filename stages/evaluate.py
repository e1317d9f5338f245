"""Evaluate stage: word analogies and word-pair similarity of the trained vectors.

Analogies (questions-words format: ": section" lines, then "a b c d" for a : b :: c : d)
are answered among the `restrict_vocab` most frequent words, excluding a, b and c, by
3CosAdd (argmax cos(x, b - a + c) over unit vectors) and by 3CosMul. As in gensim's
evaluate_word_analogies, case-insensitive matching maps each upper-cased word to its most
frequent form, and a question with a word outside the restricted vocabulary is skipped
(it counts against coverage, not accuracy).

Word pairs (WordSim-353 / SimLex-999 style: "word1 word2 score", '#' comments): Spearman
and Pearson correlation of cosine similarity with the human scores over the pairs whose
words are known, and the share of pairs that were not.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from scipy import stats

from stages.errors import InputError
from stages.vectors import Vectors

BATCH = 1024                     # questions scored per matrix product (memory bound)
BUILTIN_ANALOGIES = "builtin-analogies.txt"
MUL_EPSILON = 1e-3               # 3CosMul's epsilon (Levy and Goldberg 2014)


def read_analogies(path: Path) -> dict[str, list[list[str]]]:
    sections: dict[str, list[list[str]]] = {}
    current = None
    for number, line in enumerate(_read_lines(path), start=1):
        if line.startswith(":"):
            current = sections.setdefault(line[1:].strip(), [])
            continue
        words = line.split()
        if len(words) != 4 or current is None:
            raise InputError(f"{path}:{number}: expected ': section' or four words, got {line!r}")
        current.append(words)
    return sections


def read_word_pairs(path: Path) -> list[tuple[str, str, float]]:
    pairs = []
    for number, line in enumerate(_read_lines(path), start=1):
        if line.startswith("#"):
            continue
        parts = re.split(r"[\t ]+", line)
        try:
            pairs.append((parts[0], parts[1], float(parts[2])))
        except (IndexError, ValueError):
            raise InputError(f"{path}:{number}: expected 'word1 word2 score', got {line!r}") from None
    return pairs


def _read_lines(path: Path) -> list[str]:
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError as err:
        raise InputError(f"cannot read evaluation file {path}: {err}") from None
    return [line.strip() for line in text.splitlines() if line.strip()]


def lookup_table(words: list[str], limit: int, case_insensitive: bool) -> dict[str, int]:
    """word -> id among the first `limit` (most frequent) words; upper-cased keys map to
    the most frequent of their case variants."""
    table: dict[str, int] = {}
    for index, word in enumerate(words[:limit]):
        table.setdefault(word.upper() if case_insensitive else word, index)
    return table


def _key(word: str, case_insensitive: bool) -> str:
    return word.upper() if case_insensitive else word


def answer_analogies(unit: np.ndarray, questions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """unit float32 [R, D] unit rows; questions int [Q, 3] (a, b, c) ->
    (3CosAdd answers int [Q], 3CosMul answers int [Q]), never one of a, b, c."""
    add, mul = np.empty(len(questions), np.int64), np.empty(len(questions), np.int64)
    rows = np.arange(BATCH)
    for start in range(0, len(questions), BATCH):
        batch = questions[start:start + BATCH]
        cos = [unit[batch[:, k]] @ unit.T for k in range(3)]            # 3 x [q, R]
        scores_add = cos[1] - cos[0] + cos[2]
        scores_mul = ((cos[1] + 1) / 2) * ((cos[2] + 1) / 2) / ((cos[0] + 1) / 2 + MUL_EPSILON)
        for scores, out in ((scores_add, add), (scores_mul, mul)):
            scores[rows[:len(batch)][:, None], batch] = -np.inf
            out[start:start + len(batch)] = scores.argmax(axis=1)
    return add, mul


def answered_analogies(vectors: Vectors, sections: dict, restrict_vocab: int,
                       case_insensitive: bool) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per section: (positions int [A] in the section of the questions whose four words are
    all among the `restrict_vocab` most frequent, 3CosAdd correct bool [A], 3CosMul correct
    bool [A])."""
    table = lookup_table(vectors.words, restrict_vocab, case_insensitive)
    unit = vectors.unit[:min(restrict_vocab, len(vectors))]
    answered = {}
    for name, rows in sections.items():
        keys = [[_key(w, case_insensitive) for w in row] for row in rows]
        positions = np.array([i for i, k in enumerate(keys) if all(w in table for w in k)],
                             dtype=np.int64)
        ids = np.array([[table[w] for w in keys[i]] for i in positions],
                       dtype=np.int64).reshape(-1, 4)
        add, mul = answer_analogies(unit, ids[:, :3])
        answered[name] = (positions, add == ids[:, 3], mul == ids[:, 3])
    return answered


def evaluate_analogies(vectors: Vectors, sections: dict, restrict_vocab: int,
                       case_insensitive: bool) -> dict:
    answered = answered_analogies(vectors, sections, restrict_vocab, case_insensitive)
    return summarize_analogies(sections, answered)


def summarize_analogies(sections: dict, answered: dict) -> dict:
    """Accuracy (3CosAdd, 3CosMul) and coverage, overall and per section, of answered_analogies."""
    per_section, totals = {}, np.zeros(4, dtype=np.int64)   # asked, answered, add, mul
    for name, (positions, add_correct, mul_correct) in answered.items():
        counts = np.array([len(sections[name]), positions.size, add_correct.sum(), mul_correct.sum()])
        totals += counts
        per_section[name] = {"questions": int(counts[0]), "answered": int(counts[1]),
                             "accuracy": _ratio(counts[2], counts[1]),
                             "accuracy_3cosmul": _ratio(counts[3], counts[1])}
    return {"analogy_accuracy": _ratio(totals[2], totals[1]),
            "analogy_accuracy_3cosmul": _ratio(totals[3], totals[1]),
            "analogy_coverage": _ratio(totals[1], totals[0]),
            "analogy_questions": int(totals[0]), "analogy_sections": per_section}


def shared_question_accuracy(first: dict, second: dict) -> tuple[float | None, float | None, int]:
    """3CosAdd accuracy of two models (answered_analogies of each) over only the questions
    both answered, and how many those are. Each model's own accuracy covers the questions
    its `restrict_vocab` most frequent words allow, and two vocabularies that order words
    of equal count differently keep different words at that boundary: a comparison on the
    same questions separates the vectors' quality from that choice."""
    def correct_by_question(answered):
        return {(name, int(p)): bool(ok) for name, (positions, add_correct, _) in answered.items()
                for p, ok in zip(positions, add_correct)}
    a, b = correct_by_question(first), correct_by_question(second)
    shared = a.keys() & b.keys()
    return (_ratio(sum(a[q] for q in shared), len(shared)),
            _ratio(sum(b[q] for q in shared), len(shared)), len(shared))


def _ratio(a, b) -> float | None:
    return float(a) / float(b) if b else None


def evaluate_similarity(vectors: Vectors, pairs, case_insensitive: bool) -> dict:
    table = lookup_table(vectors.words, len(vectors), case_insensitive)
    model, human = [], []
    for a, b, score in pairs:
        ka, kb = _key(a, case_insensitive), _key(b, case_insensitive)
        if ka in table and kb in table:
            model.append(float(vectors.unit[table[ka]] @ vectors.unit[table[kb]]))
            human.append(score)
    enough = len(model) >= 3
    return {"pairs": len(pairs), "known_pairs": len(model),
            "oov_share": 1 - len(model) / len(pairs) if pairs else None,
            "spearman": float(stats.spearmanr(model, human)[0]) if enough else None,
            "pearson": float(stats.pearsonr(model, human)[0]) if enough else None}


def analogy_file(cfg, corpus_dir: Path | None) -> Path | None:
    if cfg.analogies == "":
        return None
    if cfg.analogies != "auto":
        return Path(cfg.analogies)
    builtin = corpus_dir / BUILTIN_ANALOGIES if corpus_dir else None
    return builtin if builtin and builtin.is_file() else None


def input_files(cfg) -> list[Path]:
    """The user's evaluation files (for the runner's fingerprint)."""
    files = [Path(p) for p in cfg.similarity]
    if cfg.analogies not in ("", "auto"):
        files.append(Path(cfg.analogies))
    missing = [str(p) for p in files if not p.is_file()]
    if missing:
        raise InputError(f"evaluation file(s) not found: {', '.join(missing)}")
    return files


def run(cfg, inputs, out) -> dict:
    vectors = Vectors.load(inputs["word2vec"] / "vectors.bin")
    metrics: dict = {}
    questions = analogy_file(cfg, inputs["corpus"])
    if questions is not None:
        metrics.update(evaluate_analogies(vectors, read_analogies(questions),
                                          cfg.restrict_vocab, cfg.case_insensitive))
        metrics["analogy_file"] = str(questions)
    similarity = {Path(p).stem: evaluate_similarity(vectors, read_word_pairs(Path(p)),
                                                    cfg.case_insensitive)
                  for p in cfg.similarity}
    metrics["similarity"] = similarity
    metrics["wordsim_spearman"] = {name: r["spearman"] for name, r in similarity.items()}
    out.write_json("metrics.json", metrics)
    summary = {k: round(metrics[k], 4) for k in ("analogy_accuracy", "analogy_coverage")
               if metrics.get(k) is not None}
    summary.update({f"{name}_spearman": round(r, 4) for name, r in
                    metrics["wordsim_spearman"].items() if r is not None})
    return summary
