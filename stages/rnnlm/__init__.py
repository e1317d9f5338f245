"""The RNN language model: Elman (tanh, ReLU, IRNN), LSTM and GRU cells over word2vec
embeddings, truncated backpropagation through time, full or hierarchical softmax output.

Dimension legend: V LM vocabulary (words + <unk> + <eos>), D embedding dimensions, H hidden
units, G gate rows (H for Elman cells, 4H LSTM, 3H GRU), L longest HS tree code, B parallel
streams, T time steps of a window, N = T x B tokens.

Files: reference.py (plain NumPy, the truth), cpu.py (@njit kernels with the same names and
argument order), activations.py (exp/tanh/sigmoid for those kernels), blas.py (their matrix
products: MKL or OpenBLAS), model.py (parameters
and one window's forward/backward from the kernels), data.py (LM vocabulary and streams),
train.py (the stage), sampling.py (@njit generation kernels), generate.py (sampling,
prediction and scoring for users).
"""
