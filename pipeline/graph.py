"""The stage graph: declared inputs, fingerprints, and run / skip / rerun decisions.

A stage's fingerprint hashes its format version, its resolved config section, the external
files it reads (path, size, mtime) and, for each upstream stage, the digest of that stage's
finished outputs. So changing one key reruns that stage and, only if its outputs changed,
everything downstream; nothing upstream. A stage is "done" when its manifest exists, its files
still match their checksums and its fingerprint equals the one the current config gives.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from pipeline import store
from pipeline.config import Config, config_to_dict
from stages import corpus, evaluate, vocab
from stages.rnnlm import train as rnnlm_train
from stages.word2vec import train as word2vec_train


@dataclass(frozen=True)
class Stage:
    name: str
    inputs: tuple[str, ...]
    run: Callable | None              # None: not available in this version
    version: int = 1                  # bump when the stage's output format changes
    external_files: Callable | None = None   # cfg -> the user files the stage reads


STAGES = (
    Stage("corpus", (), corpus.run, 1, corpus.input_files),
    Stage("vocab", ("corpus",), vocab.run, 1),
    Stage("word2vec", ("corpus", "vocab"), word2vec_train.run, 1),
    Stage("evaluate", ("corpus", "vocab", "word2vec"), evaluate.run, 1, evaluate.input_files),
    Stage("rnnlm", ("corpus", "vocab", "word2vec"), rnnlm_train.run, 1, rnnlm_train.input_files),
)
BY_NAME = {stage.name: stage for stage in STAGES}


class PipelineError(RuntimeError):
    """The pipeline cannot do what was asked (a missing upstream stage, ...)."""


@dataclass
class StageState:
    state: str          # done | stale | missing | unavailable
    reason: str = ""
    manifest: dict | None = None


def downstream_of(name: str) -> list[str]:
    """`name` and every stage that depends on it, in pipeline order."""
    chosen = {name}
    for stage in STAGES:
        if chosen & set(stage.inputs):
            chosen.add(stage.name)
    return [s.name for s in STAGES if s.name in chosen]


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def _file_stats(paths) -> list:
    return [[str(p), p.stat().st_size, p.stat().st_mtime_ns] for p in paths]


class Pipeline:
    """The stages of one run directory under one config."""

    def __init__(self, cfg: Config, run_dir: Path, quiet: bool = False, report=print):
        self.cfg, self.run_dir, self.quiet, self.report = cfg, Path(run_dir), quiet, report
        self._states: dict[str, StageState] = {}

    def stage_dir(self, name: str) -> Path:
        return self.run_dir / name

    def section(self, name: str):
        return getattr(self.cfg, name)

    def fingerprint(self, stage: Stage) -> str:
        """What the manifest must say for the stage to count as done (inputs must be done)."""
        upstream = {name: self.state(name).manifest["output_digest"] for name in stage.inputs}
        external = _file_stats(stage.external_files(self.section(stage.name))
                               if stage.external_files else [])
        return _digest({"stage": stage.name, "version": stage.version, "inputs": upstream,
                        "config": config_to_dict(self.section(stage.name)), "files": external})

    def state(self, name: str) -> StageState:
        if name not in self._states:
            self._states[name] = self._compute_state(BY_NAME[name])
        return self._states[name]

    def _compute_state(self, stage: Stage) -> StageState:
        if stage.run is None:
            return StageState("unavailable", "not available in this version")
        manifest_path = self.stage_dir(stage.name) / store.MANIFEST
        manifest = store.read_json(manifest_path) if manifest_path.is_file() else None
        for name in stage.inputs:
            upstream = self.state(name)
            if upstream.state != "done":
                return StageState("stale" if manifest else "missing",
                                  f"input {name} is {upstream.state}", manifest)
        if manifest is None:
            return StageState("missing", "never finished")
        problems = store.file_problems(self.stage_dir(stage.name), manifest["files"])
        if problems:
            return StageState("stale", "; ".join(problems), manifest)
        if manifest["fingerprint"] != self.fingerprint(stage):
            return StageState("stale", "config or inputs changed", manifest)
        return StageState("done", "", manifest)

    def select(self, only: str | None = None, start: str | None = None) -> list[Stage]:
        for name in (only, start):
            if name is not None and name not in BY_NAME:
                raise PipelineError(f"unknown stage {name!r}; stages: {', '.join(BY_NAME)}")
        names = [only] if only else downstream_of(start) if start else list(BY_NAME)
        return [BY_NAME[n] for n in names]

    def run(self, only: str | None = None, start: str | None = None, force: bool = False):
        """Run the selected stages in order, skipping those already done (unless force)."""
        selected = self.select(only, start)
        if only and BY_NAME[only].run is None:
            raise PipelineError(f"stage {only} is not available in this version")
        for stage in selected:
            if stage.run is None:
                self.report(f"{stage.name}: not available in this version, skipped")
                continue
            blocked = [n for n in stage.inputs if self.state(n).state != "done"]
            if blocked:
                if any(BY_NAME[n].run is None for n in blocked):
                    self.report(f"{stage.name}: skipped, needs {', '.join(blocked)}")
                    continue
                raise PipelineError(f"stage {stage.name} needs {', '.join(blocked)}, which "
                                    f"is not done; run without --only/--from first")
            if self.state(stage.name).state == "done" and not force:
                self.report(f"{stage.name}: up to date, skipped")
                continue
            self._run_stage(stage)

    def _run_stage(self, stage: Stage) -> None:
        directory = self.stage_dir(stage.name)
        (directory / store.MANIFEST).unlink(missing_ok=True)
        store.remove_temporaries(directory)
        fingerprint = self.fingerprint(stage)
        inputs = {name: self.stage_dir(name) for name in stage.inputs}
        self.report(f"{stage.name}: running")
        started, clock = store.now_iso(), time.perf_counter()
        summary = stage.run(self.section(stage.name), inputs,
                            store.StageDir(directory, quiet=self.quiet, fingerprint=fingerprint))
        seconds = time.perf_counter() - clock
        files = store.describe_files(directory)
        manifest = {
            "stage": stage.name, "format_version": stage.version, "fingerprint": fingerprint,
            "config": config_to_dict(self.section(stage.name)),
            "inputs": {n: self.state(n).manifest["output_digest"] for n in stage.inputs},
            "files": files, "output_digest": _digest({k: v["sha256"] for k, v in files.items()}),
            "started": started, "finished": store.now_iso(), "seconds": round(seconds, 3),
            "summary": summary,
        }
        store.write_json(directory / store.MANIFEST, manifest)
        self._states = {}          # downstream states depend on this stage's new outputs
        self.report(f"{stage.name}: done in {seconds:.1f} s  {_brief(summary)}")

    def status_rows(self) -> list[dict]:
        rows = []
        for stage in STAGES:
            st = self.state(stage.name)
            manifest = st.manifest or {}
            size = sum(f["size"] for f in manifest.get("files", {}).values())
            rows.append({"stage": stage.name, "state": st.state, "reason": st.reason,
                         "finished": manifest.get("finished", ""),
                         "seconds": manifest.get("seconds"), "bytes": size})
        return rows

    def clean(self, names: list[str]) -> list[str]:
        for name in names:
            if name not in BY_NAME:
                raise PipelineError(f"unknown stage {name!r}; stages: {', '.join(BY_NAME)}")
        removed = []
        for name in names or list(BY_NAME):
            if self.stage_dir(name).exists():
                shutil.rmtree(self.stage_dir(name))
                removed.append(name)
        self._states = {}
        return removed


def _brief(summary) -> str:
    if not isinstance(summary, dict):
        return ""
    return " ".join(f"{k}={v}" for k, v in summary.items() if not isinstance(v, (dict, list)))
