"""@njit kernels for word2vec on the CPU (see the package docstring for the legend).

Threads: `skipgram` and `cbow` run one prange iteration per thread; each takes the next
block of sentences from a shared counter until none is left, updating the shared weights
without locks (Hogwild, as word2vec.c). Each thread has its own RNG state and its own
counter row, which Python sums in a fixed order.

The learning rate falls linearly with a sentence's position in the run's training order
(epoch * N + its block's position in the epoch plan + its offset in the block: see
train.epoch_plan), as word2vec.c's falls with the words all threads have trained.
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
# Everything a thread runs per word allocates nothing and is compiled without Numba's
# reference counting (_nrt=False). With it, every call took and dropped a reference on each
# array argument: atomic updates of one counter per matrix, shared by all threads. They cost
# 25-35% of CBOW + HS training on one thread, and with two the cores fought over those
# counters' cache lines.

# word2vec.c's MAX_EXP: past |h . w| >= 6 hierarchical softmax skips the node's update,
# while negative sampling updates with sigma saturated to 0 or 1 (a quirk kept on purpose;
# gensim skips such units instead, which raised skip-gram + NS's WordSim-353 from 0.405 to
# 0.419 in an experiment: bench/RESULTS.md).
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
# With several threads, each trains on private copies of the output rows that all threads
# touch most (the inner nodes nearest the Huffman root; the most frequent words as
# negatives) and adds its changes to the shared rows every so many centre words: the
# kernels' `private` argument, (first private row, private rows, centre words between
# merges). A row is copied in on its first use after a merge and only the rows used go
# back, so a merge costs the rows a thread touched, not all of them. With one thread nothing
# is private and the updates are word2vec.c's.
# How many rows, and how often they merge (the runs are in bench/RESULTS.md). A merge costs
# the rows used since the last one: each is added back (copy - base) and copied in afresh on
# its next use, reading a line the other core has just written. One thread that keeps
# private rows as two would (no other thread's noise) measures that cost: on an Intel Xeon
# host, CBOW + HS 11% slower merging 4,096 rows every 16,384 centre words, 3% every 65,536;
# skip-gram + HS 20% slower merging 4,096 every 1,024, 7% with 1,024 rows every 2,048. With
# two threads CBOW + HS merges every 65,536 (seeds 1-3: 12.60% analogy / 0.325 WordSim
# against 12.72% / 0.332 every 16,384, within the seeds' spread of 0.7 points; an earlier
# run, seeds 1-4: 12.40% / 0.335 against 12.54% / 0.335). Skip-gram makes about window + 1
# predictions per centre word where CBOW makes one, so its private rows go stale faster:
# merging 4,096 rows every 16,384 centre words cost it 0.8 analogy points (15.0% against
# 15.8% every 1,024). It keeps 1,024 rows (the ten levels nearest the root) and merges them
# every 2,048 centre words: seeds 1-3, 15.82% / 0.467 against 15.41% / 0.471 with 4,096
# every 1,024, and 1.93x one thread's words/s against 1.86x (medians of seven alternated
# rounds). The interval does not scale with the window: at window 10 (4,096 rows), merging
# every 558 centre words (as many predictions between merges as 1,024 at window 5) scored
# as 1,024 did (14.0% / 0.490 against 14.0% / 0.501, seeds 1-3) and ran 4% slower.
# A private row holds a copy and a merge base (8 D bytes) and pays only while it stays in
# the core's cache, so HS keeps at most HS_PRIVATE_BYTES of them: at D = 300, 4,096 rows
# (9.8 MB) ran slower than 2,048. Negative sampling's rows spread over the vocabulary,
# so copies of its most frequent words' rows cover less of the sharing: with two threads
# 256 of them merged every 1,024 centre words cost about what they saved (AMD EPYC host:
# skip-gram + NS 1.219 against 1.193 Mw/s without them), 4,096 cost more, and on an Intel
# Xeon host two threads without them ran 1.68x one thread's words/s against 1.62x with
# them (CBOW + NS) and 1.68x against 1.60x (skip-gram + NS; medians of paired rounds).
# Two threads therefore keep none for NS; seeds 1-3 scored the same either way (CBOW + NS
# 16.17% / 0.380 without, 16.45% / 0.385 with; skip-gram + NS 15.01% / 0.415 and
# 14.81% / 0.418).
# Each thread adds a delta computed on its own stale copy, so the longer HS settings hold
# only for two threads, where they were measured: with 16 threads on 16 cores merging every
# 16,384 wrecked training (3.1% analogy, skip-gram + HS). More threads keep 256 rows and
# merge them, HS and NS alike, every 128 centre words: on 16 cores
# (bench/word2vec_many_threads.py) that trained as well as no private rows at all, which
# ran 11x (skip-gram + HS) and 5x (CBOW + HS) slower: skip-gram + HS 14.6% analogy and
# WordSim 0.497 against 15.1% and 0.481, CBOW + HS 12.3% and 0.407 against 12.7% and 0.357.
# Merges every 1,024 lost skip-gram + HS 5 points of analogy (10.3%) and CBOW + HS 6
# (6.8%); dividing each merged change by the number of threads holding a copy kept the
# analogy (16.2%, 13.1%) but cost skip-gram + HS its WordSim (0.31-0.32).
# (rows, centre words between merges) with two threads, by model:
HS_TWO_THREADS = {"cbow": (4096, 65536), "skipgram": (1024, 2048)}
HS_PRIVATE_BYTES = 5 << 20
MANY_THREADS_ROWS, MANY_THREADS_MERGE_EVERY = 256, 128
NO_PRIVATE_ROWS = (0, 0, 1)                 # `private` when no row is private


def hs_private_rows(dim: int, threads: int, model: str) -> tuple[int, int]:
    """(inner nodes nearest the root each thread keeps privately, centre words between its
    merges) for `model` ("skipgram" or "cbow"): see above."""
    if threads > 2:
        rows, merge_every = MANY_THREADS_ROWS, MANY_THREADS_MERGE_EVERY
    else:
        rows, merge_every = HS_TWO_THREADS[model]
    return max(1, min(rows, HS_PRIVATE_BYTES // (8 * dim))), merge_every


def ns_private_rows(threads: int) -> tuple[int, int]:
    """(most frequent words each thread keeps privately as negatives, centre words between
    its merges): none with up to two threads; see above."""
    if threads > 2:
        return MANY_THREADS_ROWS, MANY_THREADS_MERGE_EVERY
    return NO_PRIVATE_ROWS[1:]


def element_pointer(context, builder, array_type, array, indices):
    """LLVM pointer to array[indices] (intp index values) inside an intrinsic's codegen."""
    value = context.make_array(array_type)(context, builder, array)
    return cgutils.get_item_pointer(context, builder, array_type, value, indices)


