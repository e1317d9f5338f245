"""RNN LM: our CPU kernels against PyTorch on the CPU, side by side on Brown.

Data: ../shared/data/corpora/en-mix/brown.txt through our corpus stage (line index % 20 == 0
test, == 1 valid, the rest train) and vocabulary stage (10,000 most frequent words), so both
sides read the very same token streams (LM vocabulary 10,000 + <unk> + <eos>).
Model: embeddings 128, hidden 256, B = 32, T = 35, clip_norm 0.25, SGD with lr / 4 when
validation perplexity does not improve; lr 20 for LSTM, 1 for tanh. Ours starts from
embeddings trained by our word2vec stage (skip-gram HS, dim 128) and fine-tunes them;
PyTorch's embedding layer is trained from uniform(-0.1, 0.1), as in its word_language_model
example. Threads: 2 for training, 1 for the generation latency (B = 1, temperature 1).

    python bench/rnnlm_vs_torch.py [--epochs 3] [--configs tanh,lstm] [--threads 2]
        [--outputs softmax,hs,hs:clustered]   # hs:TREE = output hs with rnnlm.hs_tree = TREE
    python bench/rnnlm_vs_torch.py --ours-only --outputs hs --set rnnlm.lr=40   # tuning runs
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import EN_MIX, print_table, require, scratch_dir  # noqa: E402
from pipeline.config import (CorpusConfig, RnnlmConfig, VocabConfig, Word2VecConfig,  # noqa: E402
                             parse_override)
from pipeline.store import StageDir  # noqa: E402
from stages import corpus, vocab  # noqa: E402
from stages.rnnlm import data, train  # noqa: E402
from stages.rnnlm.generate import LanguageModel  # noqa: E402
from stages.word2vec import train as word2vec_train  # noqa: E402

LR = {"lstm": 20.0, "gru": 20.0, "tanh": 1.0}
PEER = {"softmax": "softmax", "hs": "adaptive"}      # PyTorch's counterpart of each output


def prepare(root: Path, threads: int, brown: Path = EN_MIX / "brown.txt",
            device: str = "cpu") -> dict:
    """Our corpus, vocabulary and word2vec stages on Brown (word2vec on `device`)."""
    inputs = {}
    corpus.run(CorpusConfig(path=(str(require(brown)),), heldout_every=20), {},
               StageDir(root / "corpus", quiet=True))
    inputs["corpus"] = root / "corpus"
    vocab.run(VocabConfig(min_count=1, max_vocab_size=10000), inputs,
              StageDir(root / "vocab", quiet=True))
    inputs["vocab"] = root / "vocab"
    word2vec_train.run(Word2VecConfig(dim=128, threads=threads, device=device), inputs,
                       StageDir(root / "word2vec", quiet=True))
    inputs["word2vec"] = root / "word2vec"
    return inputs


def lm_config(cell: str, output: str, epochs: int, threads: int, **overrides) -> RnnlmConfig:
    """Our model with the comparison's settings (hidden 256, B 32, T 35, clip 0.25, the
    cell's learning rate), any of them overridden."""
    settings = {"cell": cell, "output": output, "hidden": 256, "batch_size": 32, "bptt": 35,
                "clip_norm": 0.25, "lr": LR[cell], "epochs": epochs, "threads": threads,
                "diagnostic_windows": 0, **overrides}
    return RnnlmConfig(**settings)


def ours(inputs: dict, root: Path, cell: str, output: str, epochs: int, threads: int,
         overrides: dict | None = None) -> dict:
    """output: "softmax", "hs" or "hs:TREE" (rnnlm.hs_tree = TREE)."""
    layer, _, tree = output.partition(":")
    settings = {**({"hs_tree": tree} if tree else {}), **(overrides or {})}
    out = root / f"ours-{cell}-{output.replace(':', '-')}"
    train.run(lm_config(cell, layer, epochs, threads, **settings), inputs,
              StageDir(out, quiet=True))
    metrics = json.loads((out / "metrics.json").read_text())
    train.set_threads(1)
    ms = generation_ms(LanguageModel.load(out))
    train.set_threads(threads)
    return {"tokens_per_second": metrics["train_tokens_per_second"],
            "test_perplexity": metrics["test_perplexity"], "generate_ms": ms}


def generation_ms(lm: LanguageModel, words: int = 3000) -> float:
    lm.generate(10, seed=1)                      # compile
    start = time.perf_counter()
    lm.generate(words, seed=2)
    return 1000 * (time.perf_counter() - start) / words


def lm_streams(inputs: dict) -> tuple[dict, int]:
    lm = data.lm_vocabulary(vocab.load_vocab(inputs["vocab"])[0], 0)
    streams = {s: data.lm_stream(*corpus.load_split(inputs["corpus"], s), lm)
               for s in ("train", "valid", "test")}
    return streams, lm.size


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--configs", default="tanh,lstm", help="cells, comma-separated")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--outputs", default="softmax,hs,hs:clustered",
                        help="output layers, comma-separated (hs:TREE: HS over that tree)")
    parser.add_argument("--ours-only", action="store_true", help="skip PyTorch (tuning runs)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="rnnlm.KEY=VALUE", help="change a setting of our model")
    args = parser.parse_args()
    overrides = {key: value for _, key, value in map(parse_override, args.overrides)}
    root = scratch_dir()
    train.set_threads(args.threads)
    inputs = prepare(root, args.threads)
    streams, V = lm_streams(inputs)
    rows, peers = [], {}
    for cell in args.configs.split(","):
        for output in args.outputs.split(","):
            mine = ours(inputs, root, cell, output, args.epochs, args.threads, overrides)
            if args.ours_only:
                print(f"{cell} {output} {overrides}: {mine}", flush=True)
                continue
            from bench import torch_lm                    # the PyTorch side
            peer = PEER[output.partition(":")[0]]
            if (cell, peer) not in peers:        # both HS trees face the same adaptive run
                peers[cell, peer] = torch_lm.run(cell, peer, streams, V, args.epochs, LR[cell],
                                                 args.threads)
            theirs = peers[cell, peer]
            rows.append(row(cell, output, peer, mine, theirs))
            print_table(HEADER, rows[-1:])
            sys.stdout.flush()
    if not rows:
        return
    print(f"\nBrown, V = {V}, {args.epochs} epoch(s), {args.threads} threads; generation on 1 thread")
    print_table(HEADER, rows)


HEADER = ["cell", "ours", "torch", "ours tok/s", "torch tok/s", "speed", "ours test ppl",
          "torch test ppl", "ppl ratio", "ours ms/token", "torch ms/token", "latency"]


def row(cell, output, peer, mine, theirs) -> list:
    return [cell, output, peer, f"{mine['tokens_per_second']:.0f}",
            f"{theirs['tokens_per_second']:.0f}",
            f"{mine['tokens_per_second'] / theirs['tokens_per_second']:.2f}x",
            f"{mine['test_perplexity']:.1f}", f"{theirs['test_perplexity']:.1f}",
            f"{mine['test_perplexity'] / theirs['test_perplexity']:.3f}",
            f"{mine['generate_ms']:.4f}", f"{theirs['generate_ms']:.4f}",
            f"{theirs['generate_ms'] / mine['generate_ms']:.1f}x"]


if __name__ == "__main__":
    main()
