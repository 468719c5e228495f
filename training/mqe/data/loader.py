"""Streaming BridgeData V2 loader: episodes in, `mqe.data.batch` batches out.

    loader = BridgeLoader(config, split="train", batch_size=128, seed=0, rank=rank, world_size=world)
    batch = loader.next_batch()        # dict of numpy arrays, layout of mqe.data.batch / mqe.agents.base

Design (what users of bridge_data_v2 hit, and how this avoids it):
- Never the whole dataset in memory: a bounded buffer of `buffer_episodes` episodes holds only JPEG
  bytes and small arrays. Each batch samples transitions uniformly from the buffer, then
  `refresh_per_batch` random buffer episodes are replaced by the next ones from the stream.
- Stream order is deterministic given the seed: each epoch permutes the shard files; rank r of W
  reads shards r, r+W, ... (or, with fewer shards than ranks, every W-th episode).
- Only the frames a batch uses are decoded (observation, next observation, waypoint, goals), then
  squashed to `image_size` by `mqe.contract.resize_for_policy`, the one resize shared with the robot.
- `state_dict()` holds the RNG state, the stream position and the buffer as (shard, byte offset)
  references, so a resumed run re-reads those episodes directly and produces bit-identical batches.
- Actions: optional relabelling from consecutive states, gripper binarisation and dropping of the
  release's null first action, then normalisation with stats cached beside the data.
"""

from __future__ import annotations

import concurrent.futures
import copy
import dataclasses
import json
import logging

import numpy as np

from mqe.contract import GRIPPER_INDEX, ActionStats, resize_for_policy
from mqe.data import goal_sampling
from mqe.data.action_stats import compute_action_stats, load_or_compute_action_stats, stats_fingerprint
from mqe.data.batch import assemble_batch
from mqe.data.bridge import (BadEpisodeError, BridgeSource, EpisodeRef, RawEpisode, decode_jpeg, parse_episode,
                              probe_cameras)

log = logging.getLogger(__name__)

STATE_VERSION = 1
SKIP_KINDS = BadEpisodeError.KINDS + ("no_camera",)
GRIPPER_OPEN_ABOVE = 0.95
GRIPPER_CLOSED_BELOW = 0.05


def get_config() -> dict:
    return dict(
        data_dir="",  # TFDS data_dir holding bridge_dataset/1.0.0, or that version directory itself
        camera="image_0",  # which camera the policy sees (image_0 is Bridge's fixed over-the-shoulder view)
        image_size=128,  # the policy's native image size; frames are squashed to it by resize_for_policy
        train_split="train",  # split trained on; the action statistics come from it
        val_split="val",  # split used for validation losses
        buffer_episodes=256,  # shuffle buffer bound in episodes (JPEG bytes only; ~0.5 MB each at 256 px)
        refresh_per_batch=4.0,  # episodes streamed into the buffer per batch, replacing random ones
        relabel_actions=True,  # Δxyz/Δrpy from consecutive states instead of the commanded deltas
        binarize_gripper=True,  # gripper > 0.95 -> 1, < 0.05 -> 0, in between -> the next settled value
        drop_first_zero_action=True,  # drop step 0 when its action has no motion (the release's null action)
        skip_bad=False,  # skip and count corrupt episodes (data/skipped_*) instead of stopping with an error
        decode_threads=2,  # threads decoding a batch's JPEGs (OpenCV releases the GIL)
        decoded_cache_mb=1024,  # keep decoded, resized frames of buffered episodes up to this size (0 = off)
        stats_cache_dir="",  # where action stats are cached when the data dir is read-only ("" = ~/.cache/mqe)
        goals=goal_sampling.get_config(),  # value goal / waypoint / actor goal sampling, shared by all datasets
    )


# ---------------------------------------------------------------------------------------------
# Action processing (pure functions on one episode)
# ---------------------------------------------------------------------------------------------
def relabel_actions(states: np.ndarray, actions: np.ndarray) -> np.ndarray:
    """a_t[:6] = s_{t+1}[:6] - s_t[:6] (angle deltas wrapped to [-pi, pi)); the gripper keeps the
    commanded value. The last step has no successor: its motion is zero (it is never a transition)."""
    relabelled = np.array(actions, np.float32, copy=True)
    delta = states[1:, :6] - states[:-1, :6]
    delta[:, 3:6] = (delta[:, 3:6] + np.pi) % (2 * np.pi) - np.pi
    relabelled[:-1, :6] = delta
    relabelled[-1, :6] = 0.0
    return relabelled


