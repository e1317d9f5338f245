"""The RNN LM's CUDA kernels under the CUDA simulator against the CPU kernels (float32, tiny
sizes, several blocks), and compiled to PTX for sm_90."""

import numpy as np
import pytest

from stages.rnnlm import cpu, data
from stages.rnnlm.model import GATE_STORE, Optimiser
from tests.conftest import simulated
from tests.rnnlm.test_kernels import cell_problem, output_problem

cuda = pytest.importorskip("numba.cuda")
TOLERANCE = {"rtol": 2e-5, "atol": 2e-6}


def gpu():
    from stages.rnnlm import cuda as kernels
    return kernels


@simulated
@pytest.mark.parametrize("name, a_shape, b_shape, reference", [
    ("matmul_nn", (17, 5), (5, 19), lambda a, b: a @ b),
    ("matmul_nt", (17, 5), (19, 5), lambda a, b: a @ b.T),
    ("matmul_tn", (5, 17), (5, 19), lambda a, b: a.T @ b),
])
def test_tiled_products_equal_numpy(name, a_shape, b_shape, reference):
    """17 x 19 outputs: four 16 x 16 blocks, three of them partly outside the matrix."""
    rng = np.random.default_rng(0)
    a, b = (rng.normal(size=s).astype(np.float32) for s in (a_shape, b_shape))
    out = cuda.device_array((17, 19), np.float32)
    getattr(gpu(), name)(out, cuda.to_device(a), cuda.to_device(b))
    np.testing.assert_allclose(out.copy_to_host(), reference(a, b), rtol=1e-5, atol=1e-5)


def on_both(cell, p):
    """Forward then backward (upstream d_h = p['d_h']) with the CPU and the CUDA kernels."""
    T, B, D = p["x"].shape
    H = p["h0"].shape[1]
    results = []
    for module in (cpu, gpu()):
        arrays = {"h_all": np.zeros((T + 1, B, H), np.float32), "gates":
                  np.zeros((T, B, GATE_STORE[cell] * H), np.float32)}
        arrays["c_all"] = np.zeros_like(arrays["h_all"])
        arrays["h_all"][0], arrays["c_all"][0] = p["h0"], p["c0"]
        grads = {k: np.zeros_like(p[k]) for k in ("x", "w_x", "w_h", "b_x", "b_h")}
        grads.update(h0=np.zeros((B, H), np.float32), c0=np.zeros((B, H), np.float32))
        norms = np.zeros(T)
        live = {**arrays, **p, **{f"d_{k}": v for k, v in grads.items()}, "norms": norms}
        if module is not cpu:
            live = {k: cuda.to_device(v) for k, v in live.items()}
        forward, backward = (getattr(module, f"{cell}_{s}") for s in ("forward", "backward"))
        forward(live["h_all"], live["c_all"], live["gates"], live["x"], live["w_x"], live["w_h"],
                live["b_x"], live["b_h"])
        backward(live["d_x"], live["d_w_x"], live["d_w_h"], live["d_b_x"], live["d_b_h"],
                 live["d_h0"], live["d_c0"], live["norms"], live["d_h"], live["h_all"],
                 live["c_all"], live["gates"], live["x"], live["w_x"], live["w_h"])
        host = {k: (v.copy_to_host() if hasattr(v, "copy_to_host") else v) for k, v in live.items()}
        results.append(host)
    return results


@simulated
@pytest.mark.parametrize("cell", ["tanh", "relu", "lstm", "gru"])
def test_cell_kernels_equal_the_cpu_kernels(cell):
    p = {k: v.astype(np.float32) for k, v in cell_problem(cell, 3, 2, 5, 6, seed=1).items()}
    mine, theirs = on_both(cell, p)
    for key in ("h_all", "c_all", "gates", "d_x", "d_w_x", "d_w_h", "d_b_x", "d_b_h", "d_h0",
                "d_c0", "norms"):
        np.testing.assert_allclose(theirs[key], mine[key], err_msg=key, **TOLERANCE)


@simulated
def test_softmax_kernels_equal_the_cpu_kernels():
    h, w, b, targets = output_problem(5, 4, 21, seed=2, dtype=np.float32)
    results = []
    for module in (cpu, gpu()):
        exps, inverse = np.zeros((5, 21), np.float32), np.zeros(5, np.float32)
        d_h, d_w, d_b = np.zeros_like(h), np.zeros_like(w), np.zeros_like(b)
        arrays = [exps, inverse, h, w, b, targets, d_h, d_w, d_b]
        if module is not cpu:
            arrays = [cuda.to_device(a) for a in arrays]
        exps_, inverse_, h_, w_, b_, targets_, d_h_, d_w_, d_b_ = arrays
        loss = module.softmax_forward(exps_, inverse_, h_, w_, b_, targets_)
        module.softmax_backward(d_h_, d_w_, d_b_, exps_, inverse_, h_, w_, targets_, 0.2)
        results.append((loss, *[a.copy_to_host() if hasattr(a, "copy_to_host") else a
                                for a in (d_h_, d_w_, d_b_)]))
    assert results[1][0] == pytest.approx(results[0][0], rel=1e-5)
    for mine, theirs in zip(results[0][1:], results[1][1:]):
        np.testing.assert_allclose(theirs, mine, **TOLERANCE)


