"""word2vec: our CPU kernels against gensim, side by side on en-mix (5.4M words).

    python bench/word2vec_vs_gensim.py [--configs sg-hs,cbow-hs,sg-ns,cbow-ns] [--epochs 5]
                                       [--threads 2] [--seeds 3 (0: scaling only)]
                                       [--scaling-runs 3 | --no-scaling]
                                       [--ours-alpha A] [--ours-min-alpha-ratio R]
                                       [--c-word2vec [PATH/word2vec.c]]

Same settings for both: dim 100, window 5, min_count 5, sample 1e-3, negative 5 (NS),
the whole corpus (no held-out lines). gensim runs in corpus_file mode with `workers`
= threads, its own default learning rate (0.025; ours follows word2vec.c: 0.025 skip-gram,
0.05 CBOW). Each training runs in a fresh process, so its peak memory is its own.
Speed is raw corpus words per second of training (both count every token of every epoch),
timed over all of it: ours over the whole epoch loop (the kernels, the non-finite checks,
progress and a checkpoint per epoch), gensim over its train() call.
gensim's corpus_file mode measures each worker's progress against the whole corpus while
the worker reads only its 1/workers share, so its learning rate decays more slowly than
the nominal schedule (with 2 workers it never falls below alpha * 0.1 and restarts higher
each epoch): a larger effective rate. --ours-alpha lets ours start higher, and
--ours-min-alpha-ratio 0.1 ends ours where gensim's two workers end.
Quality is measured by the same code for both: analogy accuracy on questions-words
(restrict_vocab 30000, case-insensitive) and WordSim-353 Spearman. The two vocabularies order
words of equal count differently (ours: first seen first; gensim: last seen first), so
their 30,000 most frequent words differ among the rare ones at the cut and each answers a
slightly different set of questions; "same-q" is the accuracy of each on the questions both
answered.
Both tools train once per seed (1, 2, ..., --seeds) and the table gives the means over the
seeds of each quality figure and of each diff, the median words/s and the largest +MiB: one
training's analogy accuracy moves by about half a point from seed to seed (gensim CBOW + HS,
two workers, seeds 1-4: 13.3, 12.4, 12.7, 13.2%), so a single pair compares two draws.
The scaling column reruns ours with one thread and with `threads` for one epoch each,
alternately, --scaling-runs times (0: none), and gives the median ratio and the range:
one pair of runs moves by 5-10% on a shared machine. The "apart" column is what the
machine itself allows in the same rounds: `threads` one-thread trainings in separate
processes, started at the same moment, their words/s summed, over the round's one-thread
figure. They share no weights, only the cores' caches, the memory and the host, so the
gap between the two columns is what sharing the weights costs the threads. "gensim
scaling" is the peer's own ratio in the same rounds: one epoch with `threads` workers over
one epoch with one. --seeds 0 measures only these columns, with as many rounds as
--scaling-runs.
--c-word2vec adds the original C word2vec as a third tool (bench/c_word2vec.py builds it,
from the PyPI package `word2vec`'s copy of word2vec.c or from the file given): trained once
per seed with the same settings and its own learning rates (word2vec.c has no seed; its
runs differ by its threads' timing), scored by the same code, in a second table.
"+MiB" is the peak resident memory of the training process minus its resident memory just
before training (ours: after the memory-mapped corpus is opened and the kernels loaded;
gensim: before build_vocab, which holds its vocabulary); V x D float32 is 13 MiB here.
"""
from __future__ import annotations

import argparse
import multiprocessing
import statistics
import time
from pathlib import Path

import c_word2vec
from common import (SHARED_DATA, WORD2VEC_CONFIGS, concatenated_en_mix, current_rss_mib,
                    peak_rss_mib, print_table, scratch_dir, word2vec_inputs)

QUESTIONS = SHARED_DATA / "eval" / "questions-words.txt"
WORDSIM = SHARED_DATA / "eval" / "wordsim353.tsv"


