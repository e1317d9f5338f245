"""numba.cuda kernels for word2vec (legend in the package docstring), beside cpu.py's.

A *worker* is one block of 32 threads (one warp): its lanes split the vector dimensions
(lane l holds dimensions l, l + 32, ... in registers, D <= 32 x MAX_PER_LANE) and each dot
product is reduced in shared memory (every lane writes its partial sum, then every lane adds
the 32 partials in the same order, so all lanes agree bit for bit and take the same
branches). Workers train their own contiguous ranges of sentences, thousands at a time,
updating the shared weights without locks (Hogwild, as the CPU threads do). All lanes of a worker hold the same
RNG state and draw the same numbers in the same order as a CPU thread, so one worker
reproduces the CPU kernel with one thread to float32 rounding (a test checks it under the
simulator). The corpus, the weights and the tables stay on the device for the whole run;
each launch trains one chunk of sentences with the learning rate fed by its arguments.

The launchers `skipgram` and `cbow` take the CPU kernels' arguments (device arrays in place
of host arrays); `output_step` (cpu.hs_step or cpu.ns_step) picks the output layer, and
`private` is accepted and unused (the CPU's private hot rows fight cache-line sharing
between cores, which a GPU does not have in that form).
"""
import contextlib
import math
import types

import numpy as np
from numba import cuda, float32, float64, int64, uint64

from stages.word2vec import cpu

WARP = 32                             # threads per worker (block)
MAX_PER_LANE = 8                      # dimensions up to 256
_MUL = np.uint64(0x2545F4914F6CDD1D)


# --------------------------------------------------------------------- random numbers
@cuda.jit(device=True, inline=True)
def next_u64(state):
    """xorshift64*, as rng.next_u64: state uint64 [1] (a per-lane local copy)."""
    x = state[0]
    x ^= x >> uint64(12)
    x ^= x << uint64(25)
    x ^= x >> uint64(27)
    state[0] = x
    return x * _MUL


@cuda.jit(device=True, inline=True)
def uniform(state):
    return float64(next_u64(state) >> uint64(11)) * (1.0 / 9007199254740992.0)


@cuda.jit(device=True, inline=True)
def below(state, n):
    return int64(((next_u64(state) >> uint64(32)) * uint64(n)) >> uint64(32))


@cuda.jit(device=True, inline=True)
def split_draw(state, n):
    r = next_u64(state)
    index = int64(((r >> uint64(32)) * uint64(n)) >> uint64(32))
    return index, float64(r & uint64(0xFFFFFFFF)) * (1.0 / 4294967296.0)


# ------------------------------------------------------------------ warp-wide vectors
@cuda.jit(device=True, inline=True)
def block_sum(value, partials, lane):
    """The sum of `value` over the worker's 32 lanes, the same in every lane.
    partials float32 [WARP] in shared memory."""
    partials[lane] = value
    cuda.syncthreads()
    total = float32(0.0)
    for k in range(WARP):
        total += partials[k]
    cuda.syncthreads()                # nobody overwrites partials before all have read
    return total


@cuda.jit(device=True, inline=True)
def dot_row(h, matrix, row, lane, partials):
    """h . matrix[row] with h this lane's slice (registers) of a D-vector."""
    partial = float32(0.0)
    for k in range(MAX_PER_LANE):
        d = lane + WARP * k
        if d < matrix.shape[1]:
            partial += h[k] * matrix[row, d]
    return block_sum(partial, partials, lane)


@cuda.jit(device=True, inline=True)
def logistic_step(h, grad, weights, row, label, alpha, saturate, with_loss, lane, partials):
    """cpu.logistic_step for one worker: grad += g weights[row]; weights[row] += g h."""
    f = dot_row(h, weights, row, lane, partials)
    loss = 0.0
    if with_loss:
        loss = math.log1p(math.exp(-float64(f))) + (0.0 if label == 1 else float64(f))
    if f >= cpu.SIGMOID_BOUND or f <= -cpu.SIGMOID_BOUND:
        if not saturate:
            return loss
        g = float32((label - (1.0 if f > 0 else 0.0)) * alpha)
    else:
        g = float32((label - 1.0 / (1.0 + math.exp(-f))) * alpha)
    for k in range(MAX_PER_LANE):
        d = lane + WARP * k
        if d < weights.shape[1]:
            grad[k] += g * weights[row, d]
            # atomic: hundreds of workers update the hottest rows (the nodes near the root,
            # the frequent negatives) at once, and plain stores lost many of those updates
            cuda.atomic.add(weights, (row, d), g * h[k])
    return loss