@simulated
def test_hs_kernels_equal_the_cpu_kernels():
    rng = np.random.default_rng(3)
    codes, points, lengths = data.lm_huffman(rng.integers(1, 100, 9))
    h = rng.normal(size=(6, 40)).astype(np.float32)           # 40 > 32: two dims per lane
    w = rng.normal(scale=0.1, size=(8, 40)).astype(np.float32)
    targets = rng.integers(0, 9, 6)
    results = []
    for module in (cpu, gpu()):
        arrays = [np.zeros(6), h, w, codes, points, lengths, targets, np.zeros_like(h),
                  np.zeros_like(w)]
        if module is not cpu:
            arrays = [cuda.to_device(a) for a in arrays]
        losses, h_, w_, codes_, points_, lengths_, targets_, d_h, d_w = arrays
        loss = module.hs_forward(losses, h_, w_, codes_, points_, lengths_, targets_)
        train_loss = module.hs_train(losses, d_h, d_w, h_, w_, codes_, points_, lengths_,
                                     targets_, 0.5)
        results.append((loss, train_loss, *[a.copy_to_host() if hasattr(a, "copy_to_host")
                                            else a for a in (d_h, d_w)]))
    assert results[1][0] == pytest.approx(results[0][0], rel=1e-5)
    assert results[1][1] == pytest.approx(results[0][1], rel=1e-5)
    assert results[0][1] == pytest.approx(results[0][0], rel=1e-5)
    for mine, theirs in zip(results[0][2:], results[1][2:]):
        np.testing.assert_allclose(theirs, mine, rtol=1e-4, atol=2e-6)


@simulated
def test_embedding_clipping_and_sgd_kernels_equal_the_cpu_kernels():
    rng = np.random.default_rng(4)
    embeddings = rng.normal(size=(7, 3)).astype(np.float32)
    ids = rng.integers(0, 7, (4, 5))
    x = cuda.device_array((4, 5, 3), np.float32)
    gpu().embed_forward(x, cuda.to_device(embeddings), cuda.to_device(ids))
    np.testing.assert_array_equal(x.copy_to_host(), embeddings[ids])
    d_embeddings, want = cuda.to_device(np.zeros((7, 3), np.float32)), np.zeros((7, 3), np.float32)
    gpu().embed_backward(d_embeddings, x, cuda.to_device(ids))
    cpu.embed_backward(want, embeddings[ids], ids)
    np.testing.assert_allclose(d_embeddings.copy_to_host(), want, rtol=1e-6)
    grads = rng.normal(size=300).astype(np.float32)
    mine, theirs = grads.copy(), cuda.to_device(grads)
    assert gpu().clip_global_norm(theirs, 2.0) == pytest.approx(cpu.clip_global_norm(mine, 2.0),
                                                                 rel=1e-6)
    np.testing.assert_allclose(theirs.copy_to_host(), mine, rtol=1e-5)
    params = rng.normal(size=300).astype(np.float32)
    device_params = cuda.to_device(params)
    gpu().sgd_step(device_params, cuda.to_device(mine), 0.5)
    cpu.sgd_step(params, mine, np.float32(0.5))
    np.testing.assert_allclose(device_params.copy_to_host(), params, rtol=1e-6)


def test_rnnlm_cuda_kernels_compile_to_ptx_for_sm90():
    """Real NVVM compilation, no GPU: see tests/word2vec/test_cuda.py."""
    from tests.word2vec.test_cuda import compile_in_child
    ptx = compile_in_child("stages.rnnlm.cuda")
    assert len(ptx) == 25
    for name, text in ptx.items():
        assert ".target sm_90" in text and ".entry" in text, name


@simulated
@pytest.mark.parametrize("cell, output, dropout, train_embeddings", [
    ("lstm", "softmax", 0.0, True), ("irnn", "hs", 0.0, True), ("gru", "softmax", 0.4, True),
    ("tanh", "hs", 0.3, True), ("lstm", "hs", 0.2, False)])
