"""The language model: its parameters in one flat float32 array (named views into it, so
clipping and the optimiser each make one pass), its initialisation, and one window's
forward and backward pass composed from the kernels in cpu.py.

Per window: embeddings -> (dropout) -> cell over T steps from the carried state ->
(dropout) -> output layer (softmax or HS) -> mean loss over the window's T x B tokens.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from stages.rnnlm import cpu

# gate rows of W_x / W_h per hidden unit, and columns of the per-step gate store
GATES = {"tanh": 1, "relu": 1, "irnn": 1, "lstm": 4, "gru": 3}
GATE_STORE = {"tanh": 1, "relu": 1, "irnn": 1, "lstm": 4, "gru": 4}
CELL_KERNELS = {"tanh": (cpu.tanh_forward, cpu.tanh_backward),
                "relu": (cpu.relu_forward, cpu.relu_backward),
                "irnn": (cpu.relu_forward, cpu.relu_backward),
                "lstm": (cpu.lstm_forward, cpu.lstm_backward),
                "gru": (cpu.gru_forward, cpu.gru_backward)}
# LSTM forget gates start open (bias 1), so early gradients are not cut by f ~ 1/2 per step
LSTM_FORGET_BIAS = 1.0
# dense parameters enter the gradient's segment list in pieces of this many floats, about
# the size of a sparse matrix's row, so that threads sharing the segments get equal work
DENSE_PIECE = 256


@dataclass(frozen=True)
class Architecture:
    cell: str
    output: str             # "softmax" | "hs"
    vocab: int              # V
    dim: int                # D
    hidden: int             # H
    train_embeddings: bool


def parameter_shapes(arch: Architecture) -> dict[str, tuple]:
    G, H, V = GATES[arch.cell] * arch.hidden, arch.hidden, arch.vocab
    shapes = {"embeddings": (V, arch.dim)} if arch.train_embeddings else {}
    shapes.update(w_x=(G, arch.dim), w_h=(G, H), b_x=(G,), b_h=(G,), h0=(H,))
    if arch.cell == "lstm":
        shapes["c0"] = (H,)
    if arch.output == "hs":
        shapes["w_out"] = (max(V - 1, 1), H)       # one row per inner node of the tree
    else:
        shapes.update(w_out=(V, H), b_out=(V,))
    return shapes


def sparse_matrices(arch: Architecture) -> list[str]:
    """The matrices whose gradient in a window is a few rows: a trained embedding table
    (the window's ids) and an HS output layer (the nodes on the targets' paths)."""
    return (["embeddings"] if arch.train_embeddings else []) + (["w_out"] if arch.output == "hs" else [])


def flat_starts(shapes: dict[str, tuple]) -> dict[str, int]:
    starts, start = {}, 0
    for name, shape in shapes.items():
        starts[name] = start
        start += math.prod(shape)
    return starts


def flat_views(shapes: dict[str, tuple], flat: np.ndarray) -> dict[str, np.ndarray]:
    starts = flat_starts(shapes)
    return {name: flat[starts[name]:starts[name] + math.prod(shape)].reshape(shape)
            for name, shape in shapes.items()}


def flat_size(shapes: dict[str, tuple]) -> int:
    return sum(math.prod(shape) for shape in shapes.values())


def initialise(params: dict, arch: Architecture, rng: np.random.Generator) -> None:
    """Glorot uniform per gate block for tanh/LSTM/GRU; He normal for ReLU inputs; ReLU
    recurrence N(0, 1/H) (spectral radius about 1), IRNN recurrence the identity (Le et al.
    2015); HS nodes zero (p = 1/2 at every node, as word2vec), softmax rows Glorot."""
    H, D = arch.hidden, arch.dim
    relu = arch.cell in ("relu", "irnn")
    for block in range(GATES[arch.cell]):
        rows = slice(block * H, (block + 1) * H)
        if relu:
            params["w_x"][rows] = rng.normal(0.0, math.sqrt(2.0 / D), (H, D))
            params["w_h"][rows] = (np.eye(H) if arch.cell == "irnn"
                                   else rng.normal(0.0, 1.0 / math.sqrt(H), (H, H)))
        else:
            params["w_x"][rows] = glorot(rng, H, D)
            params["w_h"][rows] = glorot(rng, H, H)
    if arch.cell == "lstm":
        params["b_x"][H:2 * H] = LSTM_FORGET_BIAS
    if arch.output == "softmax":
        params["w_out"][...] = glorot(rng, arch.vocab, H)


def glorot(rng, fan_out: int, fan_in: int) -> np.ndarray:
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, (fan_out, fan_in))


class Workspace:
    """The buffers of one window shape (T, B), reused from window to window."""

    def __init__(self, arch: Architecture, T: int, B: int, dropout: bool, dtype):
        H, f32 = arch.hidden, dtype
        self.x = np.zeros((T, B, arch.dim), f32)
        self.h_all = np.zeros((T + 1, B, H), f32)
        self.c_all = np.zeros((T + 1, B, H), f32)
        self.gates = np.zeros((T, B, GATE_STORE[arch.cell] * H), f32)
        self.top = np.zeros((T, B, H), f32)             # what the output layer reads
        self.d_h = np.zeros((T, B, H), f32)
        # the input gradient feeds the embedding table only: none when it is frozen
        self.d_x = np.zeros((T if arch.train_embeddings else 0, B, arch.dim), f32)
        self.d_h_init = np.zeros((B, H), f32)
        self.d_c_init = np.zeros((B, H), f32)
        self.norms = np.zeros(T)
        self.losses = np.zeros(T * B)
        self.exps = np.zeros((T * B, arch.vocab), f32) if arch.output == "softmax" else None
        self.inverse_totals = np.zeros(T * B, f32)
        self.masks = (np.zeros((T, B, arch.dim), f32), np.zeros((T, B, H), f32)) if dropout else None


class Model:
    """Parameters (flat + views), their gradients (same layout) and the window passes."""

    def __init__(self, arch: Architecture, params: np.ndarray, embeddings: np.ndarray,
                 tree=None, dropout: float = 0.0, rng_state=None):
        self.arch, self.shapes = arch, parameter_shapes(arch)
        self.params, self.grads = params, np.zeros_like(params)
        self.p, self.g = flat_views(self.shapes, params), flat_views(self.shapes, self.grads)
        # frozen embeddings live outside the trained parameters
        self.embeddings = self.p["embeddings"] if arch.train_embeddings else embeddings
        self.tree = tree     # HS output: (codes, points, lengths), see tree.py
        self.keep = 1.0 - dropout
        self.rng_state = rng_state if rng_state is not None else np.ones(1, np.uint64)
        self.forward_cell, self.backward_cell = CELL_KERNELS[arch.cell]
        self._workspaces: dict = {}
        # The gradient of a sparse matrix is zero but in the rows the last backward touched
        # (listed here): clipping and SGD visit those rows only, and the next window zeroes
        # them instead of the whole matrix (10 MB for an HS layer over 10k words).
        self.touched = {name: np.zeros(0, np.int64) for name in sparse_matrices(arch)}
        self._marks = {name: np.zeros(self.g[name].shape[0], np.bool_) for name in self.touched}
        self._starts = starts = flat_starts(self.shapes)
        self._dense_segments = np.array(
            [[start, min(start + DENSE_PIECE, starts[name] + math.prod(shape))]
             for name, shape in self.shapes.items() if name not in self.touched
             for start in range(starts[name], starts[name] + math.prod(shape), DENSE_PIECE)],
            np.int64).reshape(-1, 2)
        self._segments = None

    def workspace(self, T: int, B: int, train: bool) -> Workspace:
        key = (T, B, train and self.keep < 1.0)
        if key not in self._workspaces:
            self._workspaces[key] = Workspace(self.arch, T, B, key[2], self.params.dtype)
        return self._workspaces[key]

    def load_params(self, flat: np.ndarray) -> None:
        self.params[...] = flat

    def initial_state(self, B: int) -> tuple[np.ndarray, np.ndarray]:
        h = np.repeat(self.p["h0"][None, :], B, axis=0)
        c = np.repeat(self.p["c0"][None, :], B, axis=0) if "c0" in self.p else np.zeros_like(h)
        return h, c

    def forward(self, ids: np.ndarray, state, train: bool) -> Workspace:
        """Run the cell over the window from `state`; the output layer's input is in .top."""
        T, B = ids.shape
        work = self.workspace(T, B, train)
        cpu.embed_forward(work.x, self.embeddings, ids)
        if work.masks is not None:
            for mask in work.masks:
                cpu.dropout_mask(mask, self.keep, self.rng_state)
            work.x *= work.masks[0]
        work.h_all[0], work.c_all[0] = state
        self.forward_cell(work.h_all, work.c_all, work.gates, work.x, self.p["w_x"],
                          self.p["w_h"], self.p["b_x"], self.p["b_h"])
        work.top[...] = work.h_all[1:]
        if work.masks is not None:
            work.top *= work.masks[1]
        return work

    def output_loss(self, work: Workspace, targets: np.ndarray, rows: slice = slice(None)) -> float:
        """Summed -log p(target) over the window's tokens (rows: a range of time steps)."""
        top = work.top[rows].reshape(-1, self.arch.hidden)
        flat = targets[rows].reshape(-1)
        if self.arch.output == "softmax":
            return cpu.softmax_forward(work.exps[:flat.size], work.inverse_totals[:flat.size],
                                       top, self.p["w_out"], self.p["b_out"], flat)
        return cpu.hs_forward(work.losses[:flat.size], top, self.p["w_out"], *self.tree, flat)

    def output_pass(self, work: Workspace, targets: np.ndarray, rows: slice = slice(None)) -> float:
        """output_loss, and the gradients of the mean loss over the rows' tokens: the output
        layer's, and d_h (zero outside the rows' time steps)."""
        work.d_h[...] = 0.0
        top = work.top[rows].reshape(-1, self.arch.hidden)
        flat = targets[rows].reshape(-1)
        d_top = work.d_h[rows].reshape(-1, self.arch.hidden)
        scale = 1.0 / flat.size
        if self.arch.output == "softmax":
            loss = self.output_loss(work, targets, rows)
            cpu.softmax_backward(d_top, self.g["w_out"], self.g["b_out"], work.exps[:flat.size],
                                 work.inverse_totals[:flat.size], top, self.p["w_out"], flat,
                                 scale)
        else:
            nodes = np.empty(self.g["w_out"].shape[0], np.int64)
            count = cpu.path_nodes(nodes, self._marks["w_out"], *self.tree[1:], flat)
            self._touch("w_out", nodes[:count])
            loss = cpu.hs_train(work.losses[:flat.size], d_top, self.g["w_out"], top,
                                self.p["w_out"], *self.tree, flat, scale)
        if work.masks is not None:
            work.d_h[rows] *= work.masks[1][rows]
        return loss

    def backward(self, work: Workspace, ids: np.ndarray, fresh: bool) -> None:
        """Gradients of every parameter from work.d_h; fresh: the window started from h0."""
        self.backward_cell(work.d_x, self.g["w_x"], self.g["w_h"], self.g["b_x"], self.g["b_h"],
                           work.d_h_init, work.d_c_init, work.norms, work.d_h, work.h_all,
                           work.c_all, work.gates, work.x, self.p["w_x"], self.p["w_h"])
        for name in ("h0", "c0"):
            if name in self.g:
                self.g[name][...] = 0.0
        if self.arch.train_embeddings:
            if work.masks is not None:
                work.d_x *= work.masks[0]
            rows = np.empty(ids.size, np.int64)
            self._touch("embeddings", rows[:cpu.distinct_ids(rows, self._marks["embeddings"], ids)])
            cpu.embed_backward(self.g["embeddings"], work.d_x, ids)
        if fresh:
            self.g["h0"][...] = work.d_h_init.sum(axis=0)
            if "c0" in self.g:
                self.g["c0"][...] = work.d_c_init.sum(axis=0)

    def _touch(self, name: str, rows: np.ndarray) -> None:
        """The gradient of sparse matrix `name` is about to be summed into `rows`: zero the
        rows the last window left non-zero."""
        cpu.zero_rows(self.g[name], self.touched[name])
        self.touched[name] = rows
        self._segments = None

    def gradient_segments(self) -> np.ndarray:
        """int64 [S, 2]: the [start, stop) ranges of the flat gradient that can be non-zero
        after the last backward (whole dense parameters, touched rows of sparse ones)."""
        if self._segments is None:
            segments = [self._dense_segments]
            for name, rows in self.touched.items():
                width = self.g[name].shape[1]
                begin = self._starts[name] + rows * width
                segments.append(np.stack([begin, begin + width], axis=1))
            self._segments = np.concatenate(segments)
        return self._segments

    def clip_gradients(self, max_norm: float) -> float:
        """cpu.clip_global_norm over the gradient's non-zero segments."""
        return cpu.clip_segments(self.grads, self.gradient_segments(), max_norm)

    def train_window(self, ids, targets, state, fresh: bool):
        """Forward and backward over one window -> (summed loss, the state to carry on)."""
        work = self.forward(ids, state, train=True)
        loss = self.output_pass(work, targets)
        self.backward(work, ids, fresh)
        return loss, (work.h_all[-1].copy(), work.c_all[-1].copy())

    def evaluate_window(self, ids, targets, state):
        work = self.forward(ids, state, train=False)
        return self.output_loss(work, targets), (work.h_all[-1].copy(), work.c_all[-1].copy())

    def gradient_by_lag(self, ids, targets, state) -> np.ndarray:
        """Mean over streams of ||dE_t / dh_k|| for E_t the loss at the window's last step,
        indexed by the lag t - k (0 .. T-1). Scribbles on the gradients (call between
        training windows only)."""
        work = self.forward(ids, state, train=False)
        last = slice(ids.shape[0] - 1, ids.shape[0])
        self.output_pass(work, targets, last)
        self.backward(work, ids, fresh=False)
        return work.norms[::-1].copy()

    def spectral_radii(self) -> list[float]:
        """Largest |eigenvalue| of each gate block of W_h (one block for Elman cells)."""
        H = self.arch.hidden
        blocks = self.p["w_h"].reshape(GATES[self.arch.cell], H, H).astype(np.float64)
        return [float(np.abs(np.linalg.eigvals(block)).max()) for block in blocks]


