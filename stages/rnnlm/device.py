"""The language model on the GPU: `Model`'s window passes composed from cuda.py's kernels,
with the parameters, their gradients, the optimiser's moments and the window's buffers on
the device (only token ids and dropout masks go up; losses and norms come back). Every cell
(tanh, relu, irnn, lstm, gru), both output layers, dropout, SGD and Adam.

Dropout masks are drawn on the host by cpu.dropout_mask from the host model's RNG state, so
a run draws the same masks on either device and a checkpoint's RNG state means the same.
"""
from __future__ import annotations

import numpy as np
from numba import cuda

from stages.rnnlm import cpu
from stages.rnnlm import cuda as kernels
from stages.rnnlm.model import CELL_KERNELS, GATE_STORE, Model, Optimiser, flat_views


def device_optimiser(host: Optimiser) -> Optimiser:
    """An optimiser with `host`'s settings and a copy of its state, the moments on the
    device (the step counter stays on the host, where the bias corrections are formed)."""
    on_device = Optimiser(host.kind, 0, host.beta1, host.beta2, host.eps, kernels=kernels)
    on_device.state = {k: (v.copy() if k == "step" else cuda.to_device(v)) for k, v in host.state.items()}
    return on_device


class DeviceModel:
    """A host Model's parameters copied to the device, trained there window by window;
    `pull` brings them back (checkpoints, diagnostics, outputs)."""

    def __init__(self, model: Model):
        self.host, self.arch, arch = model, model.arch, model.arch
        self.params = cuda.to_device(model.params)
        self.grads = cuda.device_array_like(model.params)
        self.p, self.g = flat_views(model.shapes, self.params), flat_views(model.shapes, self.grads)
        self.embeddings = self.p["embeddings"] if arch.train_embeddings else cuda.to_device(model.embeddings)
        self.tree = tuple(cuda.to_device(a) for a in model.tree) if model.tree else None
        # cuda.py's launchers carry cpu.py's names
        self.forward_cell, self.backward_cell = (getattr(kernels, kernel.__name__)
                                                 for kernel in CELL_KERNELS[arch.cell])
        self._buffers: dict = {}

    # ------------------------------------------------------------------ host <-> device
    def gradient_segments(self):
        """None: the device works on whole arrays (see Model.gradient_segments)."""
        return None

    def clip_gradients(self, max_norm: float) -> float:
        return kernels.clip_global_norm(self.grads, max_norm)

    def pull(self) -> None:
        """The device parameters into the host model's."""
        self.params.copy_to_host(self.host.params)

    def load_params(self, flat: np.ndarray) -> None:
        self.host.params[...] = flat
        self.params.copy_to_device(self.host.params)

    def initial_state(self, B: int):
        h0 = self.p["h0"].copy_to_host()
        c0 = self.p["c0"].copy_to_host() if "c0" in self.p else np.zeros_like(h0)
        return (cuda.to_device(np.repeat(h0[None, :], B, axis=0)),
                cuda.to_device(np.repeat(c0[None, :], B, axis=0)))

    # ------------------------------------------------------------------------- buffers
    def buffers(self, T: int, B: int, train: bool) -> dict:
        """The window's device buffers, allocated once per (T, B, dropout on)."""
        key = (T, B, train and self.host.keep < 1.0)
        if key not in self._buffers:
            self._buffers[key] = self.allocate(T, B, key[2])
        return self._buffers[key]

    def allocate(self, T: int, B: int, dropout: bool) -> dict:
        H, D, V, f32 = self.arch.hidden, self.arch.dim, self.arch.vocab, np.float32
        shapes = {"x": (T, B, D), "h_all": (T + 1, B, H), "c_all": (T + 1, B, H),
                  "gates": (T, B, GATE_STORE[self.arch.cell] * H), "d_h": (T, B, H),
                  "d_x": (T, B, D), "d_h_init": (B, H), "d_c_init": (B, H),
                  "exps": (T * B, V) if self.arch.output == "softmax" else (1, 1),
                  "inverse_totals": (T * B,)}
        if dropout:
            shapes.update(top=(T, B, H), mask_x=(T, B, D), mask_h=(T, B, H))
        work = {k: cuda.device_array(s, f32) for k, s in shapes.items()}
        work.update(losses=cuda.device_array(T * B), dropout=dropout)
        if dropout:     # host staging for the masks
            work["host_masks"] = (np.zeros((T, B, D), f32), np.zeros((T, B, H), f32))
        return work

    # -------------------------------------------------------------------------- passes
    def forward(self, d_ids, state, work) -> object:
        """The cell over the window from `state`; returns the output layer's input [T, B, H]."""
        T = d_ids.shape[0]
        kernels.embed_forward(work["x"], self.embeddings, d_ids)
        if work["dropout"]:
            for host_mask, name in zip(work["host_masks"], ("mask_x", "mask_h")):
                cpu.dropout_mask(host_mask, self.host.keep, self.host.rng_state)
                work[name].copy_to_device(host_mask)
            kernels.multiply(work["x"], work["mask_x"])
        work["h_all"][0].copy_to_device(state[0])
        work["c_all"][0].copy_to_device(state[1])
        self.forward_cell(work["h_all"], work["c_all"], work["gates"], work["x"], self.p["w_x"],
                          self.p["w_h"], self.p["b_x"], self.p["b_h"])
        if not work["dropout"]:
            return work["h_all"][1:T + 1]
        work["top"].copy_to_device(work["h_all"][1:T + 1])
        kernels.multiply(work["top"], work["mask_h"])
        return work["top"]

    def train_window(self, ids: np.ndarray, targets: np.ndarray, state, fresh: bool):
        """As Model.train_window: gradients of the window's mean loss in self.grads; returns
        (summed loss, the device state to carry on). The gradient norms by lag are the
        diagnostics' business (on the host copy), so training skips them."""
        T, B = ids.shape
        N, H = T * B, self.arch.hidden
        work = self.buffers(T, B, train=True)
        d_ids, d_targets = self.upload(ids, targets)
        top = self.forward(d_ids, state, work).reshape(N, H)
        d_top = work["d_h"].reshape(N, H)
        loss = self.output_pass(work, top, d_top, d_targets, 1.0 / N)
        if work["dropout"]:
            kernels.multiply(work["d_h"], work["mask_h"])
        self.backward_cell(work["d_x"], self.g["w_x"], self.g["w_h"], self.g["b_x"],
                           self.g["b_h"], work["d_h_init"], work["d_c_init"], None,
                           work["d_h"], work["h_all"], work["c_all"], work["gates"], work["x"],
                           self.p["w_x"], self.p["w_h"])
        self.input_gradients(work, d_ids, fresh)
        return loss, (work["h_all"][T], work["c_all"][T])

    def evaluate_window(self, ids: np.ndarray, targets: np.ndarray, state):
        """As Model.evaluate_window: (summed loss, the state to carry on)."""
        T, B = ids.shape
        work = self.buffers(T, B, train=False)
        d_ids, d_targets = self.upload(ids, targets)
        top = self.forward(d_ids, state, work).reshape(T * B, self.arch.hidden)
        return self.output_loss(work, top, d_targets), (work["h_all"][T], work["c_all"][T])

    @staticmethod
    def upload(ids, targets):
        return (cuda.to_device(np.ascontiguousarray(ids, dtype=np.int64)),
                cuda.to_device(np.ascontiguousarray(targets, dtype=np.int64).reshape(-1)))

    def output_loss(self, work, top, d_targets) -> float:
        """Summed -log p(target) over the window's tokens (top [N, H])."""
        if self.arch.output == "softmax":
            return kernels.softmax_forward(work["exps"], work["inverse_totals"], top,
                                           self.p["w_out"], self.p["b_out"], d_targets)
        return kernels.hs_forward(work["losses"], top, self.p["w_out"], *self.tree, d_targets)

    def output_pass(self, work, top, d_top, d_targets, scale) -> float:
        """output_loss, then d_top and the output layer's gradients for scale * that loss."""
        p, g = self.p, self.g
        if self.arch.output == "softmax":
            loss = self.output_loss(work, top, d_targets)
            kernels.softmax_backward(d_top, g["w_out"], g["b_out"], work["exps"],
                                     work["inverse_totals"], top, p["w_out"], d_targets, scale)
            return loss
        kernels.fill(g["w_out"], 0.0)
        return kernels.hs_train(work["losses"], d_top, g["w_out"], top, p["w_out"], *self.tree,
                                d_targets, scale)

    def input_gradients(self, work, d_ids, fresh: bool) -> None:
        g = self.g
        for name in ("embeddings", "h0", "c0"):
            if name in g:
                kernels.fill(g[name], 0.0)
        if self.arch.train_embeddings:
            if work["dropout"]:
                kernels.multiply(work["d_x"], work["mask_x"])
            kernels.embed_backward(g["embeddings"], work["d_x"], d_ids)
        if fresh:
            kernels.sum_rows(g["h0"], work["d_h_init"])
            if "c0" in g:
                kernels.sum_rows(g["c0"], work["d_c_init"])