@intrinsic
def prefetch_line(typingctx, matrix, row, column):
    """Ask the CPU to start loading the cache line holding matrix[row, column] (a hint:
    it changes no value). Lets the loads of all of a prediction's negatives overlap
    instead of waiting for each row in turn."""
    def codegen(context, builder, signature, args):
        indices = [context.cast(builder, value, kind, types.intp)
                   for value, kind in zip(args[1:], signature.args[1:])]
        pointer = element_pointer(context, builder, signature.args[0], args[0], indices)
        byte_pointer, i32 = ir.IntType(8).as_pointer(), ir.IntType(32)
        hint = ir.FunctionType(ir.VoidType(), [byte_pointer, i32, i32, i32])
        function = cgutils.get_or_insert_function(builder.module, hint, "llvm.prefetch.p0")
        # write access, high temporal locality, data cache
        builder.call(function, [builder.bitcast(pointer, byte_pointer), i32(1), i32(3), i32(1)])
        return context.get_dummy_value()
    return types.void(matrix, row, column), codegen


@njit(cache=True, _nrt=False)
def prefetch_row(matrix, row):
    for column in range(0, matrix.shape[1], 16):     # 16 float32 = one 64-byte line
        prefetch_line(matrix, row, column)


@intrinsic
def fetch_add(typingctx, counter, value):
    """Atomically add `value` to counter[0] (int64) and return its previous value: how
    threads take the next block of sentences."""
    def codegen(context, builder, signature, args):
        pointer = element_pointer(context, builder, signature.args[0], args[0],
                                  [context.get_constant(types.intp, 0)])
        return builder.atomic_rmw("add", pointer, args[1], "seq_cst")
    return types.int64(counter, types.int64), codegen