@cuda.jit(device=True)
def hs_step(h, grad, weights, word, codes, points, lengths, alpha, rng, with_loss, lane,
            partials):
    """cpu.hs_step: head = (codes, points, lengths)."""
    loss = 0.0
    for j in range(lengths[word]):
        loss += logistic_step(h, grad, weights, points[word, j], 1 - int64(codes[word, j]),
                              alpha, False, with_loss, lane, partials)
    return loss


@cuda.jit(device=True)
def ns_step(h, grad, weights, word, accept, alias, negative, alpha, rng, with_loss, lane,
            partials):
    """cpu.ns_step: head = (accept, alias, negative); the same draws in the same order."""
    loss = logistic_step(h, grad, weights, word, 1, alpha, True, with_loss, lane, partials)
    for _ in range(negative):
        index, u = split_draw(rng, accept.shape[0])
        target = index if u < accept[index] else alias[index]
        if target != word:
            loss += logistic_step(h, grad, weights, target, 0, alpha, True, with_loss, lane,
                                  partials)
    return loss


# ------------------------------------------------------------------------ centre words
@cuda.jit(device=True)
def load_row(out, matrix, row, lane, scale):
    for k in range(MAX_PER_LANE):
        d = lane + WARP * k
        out[k] = matrix[row, d] * scale if d < matrix.shape[1] else float32(0.0)


@cuda.jit(device=True)
def add_row(matrix, row, values, lane):
    for k in range(MAX_PER_LANE):
        d = lane + WARP * k
        if d < matrix.shape[1]:
            cuda.atomic.add(matrix, (row, d), values[k])


