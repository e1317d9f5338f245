"""word2vec's CUDA kernels without a GPU: under the CUDA simulator against the CPU kernels,
and compiled to PTX for sm_90 (Hopper) so type errors the simulator cannot see show up."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from stages import vocab
from stages.word2vec import cpu
from stages.word2vec.rng import seed_states
from tests.conftest import ROOT, simulated

cuda = pytest.importorskip("numba.cuda")


def tiny_problem(seed, V=12, D=8, sentences=6, loss="hs"):
    rng = np.random.default_rng(seed)
    counts = np.sort(rng.integers(5, 60, V))[::-1].copy()
    lengths = rng.integers(1, 9, sentences)
    tokens = rng.choice(V, size=lengths.sum(), p=counts / counts.sum()).astype(np.int32)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    vectors = ((rng.random((V, D)) - 0.5) / D).astype(np.float32)
    if loss == "hs":
        head, rows = vocab.build_huffman(counts), V - 1
    else:
        accept, alias = vocab.negative_sampling_alias(counts)
        head, rows = (accept, alias, np.int64(3)), V
    weights = rng.normal(scale=0.1, size=(rows, D)).astype(np.float32)
    keep = vocab.keep_probabilities(counts, 0.05)
    return tokens, offsets, vectors, weights, keep, tuple(head)


def run_both(model, loss, seed):
    """One CPU thread and one GPU worker over the same sentences, same seed."""
    from stages.word2vec import cuda as gpu
    tokens, offsets, vectors, weights, keep, head = tiny_problem(seed, loss=loss)
    step = cpu.hs_step if loss == "hs" else cpu.ns_step
    bounds = np.array([[0, offsets.size - 1, 0]], dtype=np.int64)   # one block: all of them
    results = []
    for module in (cpu, gpu):
        v, w = vectors.copy(), weights.copy()
        counters, states = np.zeros((1, cpu.COUNTERS)), seed_states(seed, 1)
        extra = (np.zeros((1, 16), np.int32),) if module is gpu else ()
        args = (step, v, w, counters, tokens, offsets, bounds, keep, head, cpu.NO_PRIVATE_ROWS, 3)
        schedule = (0.05, 0.0001, 0, 3 * tokens.size, states, *extra)
        if model == "skipgram":
            module.skipgram(*args, *schedule)
        else:
            module.cbow(*args, True, *schedule)
        results.append((v, w, counters, states))
    return results


@simulated
@pytest.mark.parametrize("model", ["skipgram", "cbow"])
@pytest.mark.parametrize("loss", ["hs", "ns"])
def test_one_cuda_worker_equals_one_cpu_thread(model, loss):
    """Same draws in the same order: equal to float32 rounding (the CPU's sigmoid is a
    table, the GPU's exact: both within 6e-7)."""
    (v_cpu, w_cpu, c_cpu, s_cpu), (v_gpu, w_gpu, c_gpu, s_gpu) = run_both(model, loss, seed=4)
    np.testing.assert_allclose(v_gpu, v_cpu, atol=2e-6)
    np.testing.assert_allclose(w_gpu, w_cpu, atol=2e-6)
    np.testing.assert_array_equal(c_gpu[:, 1:], c_cpu[:, 1:])       # counts exactly
    assert c_gpu[0, 0] == pytest.approx(c_cpu[0, 0], rel=1e-5)      # sampled loss
    np.testing.assert_array_equal(s_gpu, s_cpu)                      # RNG left in step
    assert np.abs(v_gpu - v_cpu).max() < 0.05 * np.abs(v_gpu - tiny_problem(4, loss=loss)[2]).max()


def skipgram_loss(vectors, weights, tokens, offsets, head, window):
    """Mean HS loss of every (context -> centre) pair within `window`, float64."""
    from stages.word2vec.reference import hs_loss_and_grads
    codes, points, lengths = head
    total, pairs = 0.0, 0
    for s in range(offsets.size - 1):
        words = tokens[offsets[s]:offsets[s + 1]]
        for i, centre in enumerate(words):
            for j in range(max(0, i - window), min(words.size, i + window + 1)):
                if j != i:
                    n = lengths[centre]
                    total += hs_loss_and_grads(vectors[words[j]].astype(np.float64),
                                               weights.astype(np.float64), codes[centre, :n],
                                               points[centre, :n])[0]
                    pairs += 1
    return total / pairs


@simulated
def test_many_workers_lower_the_loss_as_one_cpu_thread_does():
    """Hogwild with several blocks: not the CPU's exact numbers, the same learning."""
    from stages.word2vec import cuda as gpu
    _, _, vectors, weights, keep, head = tiny_problem(1, V=10, D=8)
    # runs of consecutive ids (3 4 5 6 ...): each word's neighbours are predictable
    starts = np.random.default_rng(3).integers(0, 10, 9)
    tokens = np.concatenate([(start + np.arange(6)) % 10 for start in starts]).astype(np.int32)
    offsets = np.arange(0, tokens.size + 1, 6, dtype=np.int64)
    runs = {"cpu": (cpu, np.array([[0, 9, 0]], np.int64)),
            "gpu": (gpu, np.array([[0, 3, 0], [3, 6, 18], [6, 9, 36]], np.int64))}
    before = skipgram_loss(vectors, np.zeros_like(weights), tokens, offsets, head, 2)
    after = {}
    for name, (module, bounds) in runs.items():
        v, w, workers = vectors.copy(), np.zeros_like(weights), bounds.shape[0]
        states, counters = seed_states(2, workers), np.zeros((workers, cpu.COUNTERS))
        for epoch in range(3):
            extra = (np.zeros((workers, 8), np.int32),) if module is gpu else ()
            module.skipgram(cpu.hs_step, v, w, counters, tokens, offsets, bounds,
                            np.ones_like(keep), head, cpu.NO_PRIVATE_ROWS, 2, 1.0, 0.0001, epoch * tokens.size,
                            3 * tokens.size, states, *extra)
        after[name] = skipgram_loss(v, w, tokens, offsets, head, 2)
    assert after["cpu"] < 0.8 * before and after["gpu"] < 0.8 * before
    assert after["gpu"] == pytest.approx(after["cpu"], rel=0.1)


@simulated
@pytest.mark.parametrize("planted", [None, np.nan, np.inf, -np.inf])
def test_the_device_finiteness_check_agrees_with_numpy(planted):
    """all_finite reads the device arrays in a grid-stride loop: one bad entry anywhere
    (the first, the last or in between, in either matrix) is found, also where one block
    of 256 threads strides over 700 entries."""
    from stages.word2vec import cuda as gpu
    rng = np.random.default_rng(5)
    for where in ([0], [299], [-1]):     # 299: only a second stride reaches it
        first, second = (rng.normal(size=shape).astype(np.float32) for shape in ((7, 100), (5, 3)))
        if planted is not None:
            first.reshape(-1)[where] = planted
        for matrices in ((first, second), (second, first)):
            expected = all(np.isfinite(m).all() for m in matrices)
            for most_blocks in (1, 1024):
                found = gpu.all_finite(*map(cuda.to_device, matrices), most_blocks=most_blocks)
                assert found == expected, (where, most_blocks)


def compile_in_child(module: str) -> dict:
    """{kernel: PTX} from module.compile_all_ptx((9, 0)) in a child process without the
    simulator (the real CUDA target; NVVM from numba-cuda[cu13], no GPU needed)."""
    script = (f"import json; from {module} import compile_all_ptx; "
              "print(json.dumps(compile_all_ptx((9, 0))))")
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
    if "CUDA_HOME" in done.stderr or "libNVVM" in done.stderr:
        pytest.fail(f"NVVM not found: install numba-cuda[cu13] ({done.stderr[-300:]})")
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_cuda_kernels_compile_to_ptx_for_sm90():
    """Real NVVM compilation (no simulator, no GPU needed): catches typing errors the
    simulator cannot see. (Registers and spills: bench/gpu.py, on a GPU.)"""
    ptx = compile_in_child("stages.word2vec.cuda")
    assert set(ptx) == {"skipgram_hs", "skipgram_ns", "cbow_hs", "cbow_ns", "flag_nonfinite"}
    for name, text in ptx.items():
        assert ".target sm_90" in text and ".entry" in text, name
