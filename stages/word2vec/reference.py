"""Plain Python/NumPy twins of cpu.py's kernels: same names, same arguments, same random
draws, one thread at a time. Slow and obvious on purpose; tests hold the kernels to them.
Also the float64 loss-and-gradient functions that finite differences check."""
import math

import numpy as np

from stages.word2vec.cpu import LOSS_SAMPLE_EVERY, SIGMOID_BOUND
from stages.word2vec.rng import py_below, py_split_draw, py_uniform


def logistic_step(h, grad_h, weights, row, grad_weights, grad_row, label, alpha, saturate,
                  with_loss):
    w = weights[row]
    f = np.float32(np.dot(h.astype(np.float64), w.astype(np.float64)))
    loss = math.log1p(math.exp(-float(f))) + (0.0 if label == 1 else float(f)) if with_loss else 0.0
    if abs(f) >= SIGMOID_BOUND:
        if not saturate:
            return loss
        g = np.float32((label - (1.0 if f > 0 else 0.0)) * alpha)
    else:
        g = np.float32((label - 1.0 / (1.0 + math.exp(-float(f)))) * alpha)
    grad_h += g * w
    grad_weights[grad_row] += g * h
    return loss


def hs_step(h, grad_h, rows, word, head, alpha, rng, with_loss):
    """rows = (weights, ...): the reference never keeps private rows."""
    weights, codes, points, lengths = rows[0], *head
    return sum(logistic_step(h, grad_h, weights, points[word, j], weights, points[word, j],
                             1 - int(codes[word, j]), alpha, False, with_loss)
               for j in range(lengths[word]))


def ns_step(h, grad_h, rows, word, head, alpha, rng, with_loss):
    weights, (accept, alias, negative) = rows[0], head
    loss = logistic_step(h, grad_h, weights, word, weights, word, 1, alpha, True, with_loss)
    for _ in range(negative):
        index, u = py_split_draw(rng, accept.shape[0])
        target = index if u < accept[index] else alias[index]
        if target != word:
            loss += logistic_step(h, grad_h, weights, target, weights, target, 0, alpha, True,
                                  with_loss)
    return loss


def kept_words(tokens, start, end, vocab_size, keep, rng):
    kept, seen = [], 0
    for word in tokens[start:end]:
        if word >= vocab_size:
            continue
        seen += 1
        if keep[word] < 1.0 and keep[word] < py_uniform(rng):
            continue
        kept.append(int(word))
    return kept, seen


def learning_rate(position, alpha_start, alpha_end, total_tokens):
    return alpha_start - (alpha_start - alpha_end) * min(position / total_tokens, 1.0)


def sg_window(output_step, vectors, context, count, grad, rows, word, head, alpha, rng, with_loss):
    loss = 0.0
    for c in range(count):
        grad[:] = 0.0
        loss += output_step(vectors[context[c]], grad, rows, word, head, alpha, rng, with_loss)
        vectors[context[c]] += grad
    return loss


def skipgram_centre(output_step, vectors, weights, centre, context, head, alpha, rng, with_loss):
    """-> (loss, predictions): each context vector predicts the centre word."""
    grad = np.zeros(vectors.shape[1], dtype=np.float32)
    loss = sg_window(output_step, vectors, context, len(context), grad, (weights,), centre,
                     head, alpha, rng, with_loss)
    return loss, len(context)


def cbow_centre(output_step, vectors, weights, centre, context, head, alpha, rng, with_loss, mean):
    """-> (loss, predictions): the context's mean (or sum) predicts the centre word."""
    if not context:
        return 0.0, 0
    hidden = np.sum([vectors[c] for c in context], axis=0, dtype=np.float32)
    if mean:
        hidden /= np.float32(len(context))
    grad = np.zeros(vectors.shape[1], dtype=np.float32)
    loss = output_step(hidden, grad, (weights,), centre, head, alpha, rng, with_loss)
    for c in context:
        vectors[c] += grad
    return loss, 1


def train_sentences(centre_step, output_step, vectors, weights, counters, tokens, offsets,
                    blocks, keep, head, window, alpha_start, alpha_end, token_base,
                    total_tokens, rng_states):
    """Blocks of sentences one after another, block k by thread k mod T (the kernel's
    threads take the next block as they finish one; with one thread, the same order), so
    no row is ever private. A sentence's run position: token_base + its block's position
    (blocks[k, 2]) + its offset from the block's first sentence."""
    threads = rng_states.shape[0]
    for k, (first, end, position) in enumerate(blocks):
        rng, row = rng_states[k % threads:k % threads + 1], counters[k % threads]
        for s in range(first, end):
            run_position = token_base + position + offsets[s] - offsets[first]
            alpha = learning_rate(run_position, alpha_start, alpha_end, total_tokens)
            words, seen = kept_words(tokens, offsets[s], offsets[s + 1], vectors.shape[0], keep, rng)
            for i, centre in enumerate(words):
                radius = window - py_below(rng, window)
                context = [words[j] for j in range(max(0, i - radius), min(len(words), i + radius + 1)) if j != i]
                with_loss = (row[4] + i) % LOSS_SAMPLE_EVERY == 0
                loss, made = centre_step(output_step, vectors, weights, centre, context, head,
                                         alpha, rng, with_loss)
                row[0:3] += (loss, made if with_loss else 0, made)
            row[3:5] += (seen, len(words))


def skipgram(output_step, vectors, weights, counters, tokens, offsets, blocks,
             keep, head, private, window, alpha_start, alpha_end, token_base, total_tokens,
             rng_states):
    train_sentences(skipgram_centre, output_step, vectors, weights, counters, tokens, offsets,
                    blocks, keep, head, window, alpha_start, alpha_end, token_base,
                    total_tokens, rng_states)


def cbow(output_step, vectors, weights, counters, tokens, offsets, blocks,
         keep, head, private, window, cbow_mean, alpha_start, alpha_end, token_base,
         total_tokens, rng_states):
    def centre(*args):
        return cbow_centre(*args, cbow_mean)
    train_sentences(centre, output_step, vectors, weights, counters, tokens, offsets,
                    blocks, keep, head, window, alpha_start, alpha_end, token_base,
                    total_tokens, rng_states)


# ----- float64 losses and their analytic gradients (checked by finite differences) -----

def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def hs_loss_and_grads(h, weights, code, points):
    """-log p(word | h) over the word's Huffman path, and its gradients w.r.t. h and the
    path's rows of weights: d/dh = -sum_j (1 - code_j - sigma_j) w_j."""
    loss, grad_h, grad_w = 0.0, np.zeros_like(h), np.zeros_like(weights)
    for bit, node in zip(code, points):
        sign = 1.0 - 2.0 * bit
        s = sigmoid(sign * (h @ weights[node]))
        loss -= np.log(s)
        g = (1.0 - bit) - sigmoid(h @ weights[node])      # the kernel's g before alpha
        grad_h -= g * weights[node]
        grad_w[node] -= g * h
    return loss, grad_h, grad_w


def ns_loss_and_grads(h, weights, positive, negatives):
    """-log sigma(h.w_pos) - sum log sigma(-h.w_neg), and its gradients."""
    loss, grad_h, grad_w = 0.0, np.zeros_like(h), np.zeros_like(weights)
    for target, label in [(positive, 1.0)] + [(n, 0.0) for n in negatives]:
        f = h @ weights[target]
        loss -= np.log(sigmoid(f) if label else sigmoid(-f))
        g = label - sigmoid(f)
        grad_h -= g * weights[target]
        grad_w[target] -= g * h
    return loss, grad_h, grad_w
