"""The whole pipeline on the built-in corpus: planted analogies are recovered."""
import json

from pipeline.__main__ import main


def test_builtin_corpus_pipeline_recovers_planted_analogies(tmp_path, capsys):
    run_dir = tmp_path / "run"
    code = main(["run", "--quiet", "--run-dir", str(run_dir), "--set", "corpus.builtin_sentences=40000",
                 "--set", "word2vec.model=cbow", "--set", "word2vec.epochs=3"])
    assert code == 0
    metrics = json.loads((run_dir / "evaluate" / "metrics.json").read_text())
    # 1,120 questions; chance is about 1 in 1,800 words. Measured: 0.99 with these settings.
    assert metrics["analogy_coverage"] == 1.0
    assert metrics["analogy_accuracy"] > 0.8
    for section in metrics["analogy_sections"].values():
        assert section["accuracy"] > 0.5
    assert main(["analogy", "--run-dir", str(run_dir), "man", "king", "woman", "-n", "1"]) == 0
    assert "queen" in capsys.readouterr().out
    assert main(["similar", "--run-dir", str(run_dir), "nosuchword"]) == 2