SIGMOID_TABLE_SIZE = 2048
_SIGMOID_SCALE = np.float32(SIGMOID_TABLE_SIZE / (2 * SIGMOID_BOUND))
_SIGMOID = (1.0 / (1.0 + np.exp(SIGMOID_BOUND - np.arange(SIGMOID_TABLE_SIZE + 1)
                                / float(_SIGMOID_SCALE)))).astype(np.float32)


@njit(cache=True, fastmath=FASTMATH, _nrt=False)
def sigmoid(x):
    """1 / (1 + exp(-x)) for float32 |x| < SIGMOID_BOUND by linear interpolation in a
    2049-entry table: absolute error below 6e-7 (a test checks it), i.e. float32 rounding,
    at a fraction of the cost of exp() and a division in the innermost loop."""
    position = (x + np.float32(SIGMOID_BOUND)) * _SIGMOID_SCALE
    # x just below the bound rounds to position == SIGMOID_TABLE_SIZE in float32: clamp,
    # or the interpolation would read one entry past the table. A NaN x (weights that
    # diverged within a chunk, before the check after it) converts to the most negative
    # integer: clamped to 0 it reads the table and returns NaN, which the check then finds.
    i = max(0, min(int(position), SIGMOID_TABLE_SIZE - 1))
    frac = position - np.float32(i)
    return _SIGMOID[i] + frac * (_SIGMOID[i + 1] - _SIGMOID[i])


@njit(cache=True, fastmath=FASTMATH, inline="always", _nrt=False)
def logistic_step(h, grad_h, weights, row, grad_weights, grad_row, label, alpha, saturate,
                  with_loss):
    """One binary logistic unit: p(label | h) = sigma((2 label - 1) h . weights[row]).
    h, grad_h float32 [D]; weights, grad_weights float32 [R, D]. Adds
    alpha * (label - sigma) * weights[row] to grad_h and alpha * (label - sigma) * h to
    grad_weights[grad_row]; returns -log p(label | h) (float64) if with_loss, else 0.
    word2vec passes the weights themselves as grad_weights (an SGD step, alpha = the
    learning rate); the RNN LM passes its gradient matrix and alpha = -1 / tokens.
    saturate: NS semantics past the bound; otherwise (HS) the update is skipped.
    Rows are indexed, never sliced: a row view takes a reference on its matrix, an atomic
    operation per unit that two threads sharing the matrix would fight over."""
    f = np.float32(0.0)
    for k in range(h.shape[0]):
        f += h[k] * weights[row, k]
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
        grad_h[k] += g * weights[row, k]
        grad_weights[grad_row, k] += g * h[k]
    return loss


@njit(cache=True, inline="always", _nrt=False)
def row_home(rows, index):
    """(matrix, row) that holds the thread's current value of row `index` of a shared
    matrix. rows = (shared float32 [R, D], first private row, private rows: see
    `private_rows`): the thread's private copy if it has one, copied in on the row's first
    use since the last merge; else the shared row."""
    shared, first, private = rows
    copy, base, stamp, used, window = private
    offset = index - first
    if offset < 0 or offset >= copy.shape[0]:
        return shared, index
    if stamp[offset] != window[0]:
        for k in range(shared.shape[1]):
            copy[offset, k] = shared[index, k]
            base[offset, k] = shared[index, k]
        stamp[offset] = window[0]
        used[window[1]] = offset
        window[1] += 1
    return copy, offset


@njit(cache=True, fastmath=FASTMATH, inline="always", _nrt=False)
def output_unit(h, grad_h, rows, index, label, alpha, saturate, with_loss):
    """logistic_step on output row `index` where the thread keeps it (see row_home)."""
    matrix, row = row_home(rows, index)
    return logistic_step(h, grad_h, matrix, row, matrix, row, label, alpha, saturate, with_loss)


