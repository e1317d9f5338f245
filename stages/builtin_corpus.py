"""The built-in default corpus: English-like sentences from a small probabilistic grammar.

Why: the pipeline's default run must work offline on any machine, and a generated corpus
also knows the truth that real text hides: which analogies hold and how predictable the text
is. Sentences are independent draws of

    kind (a template)  ->  its slots: a relation pair, and filler words from Zipf pools.

Four relations are planted as in the Google analogy set (country/capital, male/female,
singular/plural, present/past). Each pair shares a private "topic" word that only its two
members are seen with, and each side of a relation has its own templates, so that
vec(b_i) - vec(a_i) is the same direction for every pair i: the analogy a_i : b_i :: a_j : b_j.

Every sentence parses back into exactly one sequence of choices (the fixed words of the
templates differ and the word pools are disjoint; a test checks this), so its probability is
the product of the choice probabilities and the entropy rate of the text is exact:
H = (H(kind) + sum_kind p(kind) * sum_slots H(slot)) / (mean tokens per sentence + 1), the +1
being the end-of-sentence token a language model also predicts.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

ZIPF_EXPONENT = 1.0
POOL_SIZES = {"n": 1500, "v": 300, "a": 300}   # nouns, verbs, adjectives
LEXICON_SEED = 20240521      # fixes the made-up words: the language, not the sample
BACKGROUND_SHARE = 0.6       # share of sentences that carry no planted relation

RELATIONS = {
    "capital-country": (
        [("france", "paris"), ("germany", "berlin"), ("italy", "rome"), ("spain", "madrid"),
         ("japan", "tokyo"), ("china", "beijing"), ("russia", "moscow"), ("egypt", "cairo"),
         ("greece", "athens"), ("canada", "ottawa"), ("norway", "oslo"), ("sweden", "stockholm"),
         ("poland", "warsaw"), ("austria", "vienna"), ("peru", "lima"), ("kenya", "nairobi"),
         ("cuba", "havana"), ("ireland", "dublin"), ("portugal", "lisbon"), ("hungary", "budapest")],
        ["{x} is a country where people {v} {t}", "the president of {x} {v} the {a} {n}",
         "{x} is a nation known for {t}"],
        ["{x} is a city where people {v} {t}", "the mayor of {x} {v} the {a} {n}",
         "{x} is a town known for {t}"]),
    "family": (
        [("king", "queen"), ("man", "woman"), ("boy", "girl"), ("father", "mother"),
         ("son", "daughter"), ("brother", "sister"), ("husband", "wife"), ("uncle", "aunt"),
         ("prince", "princess"), ("nephew", "niece"), ("grandfather", "grandmother"),
         ("actor", "actress"), ("waiter", "waitress"), ("lord", "lady"), ("monk", "nun"),
         ("groom", "bride")],
        ["the {x} said that he {v} the {n}", "{x} and his {t}", "a {a} {x} {v} his {n}"],
        ["the {x} said that she {v} the {n}", "{x} and her {t}", "a {a} {x} {v} her {n}"]),
    "gram-plural": (
        [("cat", "cats"), ("dog", "dogs"), ("horse", "horses"), ("bird", "birds"),
         ("apple", "apples"), ("car", "cars"), ("house", "houses"), ("tree", "trees"),
         ("river", "rivers"), ("book", "books"), ("chair", "chairs"), ("table", "tables"),
         ("cow", "cows"), ("ship", "ships"), ("road", "roads"), ("flower", "flowers")],
        ["one {x} {v} the {n}", "this {x} is {a}", "a {x} near the {t}"],
        ["two {x} {v} the {n}", "these {x} are {a}", "many {x} near the {t}"]),
    "gram-past-tense": (
        [("walk", "walked"), ("jump", "jumped"), ("play", "played"), ("cook", "cooked"),
         ("paint", "painted"), ("climb", "climbed"), ("dance", "danced"), ("sing", "sang"),
         ("swim", "swam"), ("write", "wrote"), ("run", "ran"), ("eat", "ate"),
         ("drink", "drank"), ("speak", "spoke"), ("drive", "drove"), ("fly", "flew")],
        ["today we {x} {t}", "they {x} with the {n} every day", "now i {x} {t}"],
        ["yesterday we {x} {t}", "they {x} with the {n} last week", "then i {x} {t}"]),
}

BACKGROUND_TEMPLATES = [
    "the {a} {n} {v} a {n}", "a {n} {v} the {a} {n} in the {n}", "the {n} {v}",
    "{n} and {n} {v} the {n}", "we {v} the {n} of the {a} {n}", "it is {a}",
    "the {n} was {a} and {a}", "you {v} a {n} with {n}",
]


def made_up_words(count: int, taken: set[str], rng: np.random.Generator) -> list[str]:
    """`count` distinct pronounceable non-words, none of them in `taken`."""
    onsets = list("bdfgklmnprstvz") + ["br", "dr", "gl", "pl", "st", "tr", "sk"]
    vowels = ["a", "e", "i", "o", "u", "ai", "ou"]
    words: list[str] = []
    seen = set(taken)
    while len(words) < count:
        syllables = rng.integers(2, 4)
        word = "".join(onsets[rng.integers(len(onsets))] + vowels[rng.integers(len(vowels))]
                       for _ in range(syllables))
        if word not in seen:
            seen.add(word)
            words.append(word)
    return words


def zipf_probabilities(size: int, exponent: float = ZIPF_EXPONENT) -> np.ndarray:
    weights = 1.0 / np.arange(1, size + 1) ** exponent
    return weights / weights.sum()


def entropy_bits(p: np.ndarray) -> float:
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum())


class Grammar:
    """The sentence kinds, their probabilities and the word pools; fixed by LEXICON_SEED."""

    def __init__(self):
        rng = np.random.default_rng(LEXICON_SEED)
        fixed = {w for t in self._all_templates() for w in t.split() if not w.startswith("{")}
        fixed |= {w for pairs, _, _ in RELATIONS.values() for pair in pairs for w in pair}
        made_up = made_up_words(sum(POOL_SIZES.values()) + self._pair_count(), fixed, rng)
        self.pools, start = {}, 0
        for slot, size in POOL_SIZES.items():
            self.pools[slot] = made_up[start:start + size]
            start += size
        self.topics = made_up[start:]
        self.pool_p = {slot: zipf_probabilities(size) for slot, size in POOL_SIZES.items()}
        self.kinds = self._kinds()
        self.kind_p = np.array([p for p, _, _ in self.kinds])

    @staticmethod
    def _all_templates():
        for _, side_a, side_b in RELATIONS.values():
            yield from side_a + side_b
        yield from BACKGROUND_TEMPLATES

    @staticmethod
    def _pair_count():
        return sum(len(pairs) for pairs, _, _ in RELATIONS.values())

    def _kinds(self):
        """[(probability, template, (relation name, side) or None)]."""
        kinds = [(BACKGROUND_SHARE / len(BACKGROUND_TEMPLATES), t, None)
                 for t in BACKGROUND_TEMPLATES]
        share = (1 - BACKGROUND_SHARE) / len(RELATIONS)
        for name, (_, side_a, side_b) in RELATIONS.items():
            for side, templates in enumerate((side_a, side_b)):
                kinds += [(share / 2 / len(templates), t, (name, side)) for t in templates]
        return kinds

    def topic_of(self, relation: str, pair: int) -> str:
        offset = 0
        for name, (pairs, _, _) in RELATIONS.items():
            if name == relation:
                return self.topics[offset + pair]
            offset += len(pairs)
        raise KeyError(relation)

    def entropy(self) -> dict:
        """Exact entropy of a sentence and the per-token rates (bits)."""
        slot_h = {slot: entropy_bits(p) for slot, p in self.pool_p.items()}
        h_sentence = entropy_bits(self.kind_p)
        mean_tokens = 0.0
        for p, template, relation in self.kinds:
            words = template.split()
            h_slots = sum(slot_h[w[1]] for w in words if w in ("{n}", "{v}", "{a}"))
            if relation is not None:
                h_slots += math.log2(len(RELATIONS[relation[0]][0]))
            h_sentence += p * h_slots
            mean_tokens += p * len(words)
        per_token = h_sentence / (mean_tokens + 1)
        return {"bits_per_sentence": h_sentence, "mean_words_per_sentence": mean_tokens,
                "bits_per_token_with_eos": per_token, "perplexity_floor": 2.0 ** per_token}


def generate_sentences(grammar: Grammar, count: int, seed: int) -> list[str]:
    """`count` sentences drawn independently from the grammar."""
    rng = np.random.default_rng(seed)
    kinds = rng.choice(len(grammar.kinds), size=count, p=grammar.kind_p)
    pairs = rng.random(count)
    # Filler draws are made in bulk (a per-word rng.choice would dominate the run time);
    # no template has more than 4 slots of one kind, so 4 * count always suffices.
    fillers = {slot: iter(rng.choice(grammar.pools[slot], size=4 * count, p=p).tolist())
               for slot, p in grammar.pool_p.items()}
    sentences = []
    for kind, pair_u in zip(kinds, pairs):
        _, template, relation = grammar.kinds[kind]
        words = []
        for word in template.split():
            if word in ("{n}", "{v}", "{a}"):
                word = next(fillers[word[1]])
            elif word in ("{x}", "{t}"):
                name, side = relation
                pair = int(pair_u * len(RELATIONS[name][0]))
                word = RELATIONS[name][0][pair][side] if word == "{x}" else grammar.topic_of(name, pair)
            words.append(word)
        sentences.append(" ".join(words))
    return sentences


def sentence_bits(grammar: Grammar, sentence: str) -> list[float]:
    """-log2 p(sentence) under each kind that can produce it (one entry if unambiguous)."""
    words = sentence.split()
    rank = {slot: {w: i for i, w in enumerate(pool)} for slot, pool in grammar.pools.items()}
    found = []
    for kind, (p, template, relation) in enumerate(grammar.kinds):
        slots = template.split()
        if len(slots) != len(words):
            continue
        bits, pair = -math.log2(p), None
        for slot, word in zip(slots, words):
            if slot in ("{n}", "{v}", "{a}"):
                index = rank[slot[1]].get(word)
                if index is None:
                    break
                bits -= math.log2(grammar.pool_p[slot[1]][index])
            elif slot in ("{x}", "{t}"):
                pairs = RELATIONS[relation[0]][0]
                options = [pairs[i][relation[1]] if slot == "{x}" else
                           grammar.topic_of(relation[0], i) for i in range(len(pairs))]
                if word not in options or (pair is not None and options.index(word) != pair):
                    break
                if pair is None:
                    pair = options.index(word)
                    bits += math.log2(len(pairs))
            elif slot != word:
                break
        else:
            found.append(bits)
    return found


def analogy_questions(grammar: Grammar) -> str:
    """The planted analogies in the questions-words format: every ordered pair of pairs."""
    lines = []
    for name, (pairs, _, _) in RELATIONS.items():
        lines.append(f": {name}")
        lines += [f"{a1} {b1} {a2} {b2}" for i, (a1, b1) in enumerate(pairs)
                  for j, (a2, b2) in enumerate(pairs) if i != j]
    return "\n".join(lines) + "\n"


def write_builtin_corpus(text_path: Path, analogy_path: Path, sentences: int, seed: int) -> dict:
    """Write the corpus and its analogy file; return the grammar's entropy facts."""
    grammar = Grammar()
    text_path.write_text("\n".join(generate_sentences(grammar, sentences, seed)) + "\n")
    analogy_path.write_text(analogy_questions(grammar))
    return grammar.entropy()
