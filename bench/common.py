"""Helpers shared by the benchmarks: locating the shared data, timing, table printing."""
from __future__ import annotations

import resource
import shutil
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
EN_MIX = SHARED_DATA / "corpora" / "en-mix"
# the word2vec configurations the benchmarks compare: name -> (model, loss)
WORD2VEC_CONFIGS = {"sg-hs": ("skipgram", "hs"), "cbow-hs": ("cbow", "hs"),
                    "sg-ns": ("skipgram", "ns"), "cbow-ns": ("cbow", "ns")}


def require(path: Path) -> Path:
    if not path.exists():
        raise SystemExit(f"benchmark data {path} is missing (expected ../shared/data beside the repo)")
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


def scratch_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="bench-"))


def timed(function, *args, **kwargs):
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return time.perf_counter() - start, result


def current_rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def peak_rss_mib() -> float:
    """This process's peak resident memory (VmHWM: unlike ru_maxrss it is not inherited
    from the parent across fork + exec)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def print_table(header: list[str], rows: list[list]) -> None:
    widths = [max(len(str(x)) for x in column) for column in zip(header, *rows)]
    for row in [header] + rows:
        print("  ".join(str(x).rjust(w) for x, w in zip(row, widths)))
