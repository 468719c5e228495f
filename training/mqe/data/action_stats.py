"""Action normalisation statistics for a Bridge-format dataset: computed once over the train split of
the *processed* actions (after relabelling / binarisation / first-action dropping) and cached as JSON
beside the data, keyed by a fingerprint of the dataset and of the options that change the actions.

The gripper dimension is not normalised (mean 0, std 1): it is an absolute 0..1 command.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from mqe.contract import ACTION_DIM, GRIPPER_INDEX, ActionStats

log = logging.getLogger(__name__)

MIN_STD = 1e-6  # a dimension that never varies is left unscaled (std 1) instead of divided by ~0


def stats_fingerprint(dataset_fingerprint: str, options: dict) -> str:
    """Fingerprint of the dataset content plus every option that changes the processed actions."""
    text = json.dumps({"dataset": dataset_fingerprint, "options": options}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def compute_action_stats(transition_actions: Iterable[np.ndarray]) -> tuple[ActionStats, int]:
    """Mean/std over the rows of the given [n_i, 7] arrays (streamed; float64 running sums)."""
    count = 0
    total = np.zeros(ACTION_DIM)
    total_sq = np.zeros(ACTION_DIM)
    for actions in transition_actions:
        actions = np.asarray(actions, np.float64)
        count += len(actions)
        total += actions.sum(axis=0)
        total_sq += np.square(actions).sum(axis=0)
    if count == 0:
        raise ValueError("action stats: the train split has no transitions")
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - np.square(mean), 0.0))
    std = np.where(std < MIN_STD, 1.0, std)
    mean[GRIPPER_INDEX], std[GRIPPER_INDEX] = 0.0, 1.0
    return ActionStats(mean=tuple(float(x) for x in mean), std=tuple(float(x) for x in std)), count


def default_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mqe" / "action_stats"


def _cache_file(directory: Path, fingerprint: str) -> Path:
    return directory / f"mqe_action_stats_{fingerprint[:16]}.json"


def _read_cache(path: Path, fingerprint: str) -> ActionStats | None:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, json.JSONDecodeError) as error:
        log.warning("%s: unreadable action stats cache (%s); recomputing", path, error)
        return None
    if data.get("fingerprint") != fingerprint:
        return None
    try:
        return ActionStats.from_json(data["stats"])
    except (KeyError, TypeError, ValueError) as error:
        log.warning("%s: invalid action stats cache (%s); recomputing", path, error)
        return None


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(handle, "w") as file:
            file.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def load_or_compute_action_stats(
    dataset_dir: Path,
    fingerprint: str,
    options: dict,
    compute: Callable[[], tuple[ActionStats, int]],
    cache_dir: str | os.PathLike | None = None,
) -> tuple[ActionStats, Path]:
    """Return cached stats for `fingerprint` (beside the data, else in the cache dir), computing and
    caching them if absent. A read-only dataset directory falls back to the cache dir with a warning."""
    fallback_dir = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    for directory in (dataset_dir, fallback_dir):
        path = _cache_file(directory, fingerprint)
        stats = _read_cache(path, fingerprint)
        if stats is not None:
            return stats, path
    stats, count = compute()
    text = json.dumps(
        {"fingerprint": fingerprint, "options": options, "num_transitions": count, "stats": stats.to_json()},
        indent=2, sort_keys=True,
    )
    path = _cache_file(dataset_dir, fingerprint)
    try:
        _write_atomic(path, text)
    except OSError as error:
        path = _cache_file(fallback_dir, fingerprint)
        log.warning("%s is not writable (%s); caching action stats in %s instead", dataset_dir, error, path)
        _write_atomic(path, text)
    return stats, path
