"""The original C word2vec as a second peer: build it, train it, time it.

The source is word2vec.c as the PyPI package `word2vec` 0.11.1 ships it (Mikolov's code from
before the 2017 revision: a thread that reaches the end of the file seeks back, which clears
the end-of-file flag, so it has not that revision's bug of skipping later epochs).
`pip download` fetches the package's source, which needs only the package registry; a path
to a word2vec.c can be given instead. It is compiled with the flags of its own Makefile.

Training runs in two steps, so that the clock holds training only: the vocabulary is
counted once per corpus (`-save-vocab`, no `-output`), then each training reads it back
(`-read-vocab`) and is timed from launch to exit. That time includes building the network,
the 1e8-entry negative-sampling table and writing the vectors: measured on a one-line
corpus, 0.15 s with HS and 0.47 s with NS, of trainings that take 40-140 s.
"""
from __future__ import annotations

import subprocess
import sys
import tarfile
import time
from pathlib import Path

from common import status_mib

PYPI_PACKAGE = "word2vec==0.11.1"
SOURCE_IN_PACKAGE = "word2vec/includes/word2vec.c"
# word2vec.c's Makefile
CFLAGS = ["-lm", "-pthread", "-O3", "-march=native", "-Wall", "-funroll-loops",
          "-Wno-unused-result"]


def build(folder: Path, source: Path | None = None) -> Path:
    """The compiled C tool in `folder`, from `source` (a word2vec.c) or from the PyPI package."""
    folder.mkdir(parents=True, exist_ok=True)
    if source is None:
        source = fetch_source(folder)
    binary = folder / "word2vec-c"
    run_or_exit(["cc", str(source), "-o", str(binary), *CFLAGS])
    return binary


def run_or_exit(command: list[str]) -> None:
    """Runs `command`; if it fails, stops the bench with the command and what it printed."""
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise failure(command, done.returncode, done.stdout[-2000:] + done.stderr[-2000:])


def failure(command: list[str], returncode: int, output: str) -> SystemExit:
    """What stops the bench when a command fails: the command, its exit status and the
    tail of what it printed."""
    return SystemExit(f"{' '.join(command)} failed (exit {returncode}):\n{output}")


def fetch_source(folder: Path) -> Path:
    """word2vec.c from the PyPI package's source archive."""
    done = subprocess.run([sys.executable, "-m", "pip", "download", PYPI_PACKAGE, "--no-deps",
                           "--no-binary", ":all:", "-d", str(folder)],
                          capture_output=True, text=True)
    archives = sorted(folder.glob("word2vec-*.tar.gz"))
    if not archives:
        raise SystemExit(f"could not fetch {PYPI_PACKAGE} from the package index "
                         f"(pass --c-word2vec PATH/word2vec.c instead):\n{done.stderr}")
    with tarfile.open(archives[0]) as archive:
        member = next(m for m in archive.getmembers() if m.name.endswith(SOURCE_IN_PACKAGE))
        target = folder / "word2vec.c"
        target.write_bytes(archive.extractfile(member).read())
    return target


def count_vocabulary(binary: Path, text: Path, folder: Path, min_count: int = 5) -> Path:
    """The C tool's vocabulary file for `text` (it stops before training without -output)."""
    vocab = folder / f"{text.stem}.vocab"
    if not vocab.exists():
        run_or_exit([str(binary), "-train", str(text), "-save-vocab", str(vocab),
                     "-min-count", str(min_count)])
    return vocab


def train(binary: Path, text: Path, vocab: Path, out_dir: Path, model: str, loss: str,
          epochs: int, threads: int, raw_words: int):
    """(raw words/s, seconds, peak MiB, vectors file), the settings of the side-by-side
    bench; the C tool's own learning rates (0.025 skip-gram, 0.05 CBOW, down to 1e-4 of that)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    vectors = out_dir / "vectors.bin"
    command = [str(binary), "-train", str(text), "-read-vocab", str(vocab), "-output", str(vectors),
               "-cbow", str(int(model == "cbow")), "-size", "100", "-window", "5",
               "-sample", "1e-3", "-hs", str(int(loss == "hs")),
               "-negative", "5" if loss == "ns" else "0", "-threads", str(threads),
               "-iter", str(epochs), "-min-count", "5", "-binary", "1"]
    log = out_dir / "word2vec-c.log"
    start = time.perf_counter()
    # its output goes to a file, not a pipe: nothing reads a pipe while it runs, and a full
    # one would stop it
    with open(log, "wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
        peak = 0.0
        while process.poll() is None:
            # VmHWM, read while it runs: the rusage its parent gets at exit carries the
            # parent's own peak over
            peak = max(peak, status_mib("VmHWM", process.pid))
            time.sleep(0.1)
    seconds = time.perf_counter() - start
    if process.returncode != 0:
        raise failure(command, process.returncode, log.read_text(errors="replace")[-2000:])
    return raw_words * epochs / seconds, seconds, peak, vectors
