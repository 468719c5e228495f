"""An OGBench npz dataset in memory, sampled like the Bridge loader: uniform transitions, goals and
waypoints from the shared `mqe.data.goal_sampling`, batches from `mqe.data.batch.assemble_batch`.

Trajectories are the runs between `terminals` (true on each episode's last state). Every state but
a trajectory's last starts a transition, so OGBench's stored last-step action is never used.
Pointmaze actions are already in [-1, 1], so they are used as they are (identity normalisation).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mqe.data.batch import assemble_batch
from mqe.data.goal_sampling import sample_goal_indices

REQUIRED_KEYS = ("observations", "actions", "terminals")


def load_npz(path: Path | str) -> dict[str, np.ndarray]:
    """observations/actions as float32 and terminals as bool, checked for shape and consistency."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as file:
            arrays = {key: file[key] for key in REQUIRED_KEYS if key in file}
    except (OSError, EOFError, ValueError, AttributeError) as error:  # not a readable npz archive
        raise ValueError(f"{path}: cannot read as an npz dataset ({error})") from error
    missing = [key for key in REQUIRED_KEYS if key not in arrays]
    if missing:
        raise ValueError(f"{path}: missing array(s) {missing}; expected {list(REQUIRED_KEYS)}")
    observations, actions, terminals = (arrays[key] for key in REQUIRED_KEYS)
    if observations.ndim != 2 or actions.ndim != 2 or terminals.ndim != 1:
        raise ValueError(
            f"{path}: expected observations [N, obs_dim], actions [N, action_dim], terminals [N]; got "
            f"{observations.shape}, {actions.shape}, {terminals.shape}"
        )
    if not len(observations) == len(actions) == len(terminals):
        raise ValueError(f"{path}: observations, actions and terminals differ in length")
    if len(terminals) == 0 or not terminals[-1]:
        raise ValueError(f"{path}: 'terminals' must be true on the last state (every trajectory must end)")
    return dict(
        observations=observations.astype(np.float32, copy=False),
        actions=actions.astype(np.float32, copy=False),
        terminals=terminals.astype(bool, copy=False),
    )


def final_indices(terminals: np.ndarray) -> np.ndarray:
    """final_index[i] = index of the last state of i's trajectory."""
    ends = np.nonzero(terminals)[0]
    return ends[np.searchsorted(ends, np.arange(len(terminals)))]


class OGBenchDataset:
    """next_batch() -> dict of numpy arrays (mqe.data.batch.BATCH_KEYS); state_dict() /
    load_state_dict() capture the sampler so a resumed run draws the same batches."""

    def __init__(self, path: Path | str, batch_size: int, goal_config: dict, seed: int = 0):
        arrays = load_npz(path)
        self.path = Path(path)
        self.observations = arrays["observations"]
        self.actions = arrays["actions"]
        self.final_index = final_indices(arrays["terminals"])
        self.transition_index = np.nonzero(np.arange(len(self.final_index)) < self.final_index)[0]
        if len(self.transition_index) == 0:
            raise ValueError(f"{self.path}: no transitions (every trajectory has a single state)")
        self.batch_size = batch_size
        self.goal_config = dict(goal_config)
        self.rng = np.random.default_rng(seed)

    @property
    def observation_dim(self) -> int:
        return self.observations.shape[1]

    @property
    def action_dim(self) -> int:
        return self.actions.shape[1]

    def __len__(self) -> int:
        return len(self.observations)

    def next_batch(self) -> dict[str, np.ndarray]:
        index = self.transition_index[self.rng.integers(len(self.transition_index), size=self.batch_size)]
        goals = sample_goal_indices(self.rng, index, self.final_index[index], len(self.observations), self.goal_config)
        return assemble_batch(lambda indices: self.observations[indices], self.actions, index, goals)

    def state_dict(self) -> dict:
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]