@njit(cache=True)
def private_rows(count, dim):
    """A thread's private copies of shared rows: (copy float32 [P, D], base float32 [P, D]:
    the shared values when copied, stamp int64 [P]: the merge window of each copy, used
    int64 [P]: the rows copied this window, window int64 [2]: (window number, rows used))."""
    return (np.empty((count, dim), np.float32), np.empty((count, dim), np.float32),
            np.full(count, -1, np.int64), np.empty(count, np.int64), np.zeros(2, np.int64))


@njit(cache=True, fastmath=FASTMATH, _nrt=False)
def merge_private(weights, first, private):
    """Add the thread's changes to the private rows it used (copy - base) into the shared
    rows and start a new window: the next use of any private row copies it afresh."""
    copy, base, stamp, used, window = private
    for i in range(window[1]):
        r = used[i]
        for k in range(weights.shape[1]):
            weights[first + r, k] += copy[r, k] - base[r, k]
    window[0] += 1
    window[1] = 0


@njit(cache=True, fastmath=FASTMATH, inline="always", _nrt=False)
def hs_step(h, grad_h, rows, word, head, alpha, rng, with_loss):
    """Hierarchical softmax for `word` over the inner-node rows (weights [V-1, D]);
    head = (codes uint8 [V, L], points int32 [V, L], lengths uint8 [V]); rows = (weights,
    first private row, private rows). Label of node j is 1 - code[j] (word2vec.c).
    Returns the loss -log p(word | h)."""
    codes, points, lengths = head
    # No prefetching here: in skip-gram the path is walked once per context word and is
    # already in L1 after the first (prefetching it each time cost 8%), and with two
    # threads it bought CBOW nothing measurable.
    loss = 0.0
    for j in range(lengths[word]):
        loss += output_unit(h, grad_h, rows, np.int64(points[word, j]),
                            1 - np.int64(codes[word, j]), alpha, False, with_loss)
    return loss


@njit(cache=True, fastmath=FASTMATH, inline="always", _nrt=False)
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
    loss = output_unit(h, grad_h, rows, np.int64(word), 1, alpha, True, with_loss)
    for _ in range(negative):
        index, u = split_draw(rng, accept.shape[0])
        target = index if u < accept[index] else alias[index]
        if target != word:
            loss += output_unit(h, grad_h, rows, np.int64(target), 0, alpha, True, with_loss)
    return loss


@njit(fastmath=FASTMATH, inline="always", _nrt=False)
def sg_window(output_step, vectors, context, count, work, rows, word, head, alpha, rng,
              with_loss):
    """Skip-gram for one centre word, in word2vec.c's order: each of the `count` context
    vectors (ids in context int32) in turn predicts `word` and gets its own gradient.
    The context vector is copied into work[0] (word2vec.c reads it in place; the same
    values, as nothing writes it until its gradient is added)."""
    hidden, grad = work
    loss = 0.0
    for c in range(count):
        source = context[c]
        for k in range(hidden.shape[0]):
            hidden[k] = vectors[source, k]
            grad[k] = 0.0
        loss += output_step(hidden, grad, rows, word, head, alpha, rng, with_loss)
        for k in range(hidden.shape[0]):
            vectors[source, k] += grad[k]
    return loss


@njit(cache=True, _nrt=False)
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


@njit(cache=True, _nrt=False)
def learning_rate(position, alpha_start, alpha_end, total_tokens):
    return alpha_start - (alpha_start - alpha_end) * min(position / total_tokens, 1.0)


@njit(cache=True)
def longest_sentence(offsets, blocks):
    longest = 0
    for b in range(blocks.shape[0]):
        for s in range(blocks[b, 0], blocks[b, 1]):
            longest = max(longest, offsets[s + 1] - offsets[s])
    return longest


@njit(cache=True)
def private_copy(state):
    """The thread's RNG state in its own cache line: threads drawing from neighbouring
    slots of one shared array would fight over that line on every draw."""
    local = padded(1, np.uint64)
    local[0] = state[0]
    return local


@njit(cache=True)
def padded(size, dtype):
    """A thread's scratch array, zeroed, with 32 unused elements (>= 128 bytes) on both
    sides, so that no other thread's data shares its cache lines (or the adjacent lines
    the prefetcher pairs with them): two threads' small arrays may come from neighbouring
    heap memory."""
    return np.zeros(size + 64, dtype)[32:32 + size]