def binarize_gripper(values: np.ndarray) -> np.ndarray:
    """> 0.95 -> 1 (open), < 0.05 -> 0 (closed); a value in between takes the next settled value
    (the gripper was on its way there); with none later, the nearer of 0 and 1."""
    values = np.asarray(values, np.float32)
    result = np.empty_like(values)
    upcoming = None
    for t in range(len(values) - 1, -1, -1):
        if values[t] > GRIPPER_OPEN_ABOVE:
            upcoming = 1.0
        elif values[t] < GRIPPER_CLOSED_BELOW:
            upcoming = 0.0
        elif upcoming is None:
            result[t] = float(values[t] >= 0.5)
            continue
        result[t] = upcoming
    return result


@dataclasses.dataclass
class Episode:
    """A processed episode: JPEG frames and one (un-normalised) action per step."""

    ref: EpisodeRef
    images: list[bytes]
    actions: np.ndarray  # float32 [T, 7]; the last row is not a transition
    first_step: int = 0  # stored index of images[0] (1 when the null first action was dropped)
    frames: dict[int, np.ndarray] = dataclasses.field(default_factory=dict)  # decoded + resized, by step

    def __len__(self) -> int:
        return len(self.images)


def process_episode(raw: RawEpisode, config: dict) -> Episode:
    """Apply the configured action processing; an episode left without a transition is 'empty'."""
    images, states, actions = raw.images, raw.states, raw.actions
    first_step = 0
    if config["drop_first_zero_action"] and len(actions) and not np.any(actions[0, :6]):
        images, states, actions, first_step = images[1:], states[1:], actions[1:], 1
    if len(images) < 2:
        raise BadEpisodeError("empty", raw.ref.describe(), f"{len(images)} usable steps; an episode needs at least 2")
    if config["relabel_actions"]:
        actions = relabel_actions(states, actions)
    if config["binarize_gripper"]:
        actions = np.array(actions, np.float32, copy=True)
        actions[:, GRIPPER_INDEX] = binarize_gripper(actions[:, GRIPPER_INDEX])
    if not np.all(np.isfinite(actions)):
        raise BadEpisodeError("wrong_shape", raw.ref.describe(), "actions or states contain NaN/Inf")
    return Episode(ref=raw.ref, images=list(images), actions=np.asarray(actions, np.float32), first_step=first_step)


def _processing_options(config: dict, train_split: str) -> dict:
    keys = ("camera", "relabel_actions", "binarize_gripper", "drop_first_zero_action", "skip_bad")
    return {"train_split": train_split, **{key: config[key] for key in keys}}


