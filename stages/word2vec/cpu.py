"""@njit kernels for word2vec on the CPU (see the package docstring for the legend).

Threads: `skipgram` and `cbow` run one prange iteration per thread over its own contiguous
range of sentences, updating the shared weights without locks (Hogwild, as word2vec.c).
Each thread has its own RNG state and its own counter row, which Python sums in a fixed order.

The learning rate falls linearly with the position of a sentence's first token in the whole
run (epoch * N + offset), so it does not depend on the number of threads.
"""
import math

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from stages.word2vec.rng import below, split_draw, uniform

# fastmath without 'nnan'/'ninf', so non-finite weights still show up in the checks.
FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}
# word2vec.c's MAX_EXP: past |h . w| >= 6 hierarchical softmax skips the node's update,
# while negative sampling updates with sigma saturated to 0 or 1 (a quirk kept on purpose).
SIGMOID_BOUND = 6.0
# Per thread: loss sum over sampled predictions, sampled predictions, all predictions,
# words seen (in the vocabulary), words kept after subsampling.
COUNTERS = 5
# Functions that take another jitted function as an argument are not cached on disk: Numba
# keys such cache entries by the function's type, which holds a weak reference that does not
# survive into another process, and saving the index then fails (ReferenceError). They
# compile in about 1.5 s per process; everything they call is cached.
# The per-prediction functions below are inlined at the Numba IR level (inline="always"):
# left to LLVM, the five-deep call chain sentence -> centre word -> context -> output step
# -> logistic unit was not fully inlined, and training ran 15-30% slower.
# The loss (a log per output unit) is computed for one prediction in this many: it would
# otherwise cost about 40% of the training time, and a sample of millions is exact enough.
LOSS_SAMPLE_EVERY = 16
# With several threads, each keeps a private copy of the HOT_ROWS output rows that every
# thread touches all the time (the inner nodes nearest the Huffman root; the most frequent
# words as negatives) and merges its changes into the shared rows every SYNC_EVERY centre
# words. Without it the cores fight over those cache lines and two threads run barely
# faster than one. With one thread nothing is private and the updates are word2vec.c's.
HOT_ROWS = 256
SYNC_EVERY = 256


@intrinsic
def prefetch_line(typingctx, matrix, row, column):
    """Ask the CPU to start loading the cache line holding matrix[row, column] (a hint:
    it changes no value). Lets the loads of all of a prediction's negatives overlap
    instead of waiting for each row in turn."""
    def codegen(context, builder, signature, args):
        array = context.make_array(signature.args[0])(context, builder, args[0])
        indices = [context.cast(builder, value, kind, types.intp)
                   for value, kind in zip(args[1:], signature.args[1:])]
        pointer = cgutils.get_item_pointer(context, builder, signature.args[0], array, indices)
        byte_pointer, i32 = ir.IntType(8).as_pointer(), ir.IntType(32)
        hint = ir.FunctionType(ir.VoidType(), [byte_pointer, i32, i32, i32])
        function = cgutils.get_or_insert_function(builder.module, hint, "llvm.prefetch.p0")
        # write access, high temporal locality, data cache
        builder.call(function, [builder.bitcast(pointer, byte_pointer), i32(1), i32(3), i32(1)])
        return context.get_dummy_value()
    return types.void(matrix, row, column), codegen


@njit(cache=True)
def prefetch_row(matrix, row):
    for column in range(0, matrix.shape[1], 16):     # 16 float32 = one 64-byte line
        prefetch_line(matrix, row, column)


SIGMOID_TABLE_SIZE = 2048
_SIGMOID_SCALE = np.float32(SIGMOID_TABLE_SIZE / (2 * SIGMOID_BOUND))
_SIGMOID = (1.0 / (1.0 + np.exp(SIGMOID_BOUND - np.arange(SIGMOID_TABLE_SIZE + 1)
                                / float(_SIGMOID_SCALE)))).astype(np.float32)


@njit(cache=True, fastmath=FASTMATH)
def sigmoid(x):
    """1 / (1 + exp(-x)) for float32 |x| < SIGMOID_BOUND by linear interpolation in a
    2049-entry table: absolute error below 6e-7 (a test checks it), i.e. float32 rounding,
    at a fraction of the cost of exp() and a division in the innermost loop."""
    position = (x + np.float32(SIGMOID_BOUND)) * _SIGMOID_SCALE
    # x just below the bound rounds to position == SIGMOID_TABLE_SIZE in float32: clamp,
    # or the interpolation would read one entry past the table
    i = min(int(position), SIGMOID_TABLE_SIZE - 1)
    frac = position - np.float32(i)
    return _SIGMOID[i] + frac * (_SIGMOID[i + 1] - _SIGMOID[i])


