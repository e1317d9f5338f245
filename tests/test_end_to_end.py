"""The whole pipeline on the built-in corpus: planted analogies are recovered, and the
language model's perplexity approaches the generator's exact entropy rate."""
import json

import pytest

from pipeline.__main__ import main


@pytest.fixture(scope="module")
def builtin_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("e2e") / "run"
    code = main(["run", "--quiet", "--run-dir", str(run_dir),
                 "--set", "corpus.builtin_sentences=40000", "--set", "vocab.min_count=1",
                 "--set", "word2vec.model=cbow", "--set", "word2vec.epochs=3",
                 "--set", "rnnlm.cell=lstm", "--set", "rnnlm.output=hs",
                 "--set", "rnnlm.hidden=128", "--set", "rnnlm.batch_size=16",
                 "--set", "rnnlm.epochs=4"])
    assert code == 0
    return run_dir


def test_builtin_corpus_pipeline_recovers_planted_analogies(builtin_run, capsys):
    metrics = json.loads((builtin_run / "evaluate" / "metrics.json").read_text())
    # 1,120 questions; chance is about 1 in 1,800 words. Measured: 0.99 with these settings.
    assert metrics["analogy_coverage"] == 1.0
    assert metrics["analogy_accuracy"] > 0.8
    for section in metrics["analogy_sections"].values():
        assert section["accuracy"] > 0.5
    # the planted relation is gender (king -> queen as man -> woman): asked this way round the
    # answer leads by ~0.07 in cosine; "man king woman" asked for a royalty offset the
    # grammar does not plant, and queen led daughter by under 0.01 (wrong with one thread)
    assert main(["analogy", "--run-dir", str(builtin_run), "king", "queen", "man", "-n", "1"]) == 0
    assert "woman" in capsys.readouterr().out
    assert main(["similar", "--run-dir", str(builtin_run), "nosuchword"]) == 2


def test_language_model_perplexity_approaches_the_entropy_rate(builtin_run):
    """The grammar's exact entropy (corpus.json) is a floor no model can beat on average;
    with min_count 1 almost no test word is merged into <unk>, which would lower it.
    Measured with these settings (210k training tokens, 4 epochs): 13.1 against a floor of
    10.46, i.e. 1.25x; validation perplexity fell every epoch (15.9, 14.2, 13.6, 13.4). The
    default run (150,000 sentences, 1 epoch of a 256-unit LSTM) reached 11.3 (1.08x)."""
    floor = json.loads((builtin_run / "corpus" / "corpus.json").read_text())["builtin"]["perplexity_floor"]
    metrics = json.loads((builtin_run / "rnnlm" / "metrics.json").read_text())
    assert 0.97 * floor < metrics["test_perplexity"] < 1.3 * floor


def test_language_model_verbs(builtin_run, capsys, tmp_path):
    assert main(["predict", "--run-dir", str(builtin_run), "the man said that", "-k", "3"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 3
    assert main(["generate", "--run-dir", str(builtin_run), "--words", "40", "--seed", "2"]) == 0
    assert len(capsys.readouterr().out.split()) >= 30
    text = tmp_path / "t.txt"
    text.write_text("the man is old\nthe king said that the queen is old\n")
    assert main(["score", "--run-dir", str(builtin_run), str(text)]) == 0
    assert "perplexity" in capsys.readouterr().out
    assert main(["score", "--run-dir", str(builtin_run), str(tmp_path / "missing.txt")]) == 1