# ---------------------------------------------------------------------------------------------
# The episode stream of one rank
# ---------------------------------------------------------------------------------------------
class _EpisodeStream:
    """Episodes of one split for one rank, in a seeded order, resumable from a small state."""

    def __init__(self, source: BridgeSource, shards: list[str], config: dict, seed: int, rank: int, world_size: int,
                 counters: dict[str, int]):
        self._source, self._shards, self._config = source, shards, config
        self._seed, self._rank, self._world_size = seed, rank, world_size
        self._counters = counters
        self.epoch = 0
        self._cursor = 0  # position in this epoch's shard list of this rank
        self._offset = 0  # byte offset of the next record in the current shard
        self._index = 0  # index of the next record in the current shard
        self._seen = 0  # episodes seen this epoch (episode-level sharding)
        self._kept_this_epoch = 0
        self._records = None

    def _my_shards(self) -> list[str]:
        order = np.random.default_rng([self._seed, self.epoch]).permutation(len(self._shards))
        shards = [self._shards[i] for i in order]
        return shards[self._rank :: self._world_size] if self._shards_per_rank else shards

    @property
    def _shards_per_rank(self) -> bool:
        return len(self._shards) >= self._world_size

    def _next_shard(self) -> bool:
        """Advance to the next shard; True when that ends the epoch."""
        self._records = None
        self._cursor += 1
        self._offset = self._index = 0
        if self._cursor < len(self._my_shards()):
            return False
        if self._kept_this_epoch == 0:
            raise ValueError(
                f"{self._source.path}: rank {self._rank} of {self._world_size} found no usable episode in "
                f"shards {self._shards}: all were bad or had black {self._config['camera']} frames ({self._counters})"
            )
        self.epoch += 1
        self._cursor = self._seen = self._kept_this_epoch = 0
        return True

    def _reject(self, error: BadEpisodeError) -> None:
        if not self._config["skip_bad"]:
            raise error
        self._counters[error.kind] += 1
        log.warning("skipping bad episode: %s", error)

    def next(self, stop_at_epoch_end: bool = False) -> Episode | None:
        """The next usable episode; None at an epoch boundary when `stop_at_epoch_end`."""
        while True:
            if self._records is None:
                shard = self._my_shards()[self._cursor]
                self._records = self._source.iter_shard(shard, self._offset, self._index)
            item = next(self._records, None)
            if item is None or isinstance(item, BadEpisodeError):
                if item is not None:
                    self._reject(item)  # a corrupt record: the rest of the shard is unreachable
                if self._next_shard() and stop_at_epoch_end:
                    return None
                continue
            ref, payload = item
            self._offset, self._index = ref.offset + 16 + len(payload), ref.index + 1
            self._seen += 1
            if not self._shards_per_rank and (self._seen - 1) % self._world_size != self._rank:
                continue
            self._counters["episodes_read"] += 1
            try:
                raw = parse_episode(payload, ref, self._config["camera"])
                if not raw.has_camera:
                    self._counters["no_camera"] += 1
                    continue
                episode = process_episode(raw, self._config)
            except BadEpisodeError as error:
                self._reject(error)
                continue
            self._kept_this_epoch += 1
            return episode

    def state_dict(self) -> dict:
        keys = ("epoch", "_cursor", "_offset", "_index", "_seen", "_kept_this_epoch")
        return {key.lstrip("_"): getattr(self, key) for key in keys}

    def load_state_dict(self, state: dict) -> None:
        for key in ("epoch", "cursor", "offset", "index", "seen", "kept_this_epoch"):
            setattr(self, key if key == "epoch" else f"_{key}", int(state[key]))
        self._records = None


# ---------------------------------------------------------------------------------------------
# The loader
# ---------------------------------------------------------------------------------------------
def require_camera(source: BridgeSource, split: str) -> dict[str, int]:
    """Refuse, before any full pass over the data, a camera that the first shards never show.

    The release's has_image_* flags are False everywhere, so presence is read from the pixels of
    the first shards (mqe.data.bridge.probe_cameras). Returns the per-camera counts."""
    present, probed, shards = probe_cameras(source, split)
    if probed and present[source.camera] == 0:
        others = ", ".join(f"{camera} in {count}" for camera, count in present.items() if count) or "none"
        raise ValueError(
            f"{source.path}: camera {source.camera} is missing (all-black frames) in all {probed} episodes of the "
            f"first shards of split {split!r} ({', '.join(shards)}); cameras with pixels there: {others}. "
            f"Choose one with --set data.camera=NAME (episode_metadata/has_image_* is False in the whole release "
            f"and is not used)"
        )
    log.info("cameras with pixels in the first %d episodes of %s: %s", probed, split, present)
    return present


