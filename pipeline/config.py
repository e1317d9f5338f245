"""config.toml -> one frozen dataclass per stage.

The dataclass defaults below are the same values as the commented `config.toml` at the
repository root (a test keeps the two in step); the comments there say what each key does.
Unknown sections or keys, wrong types and out-of-range values raise `ConfigError`, whose
message names the key, the value and what is allowed.
"""
from __future__ import annotations

import dataclasses
import difflib
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path


class ConfigError(ValueError):
    """A bad config file, key or value; the CLI exits with status 2."""


def option(default, *, choices=None, low=None, high=None, positive=False):
    """A config field: its default and the values it accepts."""
    meta = {"choices": choices, "low": low, "high": high, "positive": positive}
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class RunConfig:
    name: str = option("default")


@dataclass(frozen=True)
class CorpusConfig:
    path: tuple[str, ...] = option(("@builtin",))
    tokenizer: str = option("whitespace", choices=("whitespace", "words"))
    lowercase: bool = option(False)
    max_sentence_length: int = option(10000, low=1)
    heldout_every: int = option(20, low=0)
    valid_path: tuple[str, ...] = option(())
    test_path: tuple[str, ...] = option(())
    builtin_sentences: int = option(150000, low=1)
    builtin_seed: int = option(1, low=0)


@dataclass(frozen=True)
class VocabConfig:
    min_count: int = option(5, low=1)
    max_vocab_size: int = option(0, low=0)


@dataclass(frozen=True)
class Word2VecConfig:
    model: str = option("skipgram", choices=("skipgram", "cbow"))
    loss: str = option("hs", choices=("hs", "ns"))
    negative: int = option(5, low=1)
    cbow_mean: bool = option(True)
    dim: int = option(100, low=1)
    window: int = option(5, low=1)
    sample: float = option(1e-3, low=0.0)
    alpha: float = option(0.0, low=0.0)
    min_alpha_ratio: float = option(1e-4, low=0.0, high=1.0)
    epochs: int = option(5, low=1)
    threads: int = option(0, low=0)
    seed: int = option(1, low=0)
    chunk_words: int = option(1_000_000, low=1000)
    checkpoint_minutes: float = option(10.0, positive=True)
    device: str = option("cpu", choices=("cpu", "cuda", "auto"))


@dataclass(frozen=True)
class EvaluateConfig:
    analogies: str = option("auto")
    similarity: tuple[str, ...] = option(())
    restrict_vocab: int = option(30000, low=1)
    case_insensitive: bool = option(True)


@dataclass(frozen=True)
class RnnlmConfig:
    cell: str = option("lstm", choices=("tanh", "relu", "irnn", "lstm", "gru"))
    output: str = option("softmax", choices=("softmax", "hs"))
    hs_tree: str = option("huffman", choices=("huffman", "clustered"))
    hidden: int = option(256, low=1)
    max_vocab: int = option(0, low=0)
    embeddings: str = option("")
    freeze_embeddings: bool = option(False)
    batch_size: int = option(32, low=1)
    bptt: int = option(35, low=1)
    clip_norm: float = option(0.25, low=0.0)
    optimizer: str = option("sgd", choices=("sgd", "adam"))
    lr: float = option(20.0, positive=True)
    lr_decay: float = option(4.0, low=1.0)
    dropout: float = option(0.0, low=0.0, high=0.95)
    epochs: int = option(3, low=1)
    eval_batch_size: int = option(10, low=1)
    diagnostic_windows: int = option(8, low=0)
    threads: int = option(0, low=0)
    seed: int = option(1, low=0)
    checkpoint_minutes: float = option(10.0, positive=True)
    device: str = option("cpu", choices=("cpu", "cuda", "auto"))