def train_ours(inputs: dict, out_dir: Path, model: str, loss: str, epochs: int, threads: int,
               alpha: float = 0.0, seed: int = 1, min_alpha_ratio: float = 1e-4,
               start_together=None):
    """Runs in a child process: (raw words/s, seconds, peak MiB, vectors file).
    start_together: a multiprocessing Barrier that training waits at, after the kernels
    are loaded, so that several such processes train at the same time."""
    from pipeline.config import Word2VecConfig
    from pipeline.store import StageDir
    from stages.word2vec import train
    cfg = Word2VecConfig(model=model, loss=loss, epochs=epochs, threads=threads, seed=seed, alpha=alpha,
                         min_alpha_ratio=min_alpha_ratio)
    # Load the compiled kernels first (a one-off second or so per process, from Numba's
    # cache), so that the memory figure is training's, not the compiler's (run() warms up
    # too, outside its clock, so the speed figure would not change).
    counts = train.vocab.load_vocab(inputs["vocab"])[1]
    trainer = train.Trainer(cfg, *corpus_split(inputs), counts, train.vocab.load_huffman(inputs["vocab"]),
                            threads)
    state = train.initial_state(cfg, trainer.keep.size, trainer.output_rows, threads)
    trainer.warm_up(state)
    del trainer, state
    if start_together is not None:
        start_together.wait()
    before = current_rss_mib()
    train.run(cfg, inputs, StageDir(out_dir, quiet=True, fingerprint="bench"))
    import json
    metrics = json.loads((out_dir / "metrics.json").read_text())
    return (metrics["raw_words_per_second"], metrics["seconds"], peak_rss_mib() - before,
            out_dir / "vectors.bin")


def train_ours_into(queue, *args, **kwargs):
    queue.put(train_ours(*args, **kwargs))


def ours_side_by_side(processes: int, inputs: dict, scratch: Path, name: str) -> float:
    """The summed words/s of `processes` one-thread, one-epoch trainings of ours in separate
    processes that start training at the same moment: what the cores give when the runs
    share nothing but the machine (caches, memory bandwidth, the host's other tenants)."""
    model, loss = WORD2VEC_CONFIGS[name]
    context = multiprocessing.get_context("spawn")
    barrier, queue = context.Barrier(processes), context.Queue()
    children = [context.Process(target=train_ours_into,
                                args=(queue, inputs, scratch / f"apart-{name}-{i}", model, loss,
                                      1, 1),
                                kwargs={"seed": 1 + i, "start_together": barrier})
                for i in range(processes)]
    for child in children:
        child.start()
    speeds = [queue.get()[0] for _ in children]
    for child in children:
        child.join()
    return sum(speeds)


def corpus_split(inputs):
    from stages import corpus
    return corpus.load_split(inputs["corpus"], "train")


def train_gensim(text: Path, out_dir: Path, model: str, loss: str, epochs: int, threads: int,
                 seed: int = 1):
    from gensim.models import Word2Vec
    w2v = Word2Vec(vector_size=100, window=5, min_count=5, sample=1e-3, sg=int(model == "skipgram"),
                   hs=int(loss == "hs"), negative=5 if loss == "ns" else 0, workers=threads,
                   epochs=epochs, seed=seed)
    before = current_rss_mib()
    w2v.build_vocab(corpus_file=str(text))
    start = time.perf_counter()
    w2v.train(corpus_file=str(text), total_words=w2v.corpus_total_words,
              total_examples=w2v.corpus_count, epochs=epochs)
    seconds = time.perf_counter() - start
    out_dir.mkdir(parents=True, exist_ok=True)
    w2v.wv.save_word2vec_format(str(out_dir / "vectors.bin"), binary=True)
    return (w2v.corpus_total_words * epochs / seconds, seconds, peak_rss_mib() - before,
            out_dir / "vectors.bin")


def in_child(function, *args):
    """function(*args) in a fresh process. The pool is closed and joined, not terminated
    (what `with Pool` does): a killed child leaves its semaphores registered, and the
    resource tracker then prints a warning for each at exit."""
    pool = multiprocessing.get_context("spawn").Pool(1)
    try:
        return pool.apply(function, args)
    finally:
        pool.close()
        pool.join()


def quality(vectors_file: Path) -> tuple[dict, float, float]:
    """(answered analogies, analogy accuracy, WordSim-353 Spearman)."""
    from stages import evaluate
    from stages.vectors import Vectors
    vectors = Vectors.load(vectors_file)
    sections = evaluate.read_analogies(QUESTIONS)
    answered = evaluate.answered_analogies(vectors, sections, 30000, True)
    accuracy = evaluate.summarize_analogies(sections, answered)["analogy_accuracy"]
    wordsim = evaluate.evaluate_similarity(vectors, evaluate.read_word_pairs(WORDSIM), True)
    return answered, accuracy, wordsim["spearman"]