def to_host(array) -> np.ndarray:
    """A host copy of a device array (device.py); host arrays pass through."""
    return array.copy_to_host() if hasattr(array, "copy_to_host") else array


class Optimiser:
    """SGD (the RNNLM toolkit's and the PyTorch example's) or Adam, on the flat arrays;
    `kernels` is cpu (host arrays) or the cuda module (device arrays, see device.py)."""

    def __init__(self, kind: str, size: int, beta1=0.9, beta2=0.999, eps=1e-8, kernels=cpu):
        self.kind, self.beta1, self.beta2, self.eps, self.kernels = kind, beta1, beta2, eps, kernels
        self.state = {"m": np.zeros(size, np.float32), "v": np.zeros(size, np.float32),
                      "step": np.zeros(1, np.int64)} if kind == "adam" else {}

    def step(self, params, grads, lr: float, segments=None) -> None:
        """segments: where the gradient can be non-zero (Model.gradient_segments); SGD then
        visits those only. None: everywhere."""
        if self.kind == "sgd":
            if segments is None:
                self.kernels.sgd_step(params, grads, np.float32(lr))
            else:
                self.kernels.sgd_segments(params, grads, segments, np.float32(lr))
            return
        self.state["step"][0] += 1
        self.kernels.adam_step(params, grads, self.state["m"], self.state["v"], np.float32(lr),
                               self.beta1, self.beta2, self.eps, int(self.state["step"][0]))
