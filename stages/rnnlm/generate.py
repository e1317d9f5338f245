"""Using a trained language model: sampling text, the next-word distribution, and the
perplexity of a text file. Loads the rnnlm stage's outputs (model.npz, lm_vocab.tsv,
lm_tree.npz); nothing is unpickled.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from pipeline.store import load_npz
from stages import corpus
from stages.errors import InputError
from stages.rnnlm import cpu, data, sampling
from stages.rnnlm.model import Architecture, Model, flat_size, parameter_shapes
from stages.word2vec.rng import seed_states


class LanguageModel:
    """A trained model and its vocabulary, with a batch-of-one state."""

    def __init__(self, model: Model, lm: data.LmVocabulary):
        self.model, self.lm = model, lm
        self.children = (sampling.hs_children(*model.tree) if model.tree is not None else None)

    @classmethod
    def load(cls, rnnlm_dir: Path) -> "LanguageModel":
        rnnlm_dir = Path(rnnlm_dir)
        if not (rnnlm_dir / "model.npz").is_file():
            raise InputError(f"no trained language model in {rnnlm_dir}: run the pipeline "
                             f"first (python -m pipeline run)")
        saved = load_npz(rnnlm_dir / "model.npz")
        arch = Architecture(**json.loads(str(saved["architecture"])))
        shapes = parameter_shapes(arch)
        params = np.zeros(flat_size(shapes), np.float32)
        tree = None
        if arch.output == "hs":
            saved_tree = load_npz(rnnlm_dir / "lm_tree.npz")
            tree = (saved_tree["codes"], saved_tree["points"], saved_tree["lengths"])
        model = Model(arch, params, saved["param_embeddings"], tree)
        for name, view in model.p.items():
            view[...] = saved[f"param_{name}"]
        words, _ = corpus.read_counts_tsv(rnnlm_dir / "lm_vocab.tsv")
        unk, eos = words.index(data.UNK), words.index(data.EOS)
        return cls(model, data.LmVocabulary(words, len(words), unk, eos))

    def ids(self, text: str) -> np.ndarray:
        return self.lm.ids(text.split())

    def feed(self, ids: np.ndarray, state=None):
        """Run the words through the model -> (state after them, last output h [H])."""
        state = state if state is not None else self.model.initial_state(1)
        top = state[0][0]
        for start in range(0, ids.size, 256):
            window = ids[start:start + 256].reshape(-1, 1)
            work = self.model.forward(window, state, train=False)
            state, top = (work.h_all[-1].copy(), work.c_all[-1].copy()), work.top[-1, 0].copy()
        return state, top

    def next_word_probabilities(self, text: str) -> np.ndarray:
        """p(next word | text) over the LM vocabulary (after `<eos>` when text is empty)."""
        ids = self.ids(text) if text.strip() else np.array([self.lm.eos], np.int32)
        _, top = self.feed(ids)
        model = self.model
        if model.arch.output == "hs":
            probs = np.zeros((1, self.lm.size))
            cpu.hs_word_probabilities(probs, top[None, :].astype(np.float64),
                                      model.p["w_out"].astype(np.float64), *model.tree)
            return probs[0]
        logits = model.p["w_out"].astype(np.float64) @ top + model.p["b_out"]
        e = np.exp(logits - logits.max())
        return e / e.sum()

    def predict(self, text: str, k: int = 10) -> list[tuple[str, float]]:
        probs = self.next_word_probabilities(text)
        best = np.argsort(-probs)[:k]
        return [(self.lm.words[i], float(probs[i])) for i in best]

    def generate(self, words: int, temperature: float = 1.0, seed: int = 1,
                 prompt: str = "") -> list[str]:
        """Sample `words` words after the prompt (after `<eos>` if none)."""
        if temperature <= 0:
            raise InputError("--temperature must be > 0")
        ids = self.ids(prompt) if prompt.strip() else np.array([self.lm.eos], np.int32)
        state, _ = self.feed(ids[:-1]) if ids.size > 1 else (self.model.initial_state(1), None)
        return [self.lm.words[i] for i in self.sample_ids(state, int(ids[-1]), words,
                                                          temperature, seed)]

    def sample_ids(self, state, first: int, count: int, temperature: float, seed: int):
        """`count` word ids drawn one by one inside one jitted call, feeding `first` first."""
        model = self.model
        work = model.workspace(1, 1, train=False)
        work.h_all[0], work.c_all[0] = state
        out = np.zeros(count, np.int32)
        cell = (model.p["w_x"], model.p["w_h"], model.p["b_x"], model.p["b_h"])
        sample, head = self.sampler()
        sampling.generate_tokens(model.forward_cell, sample, out, first, work.h_all, work.c_all,
                            work.gates, work.x, model.embeddings, cell, head, float(temperature),
                            seed_states(seed, 1))
        return out

    def sampler(self):
        """(sample function, its head arrays) for generate_tokens."""
        p, V = self.model.p, self.lm.size
        if self.model.arch.output == "hs":
            return sampling.sample_hs, (p["w_out"], self.children, *self.model.tree, np.zeros((1, V)))
        return sampling.sample_softmax, (p["w_out"], p["b_out"], np.zeros(V))

    def score(self, path: Path, bptt: int = 64) -> tuple[float, int]:
        """(perplexity, tokens) of a text file: one sentence per line, `<eos>` after each."""
        try:
            lines = Path(path).read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError as err:
            raise InputError(f"cannot read {path}: {err}") from None
        ids = [self.lm.ids(line.split()) for line in lines if line.strip()]
        if not ids:
            raise InputError(f"{path} holds no words to score")
        stream = np.concatenate([np.append(s, np.int32(self.lm.eos)) for s in ids]).astype(np.int32)
        # the first word is scored after <eos>, as the model saw sentence starts in training
        stream = np.concatenate([[np.int32(self.lm.eos)], stream]).astype(np.int32)
        batches = stream.reshape(-1, 1)
        state, total = self.model.initial_state(1), 0.0
        for start in data.window_starts(batches.shape[0], bptt):
            inputs, targets = data.window(batches, start, bptt)
            loss, state = self.model.evaluate_window(inputs, targets, state)
            total += loss
        tokens = stream.size - 1
        return math.exp(total / tokens), tokens