@njit(cache=True, fastmath=FASTMATH)
def dot(a, b):
    total = np.float32(0.0)
    for k in range(a.shape[0]):
        total += a[k] * b[k]
    return total


@njit(cache=True, fastmath=FASTMATH, inline="always")
def logistic_step(h, grad_h, row, grad_row, label, alpha, saturate, with_loss):
    """One binary logistic unit: p(label | h) = sigma((2 label - 1) h . row).
    h, grad_h, row, grad_row float32 [D]. Adds alpha * (label - sigma) * row to grad_h and
    alpha * (label - sigma) * h to grad_row; returns -log p(label | h) (float64) if
    with_loss, else 0. word2vec passes the row itself as grad_row (an SGD step, alpha = the
    learning rate); the RNN LM passes a gradient row and alpha = -1 / tokens.
    saturate: NS semantics past the bound; otherwise (HS) the update is skipped."""
    f = dot(h, row)
    loss = 0.0
    if with_loss:
        loss = math.log1p(math.exp(-np.float64(f))) + (0.0 if label == 1 else np.float64(f))
    if f >= SIGMOID_BOUND or f <= -SIGMOID_BOUND:
        if not saturate:
            return loss
        g = np.float32((label - (1.0 if f > 0 else 0.0)) * alpha)
    else:
        g = np.float32((label - sigmoid(f)) * alpha)
    for k in range(h.shape[0]):
        grad_h[k] += g * row[k]
        grad_row[k] += g * h[k]
    return loss


@njit(cache=True)
def output_row(rows, index):
    """Row `index` of the output weights: from the thread's private hot copy if it has one.
    rows = (weights float32 [R, D], hot float32 [H, D], hot_start int64)."""
    weights, hot, hot_start = rows
    offset = index - hot_start
    if 0 <= offset < hot.shape[0]:
        return hot[offset]
    return weights[index]


@njit(cache=True, fastmath=FASTMATH, inline="always")
def hs_step(h, grad_h, rows, word, head, alpha, rng, with_loss):
    """Hierarchical softmax for `word` over the inner-node rows (weights [V-1, D]);
    head = (codes uint8 [V, L], points int32 [V, L], lengths uint8 [V]).
    Label of node j is 1 - code[j] (word2vec.c). Returns the loss -log p(word | h)."""
    codes, points, lengths = head
    # No prefetching here: in skip-gram the path is walked once per context word and is
    # already in L1 after the first (prefetching it each time cost 8%), and with two
    # threads it bought CBOW nothing measurable.
    loss = 0.0
    for j in range(lengths[word]):
        label = 1 - np.int64(codes[word, j])
        row = output_row(rows, points[word, j])
        loss += logistic_step(h, grad_h, row, row, label, alpha, False, with_loss)
    return loss


@njit(cache=True, fastmath=FASTMATH, inline="always")
def ns_step(h, grad_h, rows, word, head, alpha, rng, with_loss):
    """Negative sampling: `word` is the positive, `negative` draws from the alias table
    (a draw equal to `word` is skipped, as in word2vec.c). Output rows: weights [V, D];
    head = (accept float64 [V], alias int32 [V], negative int64). Returns the loss."""
    accept, alias, negative = head
    replay = rng[0]                 # draw the negatives once to prefetch their rows ...
    for _ in range(negative):
        index, u = split_draw(rng, accept.shape[0])
        prefetch_row(rows[0], index if u < accept[index] else alias[index])
    rng[0] = replay                 # ... then draw the very same ones again to use them
    positive = output_row(rows, word)
    loss = logistic_step(h, grad_h, positive, positive, 1, alpha, True, with_loss)
    for _ in range(negative):
        index, u = split_draw(rng, accept.shape[0])
        target = index if u < accept[index] else alias[index]
        if target != word:
            row = output_row(rows, target)
            loss += logistic_step(h, grad_h, row, row, 0, alpha, True, with_loss)
    return loss


@njit(fastmath=FASTMATH, inline="always")
def sg_window(output_step, vectors, context, count, grad, rows, word, head, alpha, rng, with_loss):
    """Skip-gram for one centre word, in word2vec.c's order: each of the `count` context
    vectors (ids in context int32) in turn predicts `word` and gets its own gradient."""
    loss = 0.0
    for c in range(count):
        h = vectors[context[c]]
        grad[:] = 0.0
        loss += output_step(h, grad, rows, word, head, alpha, rng, with_loss)
        h += grad
    return loss


