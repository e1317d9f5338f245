"""The PyTorch side of rnnlm_vs_torch.py: the word_language_model example's model and
training loop (embedding, nn.RNN/nn.LSTM, linear decoder or AdaptiveLogSoftmaxWithLoss;
truncated BPTT with detached state, clip_grad_norm_, plain SGD, lr / 4 on a plateau),
on the same token streams and batching as ours."""
from __future__ import annotations

import copy
import math
import time

import numpy as np
import torch
from torch import nn

# adaptive softmax clusters over frequency-ranked ids (head: the 2,000 most frequent)
ADAPTIVE_CUTOFFS = [2000, 6000]


class TorchLM(nn.Module):
    def __init__(self, cell: str, output: str, V: int, D: int = 128, H: int = 256):
        super().__init__()
        self.encoder = nn.Embedding(V, D)
        self.rnn = nn.LSTM(D, H) if cell == "lstm" else nn.RNN(D, H, nonlinearity="tanh")
        self.adaptive = output == "adaptive"
        self.decoder = (nn.AdaptiveLogSoftmaxWithLoss(H, V, ADAPTIVE_CUTOFFS, div_value=4.0)
                        if self.adaptive else nn.Linear(H, V))
        nn.init.uniform_(self.encoder.weight, -0.1, 0.1)
        if not self.adaptive:
            nn.init.zeros_(self.decoder.bias)
            nn.init.uniform_(self.decoder.weight, -0.1, 0.1)
        self.cell, self.H = cell, H

    def init_hidden(self, B):
        zeros = torch.zeros(1, B, self.H)
        return (zeros, zeros.clone()) if self.cell == "lstm" else zeros

    def loss(self, ids, targets, hidden):
        output, hidden = self.rnn(self.encoder(ids), hidden)
        flat = output.reshape(-1, self.H)
        if self.adaptive:
            return self.decoder(flat, targets.reshape(-1)).loss, hidden
        return nn.functional.cross_entropy(self.decoder(flat), targets.reshape(-1)), hidden


def detach(hidden):
    return tuple(h.detach() for h in hidden) if isinstance(hidden, tuple) else hidden.detach()


def batchify(stream: np.ndarray, B: int) -> torch.Tensor:
    rows = stream.size // B
    return torch.from_numpy(stream[:rows * B].reshape(B, rows).T.astype(np.int64).copy())


def evaluate(model, batches, bptt) -> float:
    model.eval()
    total, tokens, hidden = 0.0, 0, model.init_hidden(batches.shape[1])
    with torch.no_grad():
        for i in range(0, batches.shape[0] - 1, bptt):
            n = min(bptt, batches.shape[0] - 1 - i)
            loss, hidden = model.loss(batches[i:i + n], batches[i + 1:i + 1 + n], hidden)
            total, tokens = total + loss.item() * n * batches.shape[1], tokens + n * batches.shape[1]
    return math.exp(total / tokens)


def train_epoch(model, batches, bptt, lr, clip) -> tuple[float, int]:
    """(seconds in training steps, tokens)."""
    model.train()
    hidden, seconds, tokens = model.init_hidden(batches.shape[1]), 0.0, 0
    for i in range(0, batches.shape[0] - 1, bptt):
        n = min(bptt, batches.shape[0] - 1 - i)
        start = time.perf_counter()
        hidden = detach(hidden)
        model.zero_grad()
        loss, hidden = model.loss(batches[i:i + n], batches[i + 1:i + 1 + n], hidden)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), clip)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(p.grad, alpha=-lr)
        seconds += time.perf_counter() - start
        tokens += n * batches.shape[1]
    return seconds, tokens


def frequency_ranks(streams: dict, V: int) -> np.ndarray:
    """LM id -> rank by training frequency (adaptive softmax wants frequent ids first)."""
    order = np.argsort(-np.bincount(streams["train"], minlength=V), kind="stable")
    rank = np.empty(V, dtype=np.int64)
    rank[order] = np.arange(V)
    return rank


def generation_ms(model, V, words: int = 500) -> float:
    model.eval()
    torch.set_num_threads(1)
    hidden, word = model.init_hidden(1), torch.zeros(1, 1, dtype=torch.long)
    with torch.no_grad():
        start = time.perf_counter()
        for _ in range(words):
            output, hidden = model.rnn(model.encoder(word), hidden)
            flat = output.reshape(1, -1)
            log_probs = (model.decoder.log_prob(flat) if model.adaptive
                         else torch.log_softmax(model.decoder(flat), dim=1))
            word = torch.multinomial(log_probs.exp(), 1).reshape(1, 1)
    return 1000 * (time.perf_counter() - start) / words


def run(cell: str, output: str, streams: dict, V: int, epochs: int, lr: float, threads: int,
        bptt: int = 35, clip: float = 0.25) -> dict:
    torch.manual_seed(1)
    torch.set_num_threads(threads)
    rank = frequency_ranks(streams, V)
    train = batchify(rank[streams["train"]], 32)
    valid, test = batchify(rank[streams["valid"]], 10), batchify(rank[streams["test"]], 10)
    model = TorchLM(cell, output, V)
    best, best_state, seconds, tokens = math.inf, None, 0.0, 0
    for _ in range(epochs):
        s, t = train_epoch(model, train, bptt, lr, clip)
        seconds, tokens = seconds + s, tokens + t
        perplexity = evaluate(model, valid, bptt)
        if perplexity < best:
            best, best_state = perplexity, copy.deepcopy(model.state_dict())
        else:
            lr /= 4.0
    model.load_state_dict(best_state)
    result = {"tokens_per_second": tokens / seconds, "valid_perplexity": best,
              "test_perplexity": evaluate(model, test, bptt), "generate_ms": generation_ms(model, V)}
    torch.set_num_threads(threads)
    return result