@njit(fastmath=FASTMATH, inline="always", _nrt=False)
def skipgram_centre(output_step, vectors, buffer, n, i, radius, context, work, rows, head,
                    alpha, rng, with_loss):
    """Skip-gram for centre word buffer[i]: as word2vec.c, each context word's vector in
    turn predicts the centre word and gets its own gradient. Returns (loss, predictions)."""
    count = 0
    for j in range(max(0, i - radius), min(n, i + radius + 1)):
        if j != i:
            context[count] = buffer[j]
            count += 1
    loss = sg_window(output_step, vectors, context, count, work, rows, buffer[i], head,
                     alpha, rng, with_loss)
    return loss, count


@njit(fastmath=FASTMATH, inline="always", _nrt=False)
def cbow_centre(output_step, vectors, buffer, n, i, radius, context, work, rows, head,
                alpha, rng, with_loss, mean):
    """CBOW for centre word buffer[i]: the context's mean (or sum) predicts it; every
    context vector then gets the whole input gradient (word2vec.c, both modes)."""
    lo, hi = max(0, i - radius), min(n, i + radius + 1)
    if hi - lo < 2:
        return 0.0, 0                                       # no context word
    hidden, grad = work
    # element loops, not row slices (see logistic_step)
    hidden[:] = 0.0
    grad[:] = 0.0
    for j in range(lo, hi):
        if j != i:
            source = buffer[j]
            for k in range(hidden.shape[0]):
                hidden[k] += vectors[source, k]
    if mean:
        hidden /= np.float32(hi - lo - 1)
    loss = output_step(hidden, grad, rows, buffer[i], head, alpha, rng, with_loss)
    for j in range(lo, hi):
        if j != i:
            target = buffer[j]
            for k in range(grad.shape[0]):
                vectors[target, k] += grad[k]
    return loss, 1


@njit(fastmath=FASTMATH, inline="always", _nrt=False)
def cbow_mean_centre(output_step, vectors, buffer, n, i, radius, context, work, rows, head,
                     alpha, rng, with_loss):
    return cbow_centre(output_step, vectors, buffer, n, i, radius, context, work, rows, head,
                       alpha, rng, with_loss, True)


@njit(fastmath=FASTMATH, inline="always", _nrt=False)
def cbow_sum_centre(output_step, vectors, buffer, n, i, radius, context, work, rows, head,
                    alpha, rng, with_loss):
    return cbow_centre(output_step, vectors, buffer, n, i, radius, context, work, rows, head,
                       alpha, rng, with_loss, False)


