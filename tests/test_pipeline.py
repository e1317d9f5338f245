"""The stage runner and the CLI, end to end on small generated corpora."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from pipeline.__main__ import main
from tests.conftest import ROOT, SMALL_LM, write_lines


def cli(*args):
    return main(list(args))


def small_corpus(tmp_path, lines=2000, seed=0):
    rng = np.random.default_rng(seed)
    words = [f"w{i}" for i in range(50)]
    p = 1 / np.arange(1, 51)
    p /= p.sum()
    return write_lines(tmp_path / "text.txt",
                       [" ".join(rng.choice(words, size=8, p=p)) for _ in range(lines)])


def manifest(run_dir, stage):
    return json.loads((run_dir / stage / "manifest.json").read_text())


def test_run_skip_and_rerun_only_what_changed(tmp_path, capsys):
    text, run_dir = small_corpus(tmp_path), tmp_path / "run"
    common = ["--run-dir", str(run_dir), "--set", f"corpus.path={text}", *SMALL_LM]
    assert cli("run", *common, "--only", "corpus") == 0
    assert cli("run", *common, "--only", "vocab") == 0
    first = {s: manifest(run_dir, s) for s in ("corpus", "vocab")}
    capsys.readouterr()
    assert cli("run", *common) == 0
    err = capsys.readouterr().err
    assert "corpus: up to date, skipped" in err and "vocab: up to date, skipped" in err
    assert {s: manifest(run_dir, s) for s in ("corpus", "vocab")} == first   # not rewritten
    corpus_manifest = manifest(run_dir, "corpus")
    assert cli("run", *common, "--set", "vocab.min_count=100") == 0
    err = capsys.readouterr().err
    assert "corpus: up to date" in err and "vocab: done" in err
    assert manifest(run_dir, "corpus") == corpus_manifest
    assert manifest(run_dir, "vocab")["config"]["min_count"] == 100


def test_changing_the_corpus_file_reruns_the_corpus(tmp_path, capsys):
    text, run_dir = small_corpus(tmp_path), tmp_path / "run"
    common = ["--run-dir", str(run_dir), "--set", f"corpus.path={text}", *SMALL_LM]
    assert cli("run", *common) == 0
    text.write_text("brand new text\n" * 10)
    capsys.readouterr()
    assert cli("run", *common, "--set", "vocab.min_count=1") == 0
    assert "corpus: done" in capsys.readouterr().err
    assert "brand" in (run_dir / "vocab" / "vocab.tsv").read_text()


def test_damaged_artifact_marks_the_stage_stale_and_run_repairs_it(tmp_path, capsys):
    text, run_dir = small_corpus(tmp_path), tmp_path / "run"
    common = ["--run-dir", str(run_dir), "--set", f"corpus.path={text}", *SMALL_LM]
    assert cli("run", *common) == 0
    tokens = run_dir / "corpus" / "tokens-train.npy"
    good = tokens.read_bytes()
    tokens.write_bytes(good[:-4] + b"\x01\x02\x03\x04")
    capsys.readouterr()
    assert cli("status", *common) == 0
    out = capsys.readouterr().out
    assert "stale" in out and "tokens-train.npy changed content" in out
    assert cli("run", *common) == 0
    assert tokens.read_bytes() == good


def test_force_only_from_and_clean(tmp_path, capsys):
    text, run_dir = small_corpus(tmp_path), tmp_path / "run"
    common = ["--run-dir", str(run_dir), "--set", f"corpus.path={text}", *SMALL_LM]
    assert cli("run", *common) == 0
    capsys.readouterr()
    assert cli("run", *common, "--from", "vocab", "--force") == 0
    err = capsys.readouterr().err
    assert "vocab: done" in err and "corpus" not in err
    assert cli("clean", *common, "vocab") == 0
    assert not (run_dir / "vocab").exists() and (run_dir / "corpus").exists()
    assert cli("status", *common) == 0
    assert "vocab      missing" in capsys.readouterr().out


def test_only_a_stage_whose_input_is_missing_fails_clearly(tmp_path, capsys):
    text = small_corpus(tmp_path)
    code = cli("run", "--run-dir", str(tmp_path / "r"), "--set", f"corpus.path={text}", "--only", "vocab")
    assert code == 1
    assert "vocab needs corpus" in capsys.readouterr().err


@pytest.mark.parametrize("args, code, message", [
    (["run", "--set", "vocab.min_cont=2"], 2, "did you mean 'min_count'"),
    (["run", "--set", "word2vec.dim=-1"], 2, "too small"),
    (["run", "--only", "nosuch"], 1, "unknown stage 'nosuch'"),
    (["frobnicate"], 2, "invalid choice"),
    (["run", "--set", "corpus.path=/does/not/exist.txt"], 1, "does not exist"),
])
def test_errors_are_one_line_with_the_right_exit_code(tmp_path, capsys, args, code, message):
    assert cli(*args, *(["--run-dir", str(tmp_path / "r")] if args[0] == "run" else [])) == code
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_all_unknown_corpus_is_a_clear_error(tmp_path, capsys):
    text = write_lines(tmp_path / "t.txt", ["every word is unique here"])
    common = ["--run-dir", str(tmp_path / "r"), "--set", f"corpus.path={text}", *SMALL_LM]
    assert cli("run", *common) == 1
    assert "went to the held-out splits; set corpus.heldout_every=0" in capsys.readouterr().err
    assert cli("run", *common, "--set", "corpus.heldout_every=0") == 1
    assert "lower vocab.min_count" in capsys.readouterr().err


def test_kill_during_the_corpus_stage_then_run_completes(tmp_path):
    """kill -9 while the corpus stage writes; the next run redoes it and matches a clean run."""
    rng = np.random.default_rng(5)
    vocabulary = np.array([f"w{i}" for i in range(3000)])
    with open(tmp_path / "big.txt", "w") as handle:
        for _ in range(40):
            words = vocabulary[rng.zipf(1.2, size=250_000) % 3000]
            handle.write("\n".join(" ".join(words[i:i + 25]) for i in range(0, words.size, 25)) + "\n")
    command = [sys.executable, "-m", "pipeline", "run", "--quiet", "--set",
               f"corpus.path={tmp_path / 'big.txt'}", "--only", "corpus"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    victim = subprocess.Popen(command + ["--run-dir", str(tmp_path / "r")], cwd=ROOT, env=env)
    corpus_dir = tmp_path / "r" / "corpus"
    deadline = time.time() + 60
    while not any(corpus_dir.glob(".tokens-train*")) and time.time() < deadline:
        time.sleep(0.02)
    time.sleep(0.3)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert not (corpus_dir / "manifest.json").exists()
    subprocess.run(command + ["--run-dir", str(tmp_path / "r")], cwd=ROOT, env=env, check=True)
    subprocess.run(command + ["--run-dir", str(tmp_path / "clean")], cwd=ROOT, env=env, check=True)
    for name in ("tokens-train.npy", "sentences-train.npy", "words.tsv", "tokens-test.npy"):
        assert (corpus_dir / name).read_bytes() == (tmp_path / "clean" / "corpus" / name).read_bytes()
    assert not list(corpus_dir.glob("*.tmp-*")) and not list(corpus_dir.glob(".*"))
