"""A study's manifest (STUDY/study.json): its grid of cells and every cell's full options.

A cell is one run, (model, seed), in a fixed folder under the study: `<model>/seed-<N>/`, or
`seed-<N>/` in a study of one model made by `train --seeds` (as every study before sweeps was, so
old study folders keep resuming). The manifest is written before any cell starts, so whatever
stops a study, running its command again (or `swishtrain resume STUDY`) knows every cell.
No mxnet import.
"""
import re
from dataclasses import dataclass, replace
from pathlib import Path

from train_cli.config import from_dict, to_dict
from train_cli.errors import UsageError, UserError
from train_cli.runfolder import STUDY, RunFolder

VERSION = 2  # version 1 (before sweeps): {"seeds": [...], "config": {...}}, one model
CELL_DIR = re.compile(r"(?:[a-z0-9_]+/)?seed-\d+")


@dataclass(frozen=True)
class Cell:
    """One run of a study."""
    model: str
    seed: int
    dir: str  # relative to the study folder

    @property
    def name(self):
        """How messages name it: 'vgg16_bn seed 3'."""
        return f"{self.model} seed {self.seed}"


@dataclass(frozen=True)
class Manifest:
    """A study's grid and the options every cell shares (each cell: these, its model and seed)."""
    models: tuple
    seeds: tuple
    config: object  # TrainConfig of the first model; model, seed and run_dir are per cell
    cells: tuple
    path: Path  # the study folder

    def cell_config(self, cell):
        """The full options of one cell."""
        return replace(self.config, model=cell.model, seed=cell.seed,
                       run_dir=str(self.path / cell.dir))

    def with_epochs(self, epochs):
        """This manifest with every cell trained to `epochs` (a study is one experiment)."""
        return replace(self, config=replace(self.config, epochs=epochs))

    def to_json(self):
        """study.json's content."""
        return {"version": VERSION, "models": list(self.models), "seeds": list(self.seeds),
                "config": to_dict(self.config),
                "cells": [{"model": c.model, "seed": c.seed, "dir": c.dir,
                           "config": to_dict(self.cell_config(c))} for c in self.cells]}



def grid(path, cfg, models, seeds, one_model_layout=False):
    """The manifest of models x seeds with cfg's other options (cells in model-major order)."""
    cells = tuple(Cell(m, s, f"seed-{s}" if one_model_layout else f"{m}/seed-{s}")
                  for m in models for s in seeds)
    return Manifest(tuple(models), tuple(seeds), replace(cfg, model=models[0], run_dir=""),
                    cells, Path(path))


def load(path):
    """The manifest of the study in path (either version); UserError if it is unreadable."""
    path = Path(path)
    saved = RunFolder.existing(path, marker=STUDY).read_json(STUDY)
    try:
        cfg = from_dict(saved["config"])
        seeds = tuple(int(s) for s in saved["seeds"])
        if saved.get("version", 1) == 1:  # a study of one model: seed-<N>/ folders
            return grid(path, cfg, (cfg.model,), seeds, one_model_layout=True)
        cells = tuple(Cell(str(c["model"]), int(c["seed"]), str(c["dir"]))
                      for c in saved["cells"])
        bad = [c.dir for c in cells if not CELL_DIR.fullmatch(c.dir)]
        if bad:  # never a folder outside the study
            raise ValueError(f"cell folder {bad[0]!r} is not <model>/seed-<N> or seed-<N>")
        return Manifest(tuple(saved["models"]), seeds, cfg, cells, path)
    except (KeyError, TypeError, ValueError, UserError) as e:
        raise UserError(f"{path / STUDY} is corrupt ({e})") from None


def changes(old, new):
    """How new (the grid and options asked for) differs from the saved study old: the cells it
    adds; UsageError if it changes options or drops cells (a study is one experiment)."""
    ignore = {"model", "seed", "run_dir", "data_dir", "eval_batch_size", "gpus", "epochs"}
    before, after = to_dict(old.config), to_dict(new.config)
    differ = sorted(k for k in after if k not in ignore and before.get(k) != after[k])
    if differ:
        said = ", ".join(f"--{k.replace('_', '-')} {before.get(k)!r} -> {after[k]!r}"
                         for k in differ)
        raise UsageError(f"{old.path} was started with other options ({said}); a study is one "
                         "experiment: use another --run-dir for these options")
    keys = {(c.model, c.seed) for c in new.cells}
    dropped = [c.name for c in old.cells if (c.model, c.seed) not in keys]
    if dropped:
        raise UsageError(f"{old.path} also has {', '.join(dropped)}, which this command does not "
                         "list; list every model and seed of the study (adding some is fine), "
                         f"or continue it as it is with `swishtrain resume {old.path}`")
    have = {(c.model, c.seed) for c in old.cells}
    return [c for c in new.cells if (c.model, c.seed) not in have]


def extended(old, added):
    """old with the cells added (their folders in old's layout)."""
    one_model = all("/" not in c.dir for c in old.cells)
    if one_model and any(c.model != old.models[0] for c in added):
        raise UsageError(f"{old.path} is a study of {old.models[0]} alone (made by train "
                         "--seeds); start a sweep of several models in another --run-dir")
    cells = old.cells + tuple(replace(c, dir=f"seed-{c.seed}") if one_model else c
                              for c in added)
    models = tuple(dict.fromkeys(old.models + tuple(c.model for c in added)))
    seeds = tuple(dict.fromkeys(old.seeds + tuple(c.seed for c in added)))
    return replace(old, models=models, seeds=seeds, cells=cells)
