"""Helpers shared by the benchmarks: locating the shared data, timing, table printing."""
from __future__ import annotations

import atexit
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# the shared data beside the repository, or wherever BENCH_DATA points (a machine where the
# repository travels alone)
SHARED_DATA = Path(os.environ.get("BENCH_DATA", ROOT.parent / "shared" / "data"))
EN_MIX = SHARED_DATA / "corpora" / "en-mix"
# the word2vec configurations the benchmarks compare: name -> (model, loss)
WORD2VEC_CONFIGS = {"sg-hs": ("skipgram", "hs"), "cbow-hs": ("cbow", "hs"),
                    "sg-ns": ("skipgram", "ns"), "cbow-ns": ("cbow", "ns")}


def require(path: Path) -> Path:
    if not path.exists():
        raise SystemExit(f"benchmark data {path} is missing (expected ../shared/data beside the "
                         f"repo, or set BENCH_DATA to that folder)")
    return path


def concatenated_en_mix(folder: Path) -> Path:
    """en-mix as one file (all ten files sorted by name), for tools that want one file."""
    target = folder / "en-mix.txt"
    if not target.exists():
        with open(target, "wb") as out:
            for path in sorted(require(EN_MIX).glob("*.txt")):
                with open(path, "rb") as handle:
                    shutil.copyfileobj(handle, out)
    return target


def word2vec_inputs(root: Path, texts: list[Path]) -> dict:
    """Our corpus (every line trains: no held-out lines) and vocabulary (min_count 5)
    stages over `texts`: the inputs of a word2vec run."""
    from pipeline.config import CorpusConfig, VocabConfig
    from pipeline.store import StageDir
    from stages import corpus, vocab
    corpus.run(CorpusConfig(path=tuple(map(str, texts)), heldout_every=0), {},
               StageDir(root / "corpus", quiet=True))
    vocab.run(VocabConfig(min_count=5), {"corpus": root / "corpus"},
              StageDir(root / "vocab", quiet=True))
    return {"corpus": root / "corpus", "vocab": root / "vocab"}


def zipf_lm_model(cell: str, output: str, rng, train_embeddings: bool = True,
                  V: int = 10_002, D: int = 128, H: int = 256):
    """(model, counts): a freshly initialised LM of the benchmarks' shape, its embeddings
    N(0, 0.3^2) (drawn from rng after the initialisation); counts [V] follow a Zipf law
    (count ~ 1 / rank) and an HS output uses their Huffman tree."""
    import numpy as np
    from stages.rnnlm import data
    from stages.rnnlm.model import Architecture, Model, flat_size, initialise, parameter_shapes
    counts = (1e7 / np.arange(1, V + 1)).astype(np.int64)
    arch = Architecture(cell, output, V, D, H, train_embeddings)
    tree = data.lm_huffman(counts) if output == "hs" else None
    frozen = None if train_embeddings else np.zeros((V, D), np.float32)
    model = Model(arch, np.zeros(flat_size(parameter_shapes(arch)), np.float32), frozen, tree)
    initialise(model.p, arch, rng)
    model.embeddings[...] = rng.normal(0, 0.3, (V, D))
    return model, counts


def scratch_dir() -> Path:
    """A fresh directory for a benchmark's files, removed when the benchmark exits."""
    path = Path(tempfile.mkdtemp(prefix="bench-"))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def timed(function, *args, **kwargs):
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return time.perf_counter() - start, result


def current_rss_mib() -> float:
    return status_mib("VmRSS")


def peak_rss_mib() -> float:
    """This process's peak resident memory (VmHWM: unlike ru_maxrss it is not inherited
    from the parent across fork + exec)."""
    return status_mib("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def status_mib(field: str, pid: int | str = "self") -> float:
    """A memory figure from /proc/PID/status in MiB; 0 where it cannot be read (the
    process has exited, or the system has no /proc)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def print_table(header: list[str], rows: list[list]) -> None:
    widths = [max(len(str(x)) for x in column) for column in zip(header, *rows)]
    for row in [header] + rows:
        print("  ".join(str(x).rjust(w) for x, w in zip(row, widths)))