@njit(cache=True)
def kept_words(buffer, tokens, start, end, vocab_size, keep, rng):
    """Copy the in-vocabulary tokens[start:end] that survive subsampling into buffer.
    Returns (kept, seen): seen counts every in-vocabulary token."""
    kept, seen = 0, 0
    for i in range(start, end):
        word = tokens[i]
        if word >= vocab_size:
            continue
        seen += 1
        if keep[word] < 1.0 and keep[word] < uniform(rng):
            continue
        buffer[kept] = word
        kept += 1
    return kept, seen


@njit(cache=True)
def learning_rate(position, alpha_start, alpha_end, total_tokens):
    return alpha_start - (alpha_start - alpha_end) * min(position / total_tokens, 1.0)


@njit(cache=True)
def longest_sentence(offsets, first, last):
    longest = 0
    for s in range(first, last):
        longest = max(longest, offsets[s + 1] - offsets[s])
    return longest


@njit(cache=True)
def private_copy(state):
    """The thread's RNG state in its own cache line: threads drawing from neighbouring
    slots of one shared array would fight over that line on every draw."""
    local = np.empty(8, dtype=np.uint64)
    local[0] = state[0]
    return local


@njit(fastmath=FASTMATH, inline="always")
def skipgram_centre(output_step, vectors, buffer, n, i, radius, context, work, rows, head,
                    alpha, rng, with_loss):
    """Skip-gram for centre word buffer[i]: as word2vec.c, each context word's vector in
    turn predicts the centre word and gets its own gradient. Returns (loss, predictions)."""
    count = 0
    for j in range(max(0, i - radius), min(n, i + radius + 1)):
        if j != i:
            context[count] = buffer[j]
            count += 1
    loss = sg_window(output_step, vectors, context, count, work[1], rows, buffer[i], head,
                     alpha, rng, with_loss)
    return loss, count


@njit(fastmath=FASTMATH, inline="always")
def cbow_centre(output_step, vectors, buffer, n, i, radius, context, work, rows, head,
                alpha, rng, with_loss, mean):
    """CBOW for centre word buffer[i]: the context's mean (or sum) predicts it; every
    context vector then gets the whole input gradient (word2vec.c, both modes)."""
    lo, hi = max(0, i - radius), min(n, i + radius + 1)
    if hi - lo < 2:
        return 0.0, 0                                       # no context word
    hidden, grad = work
    hidden[:] = 0.0
    for j in range(lo, hi):
        if j != i:
            hidden += vectors[buffer[j]]
    if mean:
        hidden /= np.float32(hi - lo - 1)
    grad[:] = 0.0
    loss = output_step(hidden, grad, rows, buffer[i], head, alpha, rng, with_loss)
    for j in range(lo, hi):
        if j != i:
            vectors[buffer[j]] += grad
    return loss, 1


@njit(fastmath=FASTMATH, inline="always")
def cbow_mean_centre(output_step, vectors, buffer, n, i, radius, context, work, rows, head,
                     alpha, rng, with_loss):
    return cbow_centre(output_step, vectors, buffer, n, i, radius, context, work, rows, head,
                       alpha, rng, with_loss, True)


@njit(fastmath=FASTMATH, inline="always")
def cbow_sum_centre(output_step, vectors, buffer, n, i, radius, context, work, rows, head,
                    alpha, rng, with_loss):
    return cbow_centre(output_step, vectors, buffer, n, i, radius, context, work, rows, head,
                       alpha, rng, with_loss, False)