def make_kernel(output_step, skipgram: bool):
    """One training kernel from one body: skip-gram or CBOW around an output step."""

    @cuda.jit(device=True)
    def skipgram_centre(vectors, weights, buffer, n, i, radius, h, grad, head_a, head_b,
                        head_c, alpha, rng, with_loss, lane, mean, partials):
        """Each context vector in turn predicts the centre word (cpu.skipgram_centre)."""
        loss, count = 0.0, 0
        for j in range(max(0, i - radius), min(n, i + radius + 1)):
            if j == i:
                continue
            load_row(h, vectors, buffer[j], lane, float32(1.0))
            for k in range(MAX_PER_LANE):
                grad[k] = 0.0
            loss += output_step(h, grad, weights, buffer[i], head_a, head_b, head_c, alpha, rng,
                                with_loss, lane, partials)
            add_row(vectors, buffer[j], grad, lane)
            count += 1
        return loss, count

    @cuda.jit(device=True)
    def cbow_centre(vectors, weights, buffer, n, i, radius, h, grad, head_a, head_b, head_c,
                    alpha, rng, with_loss, lane, mean, partials):
        """The context's mean (or sum) predicts the centre word (cpu.cbow_centre)."""
        lo, hi = max(0, i - radius), min(n, i + radius + 1)
        if hi - lo < 2:
            return 0.0, 0
        for k in range(MAX_PER_LANE):
            h[k] = 0.0
            grad[k] = 0.0
        for j in range(lo, hi):
            if j != i:
                for k in range(MAX_PER_LANE):
                    d = lane + WARP * k
                    if d < vectors.shape[1]:
                        h[k] += vectors[buffer[j], d]
        if mean:
            for k in range(MAX_PER_LANE):
                h[k] /= float32(hi - lo - 1)
        loss = output_step(h, grad, weights, buffer[i], head_a, head_b, head_c, alpha, rng,
                           with_loss, lane, partials)
        for j in range(lo, hi):
            if j != i:
                add_row(vectors, buffer[j], grad, lane)
        return loss, 1

    centre_step = skipgram_centre if skipgram else cbow_centre

    @cuda.jit
    def train_workers(vectors, weights, counters, tokens, offsets, blocks, keep,
                      head_a, head_b, head_c, window, mean, alpha_start, alpha_end, token_base,
                      total_tokens, rng_states, scratch):
        """One block of WARP threads per worker; worker w trains sentence block w
        (blocks int64 [W, 3], as cpu.train_sentences)."""
        worker, lane = cuda.blockIdx.x, cuda.threadIdx.x
        if worker >= blocks.shape[0]:
            return
        partials = cuda.shared.array(WARP, float32)
        rng = cuda.local.array(1, uint64)
        rng[0] = rng_states[worker]
        h = cuda.local.array(MAX_PER_LANE, float32)
        grad = cuda.local.array(MAX_PER_LANE, float32)
        buffer = scratch[worker]
        loss, sampled, predictions, seen_total, kept_total = 0.0, 0, 0, 0, 0
        first, end = blocks[worker, 0], blocks[worker, 1]
        shift = token_base + blocks[worker, 2] - offsets[first]     # run position - offset
        for s in range(first, end):
            position = min((shift + offsets[s]) / total_tokens, 1.0)
            alpha = alpha_start - (alpha_start - alpha_end) * position
            n = 0
            for t in range(offsets[s], offsets[s + 1]):
                word = tokens[t]
                if word >= vectors.shape[0]:
                    continue
                seen_total += 1
                if keep[word] < 1.0 and keep[word] < uniform(rng):
                    continue
                if lane == 0:
                    buffer[n] = word
                n += 1
            cuda.syncthreads()            # lane 0's buffer writes, before anyone reads
            for i in range(n):
                radius = window - below(rng, window)
                with_loss = kept_total % cpu.LOSS_SAMPLE_EVERY == 0
                centre_loss, made = centre_step(vectors, weights, buffer, n, i, radius, h, grad,
                                                head_a, head_b, head_c, alpha, rng, with_loss,
                                                lane, mean, partials)
                loss += centre_loss
                sampled += made if with_loss else 0
                predictions += made
                kept_total += 1
            cuda.syncthreads()            # all reads of the buffer before the next sentence
        if lane == 0:
            counters[worker, 0] += loss
            counters[worker, 1] += sampled
            counters[worker, 2] += predictions
            counters[worker, 3] += seen_total
            counters[worker, 4] += kept_total
            rng_states[worker] = rng[0]

    return train_workers


KERNELS = {(cpu.hs_step, True): make_kernel(hs_step, True),
           (cpu.hs_step, False): make_kernel(hs_step, False),
           (cpu.ns_step, True): make_kernel(ns_step, True),
           (cpu.ns_step, False): make_kernel(ns_step, False)}


def launch(output_step, skipgram, vectors, weights, counters, tokens, offsets, blocks,
           keep, head, window, mean, alpha_start, alpha_end, token_base, total_tokens,
           rng_states, scratch):
    workers = blocks.shape[0]
    if vectors.shape[1] > WARP * MAX_PER_LANE:
        raise ValueError(f"the CUDA kernels handle at most {WARP * MAX_PER_LANE} dimensions")
    kernel = KERNELS[(output_step, skipgram)]
    kernel[workers, WARP](vectors, weights, counters, tokens, offsets, blocks, keep,
                            *head, window, mean, alpha_start, alpha_end, token_base,
                            total_tokens, rng_states, scratch)


def skipgram(output_step, vectors, weights, counters, tokens, offsets, blocks,
             keep, head, private, window, alpha_start, alpha_end, token_base, total_tokens,
             rng_states, scratch):
    """As cpu.skipgram, on device arrays: blocks int64 [W, 3] gives each worker one block
    of sentences, rng_states uint64 [W] and counters float64 [W, COUNTERS] one row
    per worker; scratch int32 [W, longest sentence] holds each worker's kept words.
    A worker is a block of WARP threads."""
    launch(output_step, True, vectors, weights, counters, tokens, offsets, blocks,
           keep, head, window, True, alpha_start, alpha_end, token_base, total_tokens,
           rng_states, scratch)


