import dataclasses
import re
import tomllib

import pytest

from pipeline.config import Config, ConfigError, config_to_dict, load_config, parse_override
from tests.conftest import ROOT


def test_config_toml_names_every_key_of_every_section():
    with open(ROOT / "config.toml", "rb") as handle:
        on_disk = tomllib.load(handle)
    expected = config_to_dict(Config())
    assert {s: set(keys) for s, keys in on_disk.items()} == {s: set(k) for s, k in expected.items()}


def test_every_key_in_config_toml_has_a_comment_above_it():
    lines = (ROOT / "config.toml").read_text().splitlines()
    for number, line in enumerate(lines):
        if re.match(r"^[a-z_0-9]+ = ", line):
            assert lines[number - 1].startswith("#"), f"key without comment: {line}"


def test_loading_the_shipped_file_gives_the_defaults():
    assert load_config(ROOT / "config.toml") == Config()


def test_unknown_key_names_the_valid_keys_and_suggests_one(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[vocab]\nmin_cout = 3\n")
    with pytest.raises(ConfigError, match=r"vocab\.min_cout.*did you mean 'min_count'.*max_vocab_size"):
        load_config(path)


def test_unknown_section_is_an_error():
    with pytest.raises(ConfigError, match=r"\[wrod2vec\].*did you mean 'word2vec'"):
        load_config(None, ["wrod2vec.dim=3"])


@pytest.mark.parametrize("override, message", [
    ("word2vec.dim=abc", r"word2vec\.dim = 'abc' has the wrong type; expected an integer"),
    ("word2vec.dim=0", r"word2vec\.dim = 0 is too small; it must be >= 1"),
    ("word2vec.model=glove", r"word2vec\.model = 'glove' is not allowed; choose one of 'skipgram' \| 'cbow'"),
    ("word2vec.min_alpha_ratio=2", r"too large"),
    ("corpus.lowercase=1", r"expected true or false"),
    ("rnnlm.lr=0", r"must be > 0"),
    ("word2vec", r"expected section\.key=value"),
])
def test_bad_values_name_key_value_and_rule(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_overrides_are_typed_and_paths_need_no_quotes():
    cfg = load_config(None, ["corpus.path=../data/x.txt", "word2vec.alpha=1", "vocab.min_count=10"])
    assert cfg.corpus.path == ("../data/x.txt",)
    assert cfg.word2vec.alpha == 1.0 and isinstance(cfg.word2vec.alpha, float)
    assert cfg.vocab.min_count == 10
    cfg = load_config(None, ['corpus.path=["a.txt", "b/*.gz"]', "corpus.lowercase=true"])
    assert cfg.corpus.path == ("a.txt", "b/*.gz") and cfg.corpus.lowercase is True


def test_parse_override_reads_toml_values():
    assert parse_override("a.b=1e-3") == ("a", "b", 1e-3)
    assert parse_override("a.b=word") == ("a", "b", "word")
    assert parse_override("a.b=[1, 2]") == ("a", "b", [1, 2])


def test_config_is_frozen():
    cfg = Config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.vocab.min_count = 3


def test_invalid_toml_file_is_a_config_error(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[vocab\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.toml")
