"""word2vec: skip-gram and CBOW, with hierarchical softmax or negative sampling.

Dimension legend: V vocabulary size, D embedding dimensions, L longest Huffman code,
N corpus tokens, S sentences, T worker threads.

Files: reference.py (plain Python/NumPy, the truth), cpu.py (@njit kernels with the same
names and argument order), train.py (the stage: schedule, progress, checkpoints).

Two kernels, `skipgram` and `cbow`, take the output layer as a step function plus its arrays
(`head`): `hs_step` with head = (codes, points, lengths) walks the word's Huffman path;
`ns_step` with head = (accept, alias, negative) draws negatives from the unigram^0.75 alias
table. The same step functions serve the RNN language model's output layer.
"""