def scaling_ratio(inputs: dict, text: Path, scratch: Path, name: str, threads: int,
                  runs: int) -> tuple[str, str, str]:
    """Over `runs` rounds of one-epoch runs: the median (and range) of words/s with
    `threads` over words/s with one thread; of the summed words/s of `threads` one-thread
    processes trained at once (ours_side_by_side) over the same one-thread figure: the
    host's own ceiling for the first ratio in the same minutes; and of gensim's words/s
    with `threads` workers over its words/s with one."""
    if runs < 1:
        return "-", "-", "-"
    model, loss = WORD2VEC_CONFIGS[name]
    ratios, apart, peer = [], [], []
    for _ in range(runs):
        one = in_child(train_ours, inputs, scratch / f"one-{name}", model, loss, 1, 1)
        many = in_child(train_ours, inputs, scratch / f"many-{name}", model, loss, 1, threads)
        together = ours_side_by_side(threads, inputs, scratch, name)
        peer_one = in_child(train_gensim, text, scratch / f"gensim-one-{name}", model, loss, 1, 1)
        peer_many = in_child(train_gensim, text, scratch / f"gensim-many-{name}", model, loss, 1,
                             threads)
        ratios.append(many[0] / one[0])
        apart.append(together / one[0])
        peer.append(peer_many[0] / peer_one[0])
        print(f"{name} scaling: Mw/s {one[0] / 1e6:.3f} with one thread, {many[0] / 1e6:.3f} "
              f"with {threads}: {ratios[-1]:.2f}x; {threads} one-thread processes at once "
              f"{together / 1e6:.3f} in all: {apart[-1]:.2f}x; gensim {peer_one[0] / 1e6:.3f} "
              f"with one worker, {peer_many[0] / 1e6:.3f} with {threads}: {peer[-1]:.2f}x",
              flush=True)
    return tuple(f"{statistics.median(r):.2f}x ({min(r):.2f}-{max(r):.2f})"
                 for r in (ratios, apart, peer))


def compare_once(inputs: dict, text: Path, scratch: Path, name: str, args, seed: int,
                 c_tool: dict | None) -> dict:
    """Ours and gensim (and the C tool, where `c_tool` holds it) trained with one seed: their
    words/s, +MiB and quality figures."""
    from stages.evaluate import shared_question_accuracy
    model, loss = WORD2VEC_CONFIGS[name]
    ours = in_child(train_ours, inputs, scratch / f"ours-{name}", model, loss, args.epochs,
                    args.threads, args.ours_alpha, seed, args.ours_min_alpha_ratio)
    theirs = in_child(train_gensim, text, scratch / f"gensim-{name}", model, loss, args.epochs,
                      args.threads, seed)
    (a_ours, q_ours, w_ours), (a_theirs, q_theirs, w_theirs) = quality(ours[3]), quality(theirs[3])
    s_ours, s_theirs, _ = shared_question_accuracy(a_ours, a_theirs)
    print(f"{name} seed {seed}: Mw/s {ours[0] / 1e6:.3f} / {theirs[0] / 1e6:.3f}, analogy "
          f"{100 * q_ours:.1f} / {100 * q_theirs:.1f}%, ws353 {w_ours:.3f} / {w_theirs:.3f} "
          f"(ours / gensim)", flush=True)
    figures = {"speed": (ours[0], theirs[0]), "mib": (ours[2], theirs[2]),
               "analogy": (100 * q_ours, 100 * q_theirs), "same_q": (100 * s_ours, 100 * s_theirs),
               "ws353": (w_ours, w_theirs)}
    if c_tool:
        figures["c"] = train_c_tool(c_tool, text, scratch, name, args)
    return figures


def train_c_tool(c_tool: dict, text: Path, scratch: Path, name: str, args) -> dict:
    """One training of the C tool: its words/s, analogy %, WordSim and peak MiB."""
    model, loss = WORD2VEC_CONFIGS[name]
    speed, _, mib, vectors = c_word2vec.train(c_tool["binary"], text, c_tool["vocab"],
                                              scratch / f"c-{name}", model, loss, args.epochs,
                                              args.threads, c_tool["raw_words"])
    _, accuracy, wordsim = quality(vectors)
    print(f"{name} word2vec.c: Mw/s {speed / 1e6:.3f}, analogy {100 * accuracy:.1f}%, ws353 "
          f"{wordsim:.3f}, peak {mib:.0f} MiB", flush=True)
    return {"speed": speed, "analogy": 100 * accuracy, "ws353": wordsim, "mib": mib}


def c_tool_row(name: str, pairs: list[dict]) -> list[str]:
    """One row of C_HEADER: the C tool's figures and ours (from the same seeds) against them."""
    ours_speed = statistics.median(pair["speed"][0] for pair in pairs)
    speed = statistics.median(pair["c"]["speed"] for pair in pairs)
    row = [name, f"{speed / 1e6:.3f}", f"{ours_speed / speed:.2f}x"]
    for key, digits in (("analogy", 1), ("ws353", 3)):
        ours = statistics.mean(pair[key][0] for pair in pairs)
        theirs = statistics.mean(pair["c"][key] for pair in pairs)
        row += [f"{theirs:.{digits}f}", f"{ours - theirs:+.{digits}f}"]
    return row + [f"{max(pair['c']['mib'] for pair in pairs):.0f}"]


