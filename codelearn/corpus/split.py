"""Split units into training material and the held-out evaluation sets.

Two hold-outs, never trained on: `new` (chunks mostly written after the cut
commit: the temporal split) and `random` (every chunk of a seeded random slice
of files). A chunk with *any* line written after the cut is kept out of
training, even if it is not mostly new, so no held-out line leaks into the
training data through a partly changed function.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from codelearn.corpus.history import Cut, choose_cut, lines_added_since
from codelearn.corpus.units import Unit

NEW_SHARE = 0.5  # a held-out chunk counts as new code when this share of its lines is new


@dataclass
class Split:
    """Training units and the held-out sets."""

    train: list[Unit]
    new: list[Unit]
    random: list[Unit]
    cut: Cut | None
    withheld: int = 0  # partly new chunks: neither trained on nor evaluated
    heldout_lines: dict[str, set[int]] = field(default_factory=dict)
    random_files: set[str] = field(default_factory=set)  # "source:path" of the random slice

    def recipe(self, seed: int, random_share: float) -> dict:
        """What reproduces this split exactly (kept with a trained model for `eval`)."""
        return {"cut": self.cut.commit if self.cut else "", "seed": seed, "random_share": random_share,
                "random_files": sorted(self.random_files)}

    @property
    def heldout(self) -> list[Unit]:
        return self.new + self.random

    def summary(self) -> dict:
        return {"train_chunks": len(self.train), "heldout_new": len(self.new),
                "heldout_random": len(self.random), "withheld_partly_new": self.withheld,
                "cut": self.cut.as_json() if self.cut else None}


def stable_fraction(name: str, seed: int) -> float:
    """A place in [0, 1) fixed by `name` and `seed`: what holds things out the same way on every run."""
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def in_random_slice(path: str, share: float, seed: int) -> bool:
    """Stable per file: the same files are held out on every run with the same seed."""
    return stable_fraction(path, seed) < share


def split_units(units: list[Unit], added: dict[str, set[int]], *, random_share: float,
                seed: int, cut: Cut | None = None, random_files: set[str] | None = None) -> Split:
    """Assign each unit to training, the new-code hold-out, the random hold-out, or neither.
    `random_files` replays a recorded random slice instead of drawing one."""
    split = Split([], [], [], cut, heldout_lines=added)
    for unit in units:
        name = f"{unit.source}:{unit.path}"
        fresh = added.get(unit.path, set()) if unit.source == "repo" else set()
        new_lines = sum(1 for n in unit.lines if n in fresh)
        if new_lines:
            if new_lines >= NEW_SHARE * len(unit.lines):
                split.new.append(unit)
            else:
                split.withheld += 1
        elif name in random_files if random_files is not None else in_random_slice(name, random_share, seed):
            split.random.append(unit)
            split.random_files.add(name)
        else:
            split.train.append(unit)
    return split


def split_repo(root: Path, units: list[Unit], *, holdout_share: float, random_share: float,
               seed: int, since: str = "", cut_commit: str = "", random_files: set[str] | None = None) -> Split:
    """The split for a repo: a temporal cut from git (or `cut_commit`), plus the random slice."""
    cut = None
    if cut_commit:
        cut = choose_cut(root, since=cut_commit)
    elif holdout_share > 0 or since:
        cut = choose_cut(root, holdout_share, since)
    added = lines_added_since(root, cut.commit) if cut else {}
    return split_units(units, added, random_share=random_share, seed=seed, cut=cut, random_files=random_files)