def cbow(output_step, vectors, weights, counters, tokens, offsets, blocks, keep,
         head, private, window, cbow_mean, alpha_start, alpha_end, token_base, total_tokens,
         rng_states, scratch):
    """As cpu.cbow, on device arrays (see `skipgram`)."""
    launch(output_step, False, vectors, weights, counters, tokens, offsets, blocks,
           keep, head, window, cbow_mean, alpha_start, alpha_end, token_base, total_tokens,
           rng_states, scratch)


@cuda.jit
def flag_nonfinite(values, flag):
    """flag[0] = 1 if any entry of the 1-D `values` is NaN or infinite (grid-stride loop;
    every thread that finds one writes the same 1, so no atomics are needed)."""
    for i in range(cuda.grid(1), values.size, cuda.gridsize(1)):
        if not math.isfinite(values[i]):
            flag[0] = 1


def all_finite(*matrices, most_blocks: int = 1024) -> bool:
    """Whether every entry of the contiguous device arrays is finite, read on the device
    so that only one int32 crosses to the host (reference: np.isfinite(a).all())."""
    flag = cuda.to_device(np.zeros(1, np.int32))
    for matrix in matrices:
        values = matrix.reshape(matrix.size)
        blocks = max(1, min(most_blocks, -(-values.size // 256)))
        flag_nonfinite[blocks, 256](values, flag)
    return int(flag.copy_to_host()[0]) == 0


def kernel_signatures() -> dict:
    """{name: (kernel, argument types)} for every kernel (the four training kernels and
    the finiteness check), with the argument types of a real run (float32 weights, int32
    tokens, ...)."""
    from numba import typeof
    V, D, L = 10, 100, 4
    common = (np.zeros((V, D), np.float32), np.zeros((V, D), np.float32),
              np.zeros((2, cpu.COUNTERS)), np.zeros(5, np.int32), np.zeros(3, np.int64),
              np.zeros((2, 3), np.int64), np.zeros(V, np.float32))
    heads = {cpu.hs_step: (np.zeros((V, L), np.uint8), np.zeros((V, L), np.int32),
                           np.zeros(V, np.uint8)),
             cpu.ns_step: (np.zeros(V), np.zeros(V, np.int32), np.int64(5))}
    tail = (np.int64(5), True, 0.025, 0.0001, np.int64(0), np.int64(100),
            np.zeros(2, np.uint64), np.zeros((2, 16), np.int32))
    signatures = {}
    for (step, skipgram), kernel in KERNELS.items():
        name = f"{'skipgram' if skipgram else 'cbow'}_{'hs' if step is cpu.hs_step else 'ns'}"
        signatures[name] = (kernel, tuple(typeof(a) for a in (*common, *heads[step], *tail)))
    signatures["flag_nonfinite"] = (flag_nonfinite, (typeof(common[0].reshape(-1)),
                                                     typeof(np.zeros(1, np.int32))))
    return signatures


def compile_all_ptx(cc=(9, 0)) -> dict[str, str]:
    """PTX of every kernel for compute capability `cc`. Needs no GPU, only
    numba-cuda and NVVM."""
    ptx = {}
    with device_functions_compile_for(cc):
        for name, (kernel, signature) in kernel_signatures().items():
            ptx[name], _ = cuda.compile_ptx(kernel.py_func, signature, cc=cc)
    return ptx


@contextlib.contextmanager
def device_functions_compile_for(cc):
    """numba-cuda compiles the device functions a kernel calls for the current device's
    compute capability, even inside compile_ptx: with no GPU there is none, so stand in a
    device that reports `cc` while compiling."""
    from unittest import mock
    from numba.cuda import dispatcher
    stand_in = types.SimpleNamespace(compute_capability=cc)
    with mock.patch.object(dispatcher, "get_current_device", lambda: stand_in):
        yield