class BridgeLoader:
    """Batches of transitions with goals from a `bridge_dataset` directory (see the module doc)."""

    def __init__(self, config: dict, split: str = "train", batch_size: int = 128, seed: int = 0,
                 rank: int = 0, world_size: int = 1):
        self._config = copy.deepcopy(config)
        if not config["data_dir"]:
            raise ValueError("data.data_dir is empty: point it at a bridge_dataset directory (e.g. from mqe-make-dataset)")
        if not 0 <= rank < world_size:
            raise ValueError(f"loader: rank {rank} is not in 0..{world_size - 1}")
        if batch_size < 1 or config["buffer_episodes"] < 1 or config["refresh_per_batch"] < 0:
            raise ValueError("loader: batch_size and buffer_episodes must be >= 1 and refresh_per_batch >= 0")
        self._split, self._batch_size, self._seed = split, batch_size, seed
        self._rank, self._world_size = rank, world_size
        self._source = BridgeSource(config["data_dir"], config["camera"])
        train_split = config["train_split"]
        require_camera(self._source, train_split)
        options = _processing_options(config, train_split)
        self._fingerprint = stats_fingerprint(self._source.fingerprint(), options)
        self._action_stats, self.action_stats_path = load_or_compute_action_stats(
            self._source.path, self._fingerprint, options, self._compute_action_stats, config["stats_cache_dir"] or None
        )
        self._counters = {kind: 0 for kind in SKIP_KINDS} | {"episodes_read": 0}
        self._stream = _EpisodeStream(self._source, self._source.shards(split), self._config, seed, rank, world_size,
                                      self._counters)
        self._rng = np.random.default_rng([seed, rank, 0x5EED])
        self._pool = (concurrent.futures.ThreadPoolExecutor(config["decode_threads"], thread_name_prefix="jpeg")
                      if config["decode_threads"] > 1 else None)
        self._buffer: list[Episode] = []
        self._refresh_accumulator = 0.0
        self._batches = 0
        self._holds_everything = False
        self._flat = None
        self._cache_bytes = 0
        self._fill()

    # --- public properties -----------------------------------------------------------------
    @property
    def action_stats(self) -> ActionStats:
        return self._action_stats

    @property
    def fingerprint(self) -> str:
        """Dataset content + action-processing options; exported into the ONNX metadata."""
        return self._fingerprint

    @property
    def camera(self) -> str:
        return self._config["camera"]

    @property
    def image_size(self) -> int:
        return int(self._config["image_size"])

    def metrics(self) -> dict[str, float]:
        metrics = {f"data/skipped_{kind}": float(self._counters[kind]) for kind in SKIP_KINDS}
        metrics["data/episodes_read"] = float(self._counters["episodes_read"])
        metrics["data/epoch"] = float(self._stream.epoch)
        metrics["data/buffer_episodes"] = float(len(self._buffer))
        metrics["data/buffer_transitions"] = float(sum(len(e) - 1 for e in self._buffer))
        metrics["data/decoded_cache_mb"] = self._cache_bytes / 2**20
        return metrics

    # --- action statistics ------------------------------------------------------------------
    def _compute_action_stats(self) -> tuple[ActionStats, int]:
        """One pass over every train episode (all ranks' shards), without decoding any image."""
        train = self._config["train_split"]
        counters = {kind: 0 for kind in SKIP_KINDS} | {"episodes_read": 0}
        stream = _EpisodeStream(self._source, self._source.shards(train), self._config, 0, 0, 1, counters)

        def transition_actions():
            while (episode := stream.next(stop_at_epoch_end=True)) is not None:
                yield episode.actions[:-1]

        log.info("computing action statistics over %s/%s", self._source.path, train)
        return compute_action_stats(transition_actions())

    # --- buffer -----------------------------------------------------------------------------
    def _normalized(self, episode: Episode) -> Episode:
        return dataclasses.replace(episode, actions=self._action_stats.normalize(episode.actions))

    def _fill(self) -> None:
        while len(self._buffer) < self._config["buffer_episodes"]:
            episode = self._stream.next(stop_at_epoch_end=True)
            if episode is None:  # this rank's whole split fits: no streaming needed
                self._holds_everything = True
                break
            self._buffer.append(self._normalized(episode))
        self._flat = None

    def _refresh(self) -> None:
        if self._holds_everything:
            return
        self._refresh_accumulator += self._config["refresh_per_batch"]
        while self._refresh_accumulator >= 1.0:
            self._refresh_accumulator -= 1.0
            victim = int(self._rng.integers(len(self._buffer)))
            self._replace(victim, self._normalized(self._stream.next()))

    def _evict(self, ref: EpisodeRef) -> None:
        position = next(i for i, episode in enumerate(self._buffer) if episode.ref == ref)
        if self._holds_everything:
            self._replace(position, None)
            if not self._buffer:
                raise ValueError(f"{self._source.path}: every episode of split {self._split!r} is bad")
        else:
            self._replace(position, self._normalized(self._stream.next()))

    def _replace(self, position: int, episode: Episode | None) -> None:
        """Put `episode` at `position` of the buffer (None: remove it), releasing the old one's frames."""
        self._cache_bytes -= sum(frame.nbytes for frame in self._buffer[position].frames.values())
        if episode is None:
            del self._buffer[position]
        else:
            self._buffer[position] = episode
        self._flat = None

    def _flat_view(self):
        if self._flat is None:
            lengths = np.array([len(e) for e in self._buffer], np.int64)
            starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
            actions = np.concatenate([e.actions for e in self._buffer])
            self._flat = (lengths, starts, actions)
        return self._flat

    # --- batches ----------------------------------------------------------------------------
    def _decode(self, episode: Episode, step: int) -> np.ndarray:
        where = f"{episode.ref.describe()} step {step + episode.first_step}"
        try:
            return resize_for_policy(decode_jpeg(episode.images[step], where), self.image_size, where)
        except BadEpisodeError as error:
            error.ref = episode.ref  # so a skip_bad run can evict exactly this episode
            raise

    def _fetch(self, indices: np.ndarray) -> np.ndarray:
        lengths, starts, _ = self._flat_view()
        unique, inverse = np.unique(indices, return_inverse=True)
        episodes = np.searchsorted(starts, unique, side="right") - 1
        jobs = [(self._buffer[e], int(i - starts[e])) for e, i in zip(episodes, unique)]
        missing = [job for job in jobs if job[1] not in job[0].frames]
        if self._pool is not None:
            decoded = list(self._pool.map(lambda job: self._decode(*job), missing))
        else:
            decoded = [self._decode(*job) for job in missing]
        budget = self._config["decoded_cache_mb"] * 2**20
        fresh = {}
        for (episode, step), frame in zip(missing, decoded):
            fresh[(id(episode), step)] = frame
            if self._cache_bytes + frame.nbytes <= budget:  # cached frames are identical to fresh ones
                episode.frames[step] = frame
                self._cache_bytes += frame.nbytes
        frames = [episode.frames.get(step, fresh.get((id(episode), step))) for episode, step in jobs]
        return np.stack(frames)[inverse.reshape(-1)]

    def _sample(self) -> dict[str, np.ndarray]:
        lengths, starts, actions = self._flat_view()
        transitions = lengths - 1
        episode = self._rng.choice(len(lengths), size=self._batch_size, p=transitions / transitions.sum())
        step = (self._rng.random(self._batch_size) * transitions[episode]).astype(np.int64)
        index = starts[episode] + step
        final_index = starts[episode] + lengths[episode] - 1
        goals = goal_sampling.sample_goal_indices(self._rng, index, final_index, int(lengths.sum()),
                                                  self._config["goals"])
        return assemble_batch(self._fetch, actions, index, goals)

    def next_batch(self) -> dict[str, np.ndarray]:
        """One batch in mqe.data.batch layout: uint8 [B, S, S, 3] images, normalised float32 actions."""
        while True:
            try:
                batch = self._sample()
                break
            except BadEpisodeError as error:  # a JPEG that passed the marker check but does not decode
                if not self._config["skip_bad"]:
                    raise
                self._counters[error.kind] += 1
                log.warning("skipping bad episode: %s", error)
                self._evict(error.ref)
        self._refresh()
        self._batches += 1
        return batch

    def __iter__(self):
        while True:
            yield self.next_batch()

    # --- resume -----------------------------------------------------------------------------
    def _identity(self) -> dict:
        return {"fingerprint": self._fingerprint, "split": self._split, "batch_size": self._batch_size,
                "seed": self._seed, "rank": self._rank, "world_size": self._world_size,
                "buffer_episodes": self._config["buffer_episodes"], "goals": self._config["goals"]}

    def state_dict(self) -> dict:
        """Everything needed to continue with bit-identical batches; plain JSON-compatible values."""
        return {
            "version": STATE_VERSION,
            "identity": json.dumps(self._identity(), sort_keys=True),
            "rng": json.dumps(self._rng.bit_generator.state),
            "stream": self._stream.state_dict(),
            "buffer": [[e.ref.shard, e.ref.offset, e.ref.index] for e in self._buffer],
            "holds_everything": self._holds_everything,
            "refresh_accumulator": self._refresh_accumulator,
            "batches": self._batches,
            "counters": dict(self._counters),
        }

    def load_state_dict(self, state: dict) -> None:
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"loader state: version {state.get('version')}, this code reads {STATE_VERSION}")
        saved = json.loads(state["identity"])
        mine = self._identity()
        differing = sorted(key for key in mine if saved.get(key) != json.loads(json.dumps(mine[key])))
        if differing:
            raise ValueError(f"loader state was saved with different {differing}; cannot resume bit-identically")
        buffer = []
        for shard, offset, index in state["buffer"]:
            raw = self._source.read(EpisodeRef(str(shard), int(offset), int(index)))
            buffer.append(self._normalized(process_episode(raw, self._config)))
        self._buffer = buffer
        self._flat = None
        self._cache_bytes = 0
        self._rng.bit_generator.state = json.loads(state["rng"])
        self._stream.load_state_dict(state["stream"])
        self._holds_everything = bool(state["holds_everything"])
        self._refresh_accumulator = float(state["refresh_accumulator"])
        self._batches = int(state["batches"])
        self._counters.update({key: int(value) for key, value in state["counters"].items()})

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

