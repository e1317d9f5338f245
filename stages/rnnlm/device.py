"""One training window of the language model on the GPU: `Model.train_window` composed from
cuda.py's kernels, with the parameters, their gradients and the window's buffers on the
device (only the token ids go up and the loss comes back). Cells tanh, relu, irnn, lstm.
"""
from __future__ import annotations

import numpy as np
from numba import cuda

from stages.rnnlm import cuda as kernels
from stages.rnnlm.model import GATE_STORE, Model, flat_views

CELLS = {"tanh": "tanh", "relu": "relu", "irnn": "relu", "lstm": "lstm"}


class DeviceModel:
    """A host Model's parameters copied to the device, trained there window by window."""

    def __init__(self, model: Model):
        if model.arch.cell not in CELLS:
            raise ValueError(f"cell {model.arch.cell!r} has no CUDA kernels in this version")
        self.arch, arch = model.arch, model.arch
        self.params = cuda.to_device(model.params)
        self.grads = cuda.device_array_like(model.params)
        self.p, self.g = flat_views(model.shapes, self.params), flat_views(model.shapes, self.grads)
        self.embeddings = self.p["embeddings"] if arch.train_embeddings else cuda.to_device(model.embeddings)
        self.huffman = tuple(cuda.to_device(a) for a in model.huffman) if model.huffman else None
        cell = CELLS[arch.cell]
        self.forward_cell = getattr(kernels, f"{cell}_forward")
        self.backward_cell = getattr(kernels, f"{cell}_backward")
        self._buffers: dict = {}

    def initial_state(self, B: int):
        h0 = self.p["h0"].copy_to_host()
        c0 = self.p["c0"].copy_to_host() if "c0" in self.p else np.zeros_like(h0)
        return (cuda.to_device(np.repeat(h0[None, :], B, axis=0)),
                cuda.to_device(np.repeat(c0[None, :], B, axis=0)))

    def buffers(self, T: int, B: int) -> dict:
        """The window's device buffers, allocated once per (T, B)."""
        if (T, B) not in self._buffers:
            self._buffers[(T, B)] = self.allocate(T, B)
        return self._buffers[(T, B)]

    def allocate(self, T: int, B: int) -> dict:
        H, D, V, f32 = self.arch.hidden, self.arch.dim, self.arch.vocab, np.float32
        shapes = {"x": (T, B, D), "h_all": (T + 1, B, H), "c_all": (T + 1, B, H),
                  "gates": (T, B, GATE_STORE[self.arch.cell] * H), "d_h": (T, B, H),
                  "d_x": (T, B, D), "d_h_init": (B, H), "d_c_init": (B, H),
                  "exps": (T * B, V) if self.arch.output == "softmax" else (1, 1),
                  "inverse_totals": (T * B,)}
        work = {k: cuda.device_array(s, f32) for k, s in shapes.items()}
        work.update(norms=cuda.device_array(T), losses=cuda.device_array(T * B))
        return work

    def train_window(self, ids: np.ndarray, targets: np.ndarray, state, fresh: bool):
        """As Model.train_window (no dropout): gradients of the window's mean loss in
        self.grads; returns (summed loss, the device state to carry on)."""
        T, B = ids.shape
        N, H, p, g = T * B, self.arch.hidden, self.p, self.g
        work = self.buffers(T, B)
        d_ids, d_targets = cuda.to_device(ids.astype(np.int64)), cuda.to_device(targets.reshape(-1).astype(np.int64))
        kernels.embed_forward(work["x"], self.embeddings, d_ids)
        work["h_all"][0].copy_to_device(state[0])
        work["c_all"][0].copy_to_device(state[1])
        self.forward_cell(work["h_all"], work["c_all"], work["gates"], work["x"], p["w_x"],
                          p["w_h"], p["b_x"], p["b_h"])
        top, d_top = work["h_all"][1:T + 1].reshape(N, H), work["d_h"].reshape(N, H)
        loss = self.output_pass(work, top, d_top, d_targets, 1.0 / N)
        self.backward_cell(work["d_x"], g["w_x"], g["w_h"], g["b_x"], g["b_h"], work["d_h_init"],
                           work["d_c_init"], work["norms"], work["d_h"], work["h_all"],
                           work["c_all"], work["gates"], work["x"], p["w_x"], p["w_h"])
        self.input_gradients(work, d_ids, fresh)
        return loss, (work["h_all"][T], work["c_all"][T])

    def output_pass(self, work, top, d_top, d_targets, scale) -> float:
        p, g = self.p, self.g
        if self.arch.output == "softmax":
            loss = kernels.softmax_forward(work["exps"], work["inverse_totals"], top, p["w_out"],
                                           p["b_out"], d_targets)
            kernels.softmax_backward(d_top, g["w_out"], g["b_out"], work["exps"],
                                     work["inverse_totals"], top, p["w_out"], d_targets, scale)
            return loss
        loss = kernels.hs_forward(work["losses"], top, p["w_out"], *self.huffman, d_targets)
        kernels.hs_backward(d_top, g["w_out"], top, p["w_out"], *self.huffman, d_targets, scale)
        return loss

    def input_gradients(self, work, d_ids, fresh: bool) -> None:
        g = self.g
        for name in ("embeddings", "h0", "c0"):
            if name in g:
                kernels.fill(g[name], 0.0)
        if self.arch.train_embeddings:
            kernels.embed_backward(g["embeddings"], work["d_x"], d_ids)
        if fresh:
            kernels.column_sums[kernels._blocks(self.arch.hidden)](g["h0"], work["d_h_init"])
            if "c0" in g:
                kernels.column_sums[kernels._blocks(self.arch.hidden)](g["c0"], work["d_c_init"])

    def step(self, clip_norm: float, lr: float) -> float:
        """Clip the gradients' global norm and take an SGD step; returns the norm."""
        norm = kernels.clip_global_norm(self.grads, clip_norm)
        kernels.sgd_step(self.params, self.grads, lr)
        return norm
