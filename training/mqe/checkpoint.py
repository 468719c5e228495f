"""Training checkpoints: atomic writes, safe loads, bit-for-bit resume.

A checkpoint is one `torch.save`d dict holding only tensors and plain Python values (dicts, lists,
tuples, str, int, float, bool, None), so it loads with `torch.load(weights_only=True)`, which never
executes pickled code. Layout (written by mqe.train):

    step             int, optimizer steps taken
    agent            the agent's state_dict
    optimizer        the optimizer's state_dict
    rng              capture_rng_state(): python, numpy (global), torch (CPU and CUDA)
    augment_rng      torch.Generator state of the augmentation stream (uint8 tensor)
    loader           the train batch source's state_dict()
    val_loader       the validation batch source's state_dict() (or None)
    meta             JSON-able facts the exporter needs: agent name, configs, action stats, ...

Files are named `checkpoints/step_000012000.pt` inside a workdir. Writes go to a temporary file in
the same directory, are fsync'ed and then `os.replace`d over the final name, so a kill at any moment
leaves either the previous checkpoint or the new one, never half a file.
"""

from __future__ import annotations

import random
import re
import warnings
from pathlib import Path

import numpy as np
import torch

from mqe.files import atomic_write_bytes

CHECKPOINT_DIR = "checkpoints"
_NAME = re.compile(r"^step_(\d{9})\.pt$")


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, truncated, corrupt or not a training checkpoint."""


def checkpoint_path(workdir: str | Path, step: int) -> Path:
    return Path(workdir) / CHECKPOINT_DIR / f"step_{step:09d}.pt"


def list_checkpoints(workdir: str | Path) -> list[Path]:
    """Checkpoints in `workdir`, oldest first (by step)."""
    directory = Path(workdir) / CHECKPOINT_DIR
    if not directory.is_dir():
        return []
    return sorted((p for p in directory.iterdir() if _NAME.match(p.name)), key=lambda p: int(_NAME.match(p.name)[1]))


def save_checkpoint(path: str | Path, state: dict) -> Path:
    """Write `state` atomically to `path`."""
    return atomic_write_bytes(path, lambda handle: torch.save(state, handle))


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint with weights_only=True; any failure raises CheckpointError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # truncated zip, bad pickle, disallowed global, ...
        raise CheckpointError(f"{path}: cannot read checkpoint (corrupt or truncated?): {error}") from error
    if not isinstance(state, dict) or not {"step", "agent"} <= state.keys():
        raise CheckpointError(f"{path}: not a training checkpoint (expected a dict with 'step' and 'agent')")
    return state


def load_latest_checkpoint(workdir: str | Path, map_location: str | torch.device = "cpu") -> tuple[Path, dict] | None:
    """Newest readable checkpoint in `workdir`, falling back to older ones (with a warning naming the
    bad file) when the newest is corrupt; None when there is no checkpoint at all."""
    candidates = list_checkpoints(workdir)
    errors = []
    for path in reversed(candidates):
        try:
            return path, load_checkpoint(path, map_location)
        except CheckpointError as error:
            errors.append(str(error))
            warnings.warn(f"{error}; falling back to the previous checkpoint", stacklevel=2)
    if candidates:
        raise CheckpointError("no readable checkpoint in " + str(Path(workdir) / CHECKPOINT_DIR) + ": " + "; ".join(errors))
    return None


def prune_checkpoints(workdir: str | Path, keep: int) -> None:
    """Delete all but the newest `keep` checkpoints (keep <= 0 keeps everything)."""
    if keep <= 0:
        return
    for path in list_checkpoints(workdir)[:-keep]:
        path.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------
# RNG states as weights_only-loadable values.
# ---------------------------------------------------------------------------------------------
def capture_rng_state() -> dict:
    """Python, global numpy and torch (CPU + every CUDA device) RNG states."""
    version, python_state, gauss_next = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_cached = np.random.get_state()
    return {
        "python": [version, list(python_state), gauss_next],
        "numpy": [np_name, torch.from_numpy(np_keys.astype(np.int64)), int(np_pos), int(np_has_gauss), float(np_cached)],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def restore_rng_state(state: dict) -> None:
    version, python_state, gauss_next = state["python"]
    random.setstate((version, tuple(python_state), gauss_next))
    np_name, np_keys, np_pos, np_has_gauss, np_cached = state["numpy"]
    np.random.set_state((np_name, np_keys.numpy().astype(np.uint32), np_pos, np_has_gauss, np_cached))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
