"""Command line: python -m pipeline {run,status,clean} [options].

Exit codes: 0 success, 1 a stage failed, 2 bad usage or config. Errors print one line;
--debug shows the traceback as well.
"""
from __future__ import annotations

import argparse
import sys
import traceback
from pathlib import Path

from pipeline.config import ConfigError, load_config

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
DEFAULT_CONFIG = Path("config.toml")


class UsageError(Exception):
    """Bad command-line usage (exit 2)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m pipeline",
                     description="word2vec + RNN language-model pipeline")
    verbs = parser.add_subparsers(dest="verb", required=True, parser_class=_Parser)

    run = verbs.add_parser("run", help="run the pipeline's stages (skips those up to date)")
    _add_common(run)
    which = run.add_mutually_exclusive_group()
    which.add_argument("--only", metavar="STAGE", help="run just this stage")
    which.add_argument("--from", dest="start", metavar="STAGE",
                       help="run this stage and everything after it")
    run.add_argument("--force", action="store_true", help="rerun even if up to date")
    run.add_argument("--quiet", action="store_true", help="no progress bars or messages")

    status = verbs.add_parser("status", help="show each stage: done, stale or missing")
    _add_common(status)

    clean = verbs.add_parser("clean", help="delete stages' outputs (all if none named)")
    _add_common(clean)
    clean.add_argument("stages", nargs="*", metavar="STAGE")
    similar = verbs.add_parser("similar", help="nearest words to WORD (cosine)")
    _add_common(similar)
    similar.add_argument("word")
    similar.add_argument("-n", type=int, default=10, help="how many (default 10)")

    analogy = verbs.add_parser("analogy", help="A is to B as C is to ?")
    _add_common(analogy)
    analogy.add_argument("words", nargs=3, metavar="WORD")
    analogy.add_argument("-n", type=int, default=5, help="how many answers (default 5)")
    analogy.add_argument("--method", choices=("add", "mul"), default="add",
                         help="3CosAdd (default) or 3CosMul")
    _add_language_model_verbs(verbs)
    return parser


def _add_language_model_verbs(verbs) -> None:
    generate = verbs.add_parser("generate", help="sample text from the trained language model")
    _add_common(generate)
    generate.add_argument("--words", type=int, default=50, help="how many words (default 50)")
    generate.add_argument("--temperature", type=float, default=1.0,
                          help="below 1: safer words; above 1: more surprising (default 1)")
    generate.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    generate.add_argument("--prompt", default="", help="text to continue")

    predict = verbs.add_parser("predict", help="the most likely next words after some text")
    _add_common(predict)
    predict.add_argument("text")
    predict.add_argument("-k", type=int, default=10, help="how many words (default 10)")

    score = verbs.add_parser("score", help="perplexity of a text file (one sentence per line)")
    _add_common(score)
    score.add_argument("file", type=Path)


def _add_common(sub) -> None:
    sub.add_argument("--config", type=Path, help="config file (default ./config.toml)")
    sub.add_argument("--set", dest="overrides", action="append", default=[],
                     metavar="SECTION.KEY=VALUE", help="override one config value")
    sub.add_argument("--run-dir", type=Path, help="run directory (default runs/<run.name>)")
    sub.add_argument("--debug", action="store_true", help="show tracebacks on errors")


def _pipeline(args, quiet: bool = False):
    from pipeline.graph import Pipeline   # imports the numeric stages: only when needed
    path = args.config
    if path is None and DEFAULT_CONFIG.is_file():
        path = DEFAULT_CONFIG
    cfg = load_config(path, args.overrides)
    run_dir = args.run_dir or Path("runs") / cfg.run.name
    report = (lambda message: None) if quiet else (lambda message: print(message, file=sys.stderr))
    return Pipeline(cfg, run_dir, quiet=quiet, report=report)


def cmd_run(args) -> int:
    pipeline = _pipeline(args, quiet=args.quiet)
    pipeline.run(only=args.only, start=args.start, force=args.force)
    return EXIT_OK


def cmd_status(args) -> int:
    pipeline = _pipeline(args)
    print(f"run directory: {pipeline.run_dir}")
    print(f"{'stage':<10} {'state':<12} {'finished':<25} {'seconds':>9} {'size':>10}  note")
    for row in pipeline.status_rows():
        seconds = f"{row['seconds']:.1f}" if row["seconds"] is not None else "-"
        print(f"{row['stage']:<10} {row['state']:<12} {row['finished'] or '-':<25} "
              f"{seconds:>9} {_human_bytes(row['bytes']):>10}  {row['reason']}")
    return EXIT_OK


def cmd_clean(args) -> int:
    removed = _pipeline(args).clean(args.stages)
    print("removed: " + (", ".join(removed) if removed else "nothing"))
    return EXIT_OK


def _trained_vectors(args):
    from stages.vectors import Vectors
    pipeline = _pipeline(args)
    # the vectors of the last finished run, even if the config has changed since
    if not (pipeline.stage_dir("word2vec") / "manifest.json").is_file():
        raise UsageError(f"no trained vectors in {pipeline.run_dir}: run the pipeline first "
                         f"(python -m pipeline run)")
    return Vectors.load(pipeline.stage_dir("word2vec") / "vectors.bin")


def cmd_similar(args) -> int:
    vectors = _trained_vectors(args)
    _require_words(vectors, [args.word])
    for word, score in vectors.most_similar(args.word, n=args.n):
        print(f"{score:8.4f}  {word}")
    return EXIT_OK


def cmd_analogy(args) -> int:
    vectors = _trained_vectors(args)
    _require_words(vectors, args.words)
    a, b, c = args.words
    for word, score in vectors.analogy(a, b, c, n=args.n, method=args.method):
        print(f"{score:8.4f}  {word}")
    return EXIT_OK


def _language_model(args):
    from stages.rnnlm.generate import LanguageModel
    pipeline = _pipeline(args)
    if not (pipeline.stage_dir("rnnlm") / "manifest.json").is_file():
        raise UsageError(f"no trained language model in {pipeline.run_dir}: run the pipeline "
                         f"first (python -m pipeline run)")
    return LanguageModel.load(pipeline.stage_dir("rnnlm"))


def cmd_generate(args) -> int:
    if args.words < 1 or args.temperature <= 0:
        raise UsageError("--words must be >= 1 and --temperature > 0")
    words = _language_model(args).generate(args.words, args.temperature, args.seed, args.prompt)
    # one sentence per line: <eos> ends a line
    print(" ".join(words).replace(" <eos> ", "\n").replace("<eos>", "").strip())
    return EXIT_OK


def cmd_predict(args) -> int:
    for word, p in _language_model(args).predict(args.text, args.k):
        print(f"{p:8.4f}  {word}")
    return EXIT_OK


def cmd_score(args) -> int:
    perplexity, tokens = _language_model(args).score(args.file)
    print(f"perplexity {perplexity:.2f} over {tokens} tokens (words + <eos>)")
    return EXIT_OK


def _require_words(vectors, words) -> None:
    missing = [w for w in words if w not in vectors]
    if missing:
        raise UsageError(f"not in the vocabulary: {', '.join(missing)}")


def _human_bytes(size: int) -> str:
    if not size:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(size)


COMMANDS = {"run": cmd_run, "status": cmd_status, "clean": cmd_clean,
            "similar": cmd_similar, "analogy": cmd_analogy, "generate": cmd_generate,
            "predict": cmd_predict, "score": cmd_score}


def main(argv=None) -> int:
    from pipeline.graph import PipelineError
    from stages.errors import InputError, TrainingDiverged
    argv = sys.argv[1:] if argv is None else argv
    debug = "--debug" in argv
    try:
        args = build_parser().parse_args(argv)
        return COMMANDS[args.verb](args)
    except (UsageError, ConfigError) as err:
        return _fail(err, EXIT_USAGE, debug)
    except (InputError, TrainingDiverged, PipelineError) as err:
        return _fail(err, EXIT_FAILED, debug)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_FAILED
    except Exception as err:   # a bug: say so, keep it to one line unless --debug
        return _fail(f"internal error: {type(err).__name__}: {err} (rerun with --debug "
                     f"for the traceback)", EXIT_FAILED, debug)


def _fail(message, code: int, debug: bool) -> int:
    if debug:
        traceback.print_exc()
    print(f"error: {message}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