@njit(fastmath=FASTMATH)
def train_sentences(centre_step, output_step, vectors, weights, counters, tokens, offsets,
                    blocks, next_block, keep, head, private_start, private_count, merge_every,
                    window, alpha_start, alpha_end, token_base, total_tokens, state):
    """One thread's work: blocks of sentences taken in turn from the shared next_block
    counter until none is left; each sentence subsampled, one centre_step per kept word
    with an effective window drawn from 1..window. Counters live in locals while it runs
    and go back to `counters` once, at the end; the loss is computed for one centre word
    in LOSS_SAMPLE_EVERY."""
    rng = private_copy(state)
    rows = (weights, np.int64(private_start), private_rows(private_count, weights.shape[1]))
    buffer = padded(longest_sentence(offsets, blocks), np.int32)
    context = padded(2 * window, np.int32)
    # two separate scratch vectors (hidden layer, gradient): a tuple of arrays, not rows of
    # one matrix, so no per-word slicing is needed
    work = (padded(vectors.shape[1], np.float32), padded(vectors.shape[1], np.float32))
    loss, sampled, predictions = counters[0], np.int64(counters[1]), np.int64(counters[2])
    seen_total, kept_total = np.int64(counters[3]), np.int64(counters[4])
    # merges fall on the multiples of merge_every in kept_total: the next one, compared
    # per centre word in place of a division
    next_merge = -(-kept_total // merge_every) * merge_every
    block = fetch_add(next_block, np.int64(1))
    while block < blocks.shape[0]:
        first, end = blocks[block, 0], blocks[block, 1]
        shift = token_base + blocks[block, 2] - offsets[first]    # run position - offset
        for s in range(first, end):
            alpha = learning_rate(shift + offsets[s], alpha_start, alpha_end, total_tokens)
            n, seen = kept_words(buffer, tokens, offsets[s], offsets[s + 1], vectors.shape[0],
                                 keep, rng)
            seen_total += seen
            for i in range(n):
                if private_count > 0 and kept_total == next_merge:
                    merge_private(weights, private_start, rows[2])
                    next_merge += merge_every
                radius = window - below(rng, window)
                with_loss = kept_total % LOSS_SAMPLE_EVERY == 0
                centre_loss, made = centre_step(output_step, vectors, buffer, n, i, radius,
                                                context, work, rows, head, alpha, rng, with_loss)
                loss += centre_loss
                sampled += made if with_loss else 0
                predictions += made
                kept_total += 1
        block = fetch_add(next_block, np.int64(1))
    merge_private(weights, private_start, rows[2])
    store_counters(counters, loss, sampled, predictions, seen_total, kept_total)
    state[0] = rng[0]


@njit(cache=True, _nrt=False)
def store_counters(counters, loss, sampled, predictions, seen, kept):
    counters[0] = loss
    counters[1] = sampled
    counters[2] = predictions
    counters[3] = seen
    counters[4] = kept


# nogil: the calling thread lets go of the GIL while the threads train, so that a
# checkpoint can be written in the background meanwhile (train.train_epochs).
@njit(parallel=True, nogil=True)
def train_threads(centre_step, output_step, vectors, weights, counters, tokens, offsets,
                  blocks, keep, head, private, window, alpha_start, alpha_end,
                  token_base, total_tokens, rng_states):
    """One prange iteration per thread (rng_states.shape[0] of them), each taking blocks of
    sentences until none is left."""
    threads = rng_states.shape[0]
    next_block = padded(1, np.int64)
    private_start, private_count, merge_every = private
    private_count = min(private_count if threads > 1 else 0, weights.shape[0] - private_start)
    for t in prange(threads):
        train_sentences(centre_step, output_step, vectors, weights, counters[t], tokens,
                        offsets, blocks, next_block, keep, head, private_start, private_count,
                        merge_every, window, alpha_start, alpha_end, token_base,
                        total_tokens, rng_states[t:t + 1])


def skipgram(output_step, vectors, weights, counters, tokens, offsets, blocks, keep, head,
             private, window, alpha_start, alpha_end, token_base, total_tokens, rng_states):
    """vectors float32 [V, D], weights float32 [V-1 or V, D] (updated in place);
    counters float64 [T, COUNTERS] (accumulated); tokens int32 [N]; offsets int64 [S+1];
    blocks int64 [K, 3]: (first sentence, end sentence, position of the first sentence's
    first token in the epoch's training order), taken by the threads in turn (one thread:
    in order; see train.epoch_plan); token_base: epoch * N, the run position of the
    epoch's start; keep float32 [V]; head: the output step's arrays;
    private: (first output row, output rows, centre words between merges) of the rows
    each thread keeps private copies of when there are several threads (NO_PRIVATE_ROWS:
    none);
    rng_states uint64 [T]: one per thread."""
    train_threads(skipgram_centre, output_step, vectors, weights, counters, tokens, offsets,
                  blocks, keep, head, private, window, alpha_start, alpha_end,
                  token_base, total_tokens, rng_states)


def cbow(output_step, vectors, weights, counters, tokens, offsets, blocks, keep, head,
         private, window, cbow_mean, alpha_start, alpha_end, token_base, total_tokens,
         rng_states):
    """As `skipgram`, plus cbow_mean (bool): average the context vectors (else sum)."""
    centre = cbow_mean_centre if cbow_mean else cbow_sum_centre
    train_threads(centre, output_step, vectors, weights, counters, tokens, offsets, blocks,
                  keep, head, private, window, alpha_start, alpha_end, token_base,
                  total_tokens, rng_states)