@njit(fastmath=FASTMATH)
def train_sentences(centre_step, output_step, vectors, weights, counters, tokens, offsets,
                    first, last, keep, head, hot_start, hot_count, window, alpha_start,
                    alpha_end, token_base, total_tokens, state):
    """One thread's work: sentences [first, last), subsampled, one centre_step per kept
    word with an effective window drawn from 1..window. Counters live in locals while it
    runs and go back to `counters` once, at the end; the loss is computed for one centre
    word in LOSS_SAMPLE_EVERY."""
    rng = private_copy(state)
    hot = weights[hot_start:hot_start + hot_count].copy()
    base = hot.copy()
    rows = (weights, hot, np.int64(hot_start))
    buffer = np.empty(longest_sentence(offsets, first, last), dtype=np.int32)
    context = np.empty(2 * window, dtype=np.int32)
    # two separate scratch vectors (hidden layer, gradient): a tuple of arrays, not rows of
    # one matrix, so no per-word slicing is needed
    work = (np.zeros(vectors.shape[1], dtype=np.float32), np.zeros(vectors.shape[1], dtype=np.float32))
    loss, sampled, predictions = counters[0], np.int64(counters[1]), np.int64(counters[2])
    seen_total, kept_total = np.int64(counters[3]), np.int64(counters[4])
    for s in range(first, last):
        alpha = learning_rate(token_base + offsets[s], alpha_start, alpha_end, total_tokens)
        n, seen = kept_words(buffer, tokens, offsets[s], offsets[s + 1], vectors.shape[0], keep, rng)
        seen_total += seen
        for i in range(n):
            if hot_count > 0 and kept_total % SYNC_EVERY == 0:
                merge_hot(weights, hot, base, hot_start)
            radius = window - below(rng, window)
            with_loss = kept_total % LOSS_SAMPLE_EVERY == 0
            centre_loss, made = centre_step(output_step, vectors, buffer, n, i, radius, context,
                                            work, rows, head, alpha, rng, with_loss)
            loss += centre_loss
            sampled += made if with_loss else 0
            predictions += made
            kept_total += 1
    merge_hot(weights, hot, base, hot_start)
    store_counters(counters, loss, sampled, predictions, seen_total, kept_total)
    state[0] = rng[0]


@njit(cache=True, fastmath=FASTMATH)
def merge_hot(weights, hot, base, hot_start):
    """Add the thread's changes to its private hot rows (hot - base) into the shared rows,
    then refresh the private copy from them."""
    for r in range(hot.shape[0]):
        shared = weights[hot_start + r]
        for k in range(shared.shape[0]):
            value = shared[k] + (hot[r, k] - base[r, k])
            shared[k] = value
            hot[r, k] = value
            base[r, k] = value


@njit(cache=True)
def store_counters(counters, loss, sampled, predictions, seen, kept):
    counters[0] = loss
    counters[1] = sampled
    counters[2] = predictions
    counters[3] = seen
    counters[4] = kept


@njit(parallel=True)
def train_threads(centre_step, output_step, vectors, weights, counters, tokens, offsets,
                  thread_sentences, keep, head, hot_start, window, alpha_start, alpha_end,
                  token_base, total_tokens, rng_states):
    """One prange iteration per thread, each over its own sentences."""
    threads = thread_sentences.shape[0] - 1
    hot_count = min(HOT_ROWS if threads > 1 else 0, weights.shape[0] - hot_start)
    for t in prange(threads):
        train_sentences(centre_step, output_step, vectors, weights, counters[t], tokens,
                        offsets, thread_sentences[t], thread_sentences[t + 1], keep, head,
                        hot_start, hot_count, window, alpha_start, alpha_end, token_base,
                        total_tokens, rng_states[t:t + 1])


def skipgram(output_step, vectors, weights, counters, tokens, offsets, thread_sentences,
             keep, head, hot_start, window, alpha_start, alpha_end, token_base, total_tokens,
             rng_states):
    """vectors float32 [V, D], weights float32 [V-1 or V, D] (updated in place);
    counters float64 [T, COUNTERS] (accumulated); tokens int32 [N]; offsets int64 [S+1];
    thread_sentences int64 [T+1]: thread t trains sentences [ts[t], ts[t+1]);
    keep float32 [V]; head: the output step's arrays; hot_start: first of the output rows
    threads keep private copies of; rng_states uint64 [T]."""
    train_threads(skipgram_centre, output_step, vectors, weights, counters, tokens, offsets,
                  thread_sentences, keep, head, hot_start, window, alpha_start, alpha_end,
                  token_base, total_tokens, rng_states)


def cbow(output_step, vectors, weights, counters, tokens, offsets, thread_sentences,
         keep, head, hot_start, window, cbow_mean, alpha_start, alpha_end, token_base,
         total_tokens, rng_states):
    """As `skipgram`, plus cbow_mean (bool): average the context vectors (else sum)."""
    centre = cbow_mean_centre if cbow_mean else cbow_sum_centre
    train_threads(centre, output_step, vectors, weights, counters, tokens, offsets,
                  thread_sentences, keep, head, hot_start, window, alpha_start, alpha_end,
                  token_base, total_tokens, rng_states)