def prepare_c_tool(source: str | None, text: Path, scratch: Path, inputs: dict) -> dict | None:
    """The C tool's binary, its vocabulary of `text` and the raw word count that its
    words/s divide by (ours, which gensim's equals); None without --c-word2vec."""
    if source is None:
        return None
    binary = c_word2vec.build(scratch / "c-tool", None if source == "pypi" else Path(source))
    vocab = c_word2vec.count_vocabulary(binary, text, scratch / "c-tool")
    return {"binary": binary, "vocab": vocab, "raw_words": corpus_split(inputs)[0].size}


def table_row(name: str, pairs: list[dict], scaling: tuple[str, ...]) -> list[str]:
    """One row of HEADER from the per-seed comparisons ("-" where there are none)."""
    if not pairs:
        # every column between the name and the scaling ones is per-seed
        return [name] + ["-"] * (HEADER.index("scaling") - 1) + [*scaling, "-", "-"]
    def mean(key, side):
        return statistics.mean(pair[key][side] for pair in pairs)
    speed = [statistics.median(pair["speed"][side] for pair in pairs) for side in (0, 1)]
    row = [name, f"{speed[0] / 1e6:.3f}", f"{speed[1] / 1e6:.3f}", f"{speed[0] / speed[1]:.2f}x"]
    for key, digits in (("analogy", 1), ("same_q", 1), ("ws353", 3)):
        ours, theirs = mean(key, 0), mean(key, 1)
        row += [f"{ours:.{digits}f}", f"{theirs:.{digits}f}", f"{ours - theirs:+.{digits}f}"]
    largest = [max(pair["mib"][side] for pair in pairs) for side in (0, 1)]
    return row + [*scaling, f"{largest[0]:.0f}", f"{largest[1]:.0f}"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default=",".join(WORD2VEC_CONFIGS))
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seeds", type=int, default=3,
                        help="train each tool with seeds 1..N and average the quality figures "
                             "(0: only the scaling column)")
    parser.add_argument("--scaling-runs", type=int, default=3)
    parser.add_argument("--no-scaling", dest="scaling_runs", action="store_const", const=0,
                        help="the same as --scaling-runs 0")
    parser.add_argument("--ours-alpha", type=float, default=0.0,
                        help="our starting learning rate (default 0: word2vec.c's per model)")
    parser.add_argument("--ours-min-alpha-ratio", type=float, default=1e-4,
                        help="our final learning rate over the starting one (word2vec.c: 1e-4)")
    parser.add_argument("--c-word2vec", nargs="?", const="pypi", default=None, metavar="SOURCE",
                        help="also train the original C word2vec, built from SOURCE (a "
                             "word2vec.c) or, with no SOURCE, from the PyPI package word2vec")
    args = parser.parse_args()
    if args.seeds < 1 and args.scaling_runs < 1:
        parser.error("--seeds 0 measures only the scaling column: give --scaling-runs 1 or more")
    scratch = scratch_dir()
    text = concatenated_en_mix(scratch)
    inputs = word2vec_inputs(scratch, [text])
    c_tool = prepare_c_tool(args.c_word2vec, text, scratch, inputs)
    rows, c_rows = [], []
    for name in args.configs.split(","):
        pairs = [compare_once(inputs, text, scratch, name, args, seed, c_tool)
                 for seed in range(1, args.seeds + 1)]
        scaling = scaling_ratio(inputs, text, scratch, name, args.threads, args.scaling_runs)
        rows.append(table_row(name, pairs, scaling))
        print_table(HEADER, rows[-1:])
        if c_tool and pairs:
            c_rows.append(c_tool_row(name, pairs))
    print()
    trained = (f"{args.epochs} epochs, seeds 1-{args.seeds}; words/s in millions of raw words "
               f"(median over the seeds), quality figures and diffs averaged over the seeds"
               if args.seeds else "scaling only")
    print(f"en-mix, dim 100, window 5, min_count 5, sample 1e-3, {args.threads} threads, "
          f"{trained}; scaling, apart and gensim scaling: {args.scaling_runs} rounds of "
          f"one-epoch runs")
    print_table(HEADER, rows)
    if c_rows:
        print(f"\nthe original C word2vec, the same settings and {args.threads} threads, "
              f"once per seed; diffs are ours minus its")
        print_table(C_HEADER, c_rows)


HEADER = ["config", "ours Mw/s", "gensim Mw/s", "speed", "ours analogy%", "gensim analogy%", "diff",
          "ours same-q%", "gensim same-q%", "diff",
          "ours ws353", "gensim ws353", "diff", "scaling", "apart", "gensim scaling",
          "ours +MiB", "gensim +MiB"]
C_HEADER = ["config", "C Mw/s", "ours/C speed", "C analogy%", "diff", "C ws353", "diff",
            "C peak MiB"]


if __name__ == "__main__":
    main()