@dataclass(frozen=True)
class Config:
    run: RunConfig = field(default_factory=RunConfig)
    corpus: CorpusConfig = field(default_factory=CorpusConfig)
    vocab: VocabConfig = field(default_factory=VocabConfig)
    word2vec: Word2VecConfig = field(default_factory=Word2VecConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    rnnlm: RnnlmConfig = field(default_factory=RnnlmConfig)


_SECTION_CLASSES = typing.get_type_hints(Config)


def load_config(path: Path | None = None, overrides: typing.Sequence[str] = ()) -> Config:
    """Read a TOML file (None: defaults only), apply `section.key=value` overrides."""
    raw = _read_toml(path) if path is not None else {}
    for text in overrides:
        section, key, value = parse_override(text)
        raw.setdefault(section, {})[key] = value
    _check_names(raw)
    sections = {name: _build_section(name, raw.get(name, {})) for name in _SECTION_CLASSES}
    return Config(**sections)


def config_to_dict(cfg) -> dict:
    """Plain JSON-able dict of a Config or of one section (tuples become lists)."""
    return json_ready(dataclasses.asdict(cfg))


def json_ready(value):
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    return value


def parse_override(text: str) -> tuple[str, str, object]:
    """'word2vec.dim=200' -> ('word2vec', 'dim', 200). The value is read as TOML,
    and as a bare string when it is not valid TOML (so paths need no quotes)."""
    name, sep, value_text = text.partition("=")
    section, dot, key = name.strip().partition(".")
    if not sep or not dot or not section or not key:
        raise ConfigError(f"--set {text!r}: expected section.key=value, e.g. word2vec.dim=200")
    try:
        value = tomllib.loads(f"v = {value_text}")["v"]
    except tomllib.TOMLDecodeError:
        value = value_text
    return section, key.strip(), value


def _read_toml(path: Path) -> dict:
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"config file {path} is not valid TOML: {err}") from None


def _did_you_mean(name: str, valid) -> str:
    close = difflib.get_close_matches(name, list(valid), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _check_names(raw: dict) -> None:
    for section, body in raw.items():
        if section not in _SECTION_CLASSES:
            valid = ", ".join(_SECTION_CLASSES)
            raise ConfigError(f"unknown config section [{section}]{_did_you_mean(section, _SECTION_CLASSES)}; "
                              f"valid sections: {valid}")
        if not isinstance(body, dict):
            raise ConfigError(f"[{section}] must be a table of keys, got {body!r}")
        known = {f.name for f in dataclasses.fields(_SECTION_CLASSES[section])}
        for key in body:
            if key not in known:
                raise ConfigError(f"unknown key {section}.{key}{_did_you_mean(key, known)}; "
                                  f"valid keys in [{section}]: {', '.join(sorted(known))}")


def _build_section(section: str, body: dict):
    cls = _SECTION_CLASSES[section]
    hints = typing.get_type_hints(cls)
    values = {}
    for fld in dataclasses.fields(cls):
        if fld.name in body:
            name = f"{section}.{fld.name}"
            values[fld.name] = _check_value(name, body[fld.name], hints[fld.name], fld.metadata)
    return cls(**values)


def _check_value(name: str, value, kind, meta):
    value = _coerce(name, value, kind)
    if meta.get("choices") and value not in meta["choices"]:
        allowed = " | ".join(repr(c) for c in meta["choices"])
        raise ConfigError(f"{name} = {value!r} is not allowed; choose one of {allowed}")
    low, high = meta.get("low"), meta.get("high")
    if low is not None and value < low:
        raise ConfigError(f"{name} = {value!r} is too small; it must be >= {low}")
    if high is not None and value > high:
        raise ConfigError(f"{name} = {value!r} is too large; it must be <= {high}")
    if meta.get("positive") and not value > 0:
        raise ConfigError(f"{name} = {value!r} must be > 0")
    return value


def _coerce(name: str, value, kind):
    """Type-check one value; ints are accepted for floats, a string for a list of strings."""
    if kind is bool:
        ok = isinstance(value, bool)
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif kind is str:
        ok = isinstance(value, str)
    else:  # tuple[str, ...]
        value = [value] if isinstance(value, str) else value
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
        value = tuple(value) if ok else value
    if not ok:
        raise ConfigError(f"{name} = {value!r} has the wrong type; expected {_type_name(kind)}")
    return value


def _type_name(kind) -> str:
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    return names.get(kind, "a string or a list of strings")
