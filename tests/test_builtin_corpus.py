import numpy as np

from stages import builtin_corpus as bc


def test_word_sets_are_disjoint_and_templates_unique():
    grammar = bc.Grammar()
    templates = [t for _, t, _ in grammar.kinds]
    assert len(set(templates)) == len(templates)
    groups = [set(pool) for pool in grammar.pools.values()] + [set(grammar.topics)]
    groups.append({w for pairs, _, _ in bc.RELATIONS.values() for pair in pairs for w in pair})
    groups.append({w for t in templates for w in t.split() if not w.startswith("{")})
    assert sum(len(g) for g in groups) == len(set().union(*groups))


def test_entropy_is_the_mean_surprisal_of_generated_sentences():
    """Every sentence parses one way; the mean of -log2 p over a sample matches the exact
    entropy within 4 standard errors."""
    grammar = bc.Grammar()
    sample = bc.generate_sentences(grammar, 4000, seed=3)
    bits = []
    for sentence in sample:
        parses = bc.sentence_bits(grammar, sentence)
        assert len(parses) == 1, sentence
        bits.append(parses[0])
    bits = np.array(bits)
    exact = grammar.entropy()
    assert abs(bits.mean() - exact["bits_per_sentence"]) < 4 * bits.std() / np.sqrt(bits.size)
    words = np.mean([len(s.split()) for s in sample])
    assert abs(words - exact["mean_words_per_sentence"]) < 0.1


def test_word_frequencies_are_zipf_like():
    grammar = bc.Grammar()
    words = " ".join(bc.generate_sentences(grammar, 20000, seed=1)).split()
    _, counts = np.unique(words, return_counts=True)
    ranked = np.sort(counts)[::-1][:500]
    slope = np.polyfit(np.log(np.arange(1, ranked.size + 1)), np.log(ranked), 1)[0]
    assert -1.6 < slope < -0.6


def test_analogy_file_lists_every_ordered_pair():
    text = bc.analogy_questions(bc.Grammar())
    lines = text.splitlines()
    assert lines[0] == ": capital-country" and lines[1] == "france paris germany berlin"
    questions = [l for l in lines if not l.startswith(":")]
    assert len(questions) == sum(len(p) * (len(p) - 1) for p, _, _ in bc.RELATIONS.values())