def test_a_whole_training_window_on_the_device_matches_the_cpu_model(cell, output, dropout,
                                                                     train_embeddings):
    """Loss, every parameter's gradient (embeddings, when trained, and h0 included) and the
    carried state after one window (the same dropout masks from the same RNG state), the
    clipped SGD step, and an evaluation window."""
    from stages.rnnlm.device import DeviceModel, device_optimiser
    from tests.rnnlm.test_train import small_model
    model = small_model(cell, output, V=9, D=4, H=5, dtype=np.float32,
                        train_embeddings=train_embeddings)
    model.keep, model.rng_state = 1.0 - dropout, np.array([12345], np.uint64)
    device = DeviceModel(model)
    rng = np.random.default_rng(5)
    ids, targets = rng.integers(0, 9, (3, 2)), rng.integers(0, 9, (3, 2))
    loss, state = model.train_window(ids, targets, model.initial_state(2), fresh=True)
    model.rng_state[0] = 12345          # the device model draws its masks from the host's RNG
    device_loss, device_state = device.train_window(ids, targets, device.initial_state(2), fresh=True)
    assert device_loss == pytest.approx(loss, rel=1e-5)
    np.testing.assert_allclose(device.grads.copy_to_host(), model.grads, rtol=1e-4, atol=2e-6)
    np.testing.assert_allclose(device_state[0].copy_to_host(), state[0], rtol=1e-5, atol=1e-6)
    assert gpu().clip_global_norm(device.grads, 0.1) == pytest.approx(
        cpu.clip_global_norm(model.grads, 0.1), rel=1e-5)
    host_params = model.params.copy()
    Optimiser("sgd", 0).step(host_params, model.grads, 0.5)
    device_optimiser(Optimiser("sgd", 0)).step(device.params, device.grads, 0.5)
    np.testing.assert_allclose(device.params.copy_to_host(), host_params, rtol=1e-4, atol=2e-6)
    model.params[...] = host_params
    loss, _ = model.evaluate_window(ids, targets, state)
    device_loss, _ = device.evaluate_window(ids, targets, device_state)
    assert device_loss == pytest.approx(loss, rel=1e-5)


@simulated
def test_adam_on_the_device_follows_adam_on_the_host():
    """Three steps from the same moments; the device copy of the state comes back equal."""
    rng = np.random.default_rng(6)
    params, grads = (rng.normal(size=50).astype(np.float32) for _ in range(2))
    host = Optimiser("adam", 50)
    device_params = cuda.to_device(params)
    from stages.rnnlm.device import device_optimiser
    on_device = device_optimiser(host)
    for step in range(3):
        on_device.step(device_params, cuda.to_device(grads * (step + 1)), 0.01)
        host.step(params, grads * (step + 1), 0.01)
    np.testing.assert_allclose(device_params.copy_to_host(), params, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(on_device.state["v"].copy_to_host(), host.state["v"], rtol=1e-5)
    assert on_device.state["step"][0] == host.state["step"][0] == 3


@pytest.fixture(scope="module")
def tiny_inputs(tmp_path_factory):
    """12 built-in sentences, every 6th held out: a few LM windows (the simulator runs each
    GPU thread in Python)."""
    from tests.rnnlm.test_train import lm_inputs
    return lm_inputs(tmp_path_factory.mktemp("tiny_lm"), sentences=12, min_count=1, dim=6,
                     heldout_every=6)


@simulated
def test_the_stage_on_the_device_trains_as_on_the_cpu(tiny_inputs, tmp_path, monkeypatch):
    """The whole rnnlm stage (GRU, HS, dropout, Adam, a checkpoint after every window, so the
    host copies are synced each time) on the simulated GPU and on the CPU: the same
    parameters and perplexities to float32 rounding."""
    import json
    from pipeline.config import RnnlmConfig
    from pipeline.store import StageDir
    from stages.rnnlm import train
    cfg = RnnlmConfig(cell="gru", output="hs", hidden=8, batch_size=2, bptt=8, epochs=1,
                      dropout=0.2, optimizer="adam", lr=0.01, threads=1, seed=4,
                      eval_batch_size=2, diagnostic_windows=1, checkpoint_minutes=1e-9)
    results = {}
    for device in ("cpu", "cuda"):
        monkeypatch.setattr(train, "choose_device", lambda requested, stage, chosen=device: chosen)
        out = StageDir(tmp_path / device, quiet=True, fingerprint="test")
        train.run(cfg, tiny_inputs, out)
        results[device] = (dict(np.load(tmp_path / device / "model.npz")),
                           json.loads((tmp_path / device / "metrics.json").read_text()))
    (cpu_params, cpu_metrics), (gpu_params, gpu_metrics) = results["cpu"], results["cuda"]
    assert gpu_metrics["device"] == "cuda" and cpu_metrics["device"] == "cpu"
    assert cpu_metrics["train_tokens"] > 3 * cfg.batch_size * cfg.bptt     # several windows
    for key in ("valid_perplexity", "test_perplexity"):
        assert gpu_metrics[key] == pytest.approx(cpu_metrics[key], rel=1e-4), key
    for name, value in cpu_params.items():
        if name.startswith("param_"):
            np.testing.assert_allclose(gpu_params[name], value, rtol=1e-3, atol=1e-5, err_msg=name)
