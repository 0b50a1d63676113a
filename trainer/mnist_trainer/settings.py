"""What one training run is asked to do: the parsed command line (cli.py builds it, job.py runs it)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    model_dir: Path
    dataset: str
    model: str
    recipe: str
    steps: int | None
    epochs: float | None
    batch_size: int | None
    learning_rate: float | None
    seed: int
    skip_if_exists: bool
    report: bool
    mirrors: tuple[str, ...] | None
    threads: int
    log_every: int
