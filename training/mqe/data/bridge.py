"""The BridgeData V2 RLDS/TFDS format (`bridge_dataset` 1.0.0): the one episode writer and the reader.

Layout of the public release (one TFRecord record = one episode, a flat tf.train.Example):
  steps/observation/image_0..3   JPEG, 256x256x3 (image_0 is the fixed over-the-shoulder camera)
  steps/observation/state        float32[7]  end-effector xyz (m), roll/pitch/yaw (rad), gripper
  steps/action                   float32[7]  Δxyz, Δroll/pitch/yaw, absolute gripper (1 open, 0 closed)
  steps/discount, steps/reward   float32
  steps/is_first, is_last, is_terminal   bool
  steps/language_instruction     text (empty in some episodes)
  steps/language_embedding       float32[512] (the instruction's sentence embedding)
  episode_metadata/file_path, episode_id, has_image_0..3, has_language

Release quirks the writer reproduces and the reader survives (kpertsch/bridge_rlds_builder,
bridge_dataset/bridge_dataset_dataset_builder.py; rail-berkeley/bridge_data_v2 issue #40):
  - has_image_0..3 is False in every episode: the builder tests `'images0' in example['observations']`
    on the *list* of per-step dicts, which is never true. The reader ignores the flag.
  - A camera an episode lacks is stored as all-black frames. The reader tells a missing camera from
    its pixels (`frame_is_blank`) and `probe_cameras` counts, per camera, the episodes that have it.
  - Shards are named `bridge_dataset-<split>.tfrecord-00000-of-NNNNN`, many per split.

Writing goes through a `tfds.core.GeneratorBasedBuilder` named `bridge_dataset`, so the output is a
real TFDS directory (TFRecord shards, dataset_info.json, features.json) that
`tfds.builder_from_directory` opens. Every data source (the synthetic generator today, the MuJoCo
expert later) writes through `write_bridge_dataset`.

Reading does not go through tf.data: records are read from the shards listed in dataset_info.json
with byte offsets (so a resumed loader re-reads exactly the episodes it held, without replaying the
stream), and each record is parsed into JPEG bytes + arrays without decoding any image. Every
problem is reported as a `BadEpisodeError` naming the shard file and the episode's index in it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import shutil
import struct
from pathlib import Path
from typing import Iterable, Iterator, Mapping

import cv2
import google_crc32c
import numpy as np

from mqe.contract import ACTION_DIM

DATASET_NAME = "bridge_dataset"
DATASET_VERSION = "1.0.0"
CAMERAS = ("image_0", "image_1", "image_2", "image_3")
STATE_DIM = 7
NATIVE_IMAGE_SIZE = 256  # the public release's images are 256x256
LANGUAGE_EMBEDDING_DIM = 512  # steps/language_embedding (Universal Sentence Encoder in the release)
# A missing camera's frames are all zero; JPEG keeps zeros at zero, so a small bound suffices and a
# real (even dark) scene is far above it.
BLANK_FRAME_MAX = 8

STATE_KEY = "steps/observation/state"
ACTION_KEY = "steps/action"


def image_key(camera: str) -> str:
    return f"steps/observation/{camera}"


class BadEpisodeError(ValueError):
    """One episode (or one shard) is unreadable; `kind` names the problem for the skip counters."""

    KINDS = ("corrupt_record", "missing_feature", "wrong_shape", "bad_jpeg", "empty")

    def __init__(self, kind: str, where: str, message: str):
        assert kind in self.KINDS, kind
        super().__init__(f"{where}: {message}")
        self.kind = kind
        self.where = where
        self.ref: EpisodeRef | None = None  # set when the episode is known (decode-time errors)


# ---------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------
def _bridge_features(image_size: int):
    import tensorflow_datasets as tfds

    def camera(doc: str):
        return tfds.features.Image(
            shape=(image_size, image_size, 3), dtype=np.uint8, encoding_format="jpeg", doc=doc
        )

    flag = lambda doc: tfds.features.Scalar(dtype=np.bool_, doc=doc)  # noqa: E731
    return tfds.features.FeaturesDict(
        {
            "steps": tfds.features.Dataset(
                {
                    "observation": tfds.features.FeaturesDict(
                        {
                            "image_0": camera("Main camera RGB observation (fixed position)."),
                            "image_1": camera("Side camera RGB observation (varied position)."),
                            "image_2": camera("Side camera RGB observation (varied position)."),
                            "image_3": camera("Wrist camera RGB observation."),
                            "state": tfds.features.Tensor(
                                shape=(STATE_DIM,), dtype=np.float32,
                                doc="Robot end effector state, consists of [3x XYZ, 3x roll-pitch-yaw, 1x gripper]",
                            ),
                        }
                    ),
                    "action": tfds.features.Tensor(
                        shape=(ACTION_DIM,), dtype=np.float32,
                        doc="Robot action, consists of [3x XYZ delta, 3x roll-pitch-yaw delta, 1x gripper absolute].",
                    ),
                    "discount": tfds.features.Scalar(dtype=np.float32, doc="Discount if provided, default to 1."),
                    "reward": tfds.features.Scalar(dtype=np.float32, doc="Reward if provided, 1 on final step for demos."),
                    "is_first": flag("True on first step of the episode."),
                    "is_last": flag("True on last step of the episode."),
                    "is_terminal": flag("True on last step of the episode if it is a terminal step, True for demos."),
                    "language_instruction": tfds.features.Text(doc="Language Instruction."),
                    "language_embedding": tfds.features.Tensor(
                        shape=(LANGUAGE_EMBEDDING_DIM,), dtype=np.float32,
                        doc="Kona language embedding. See https://tfhub.dev/google/universal-sentence-encoder-large/5",
                    ),
                }
            ),
            "episode_metadata": tfds.features.FeaturesDict(
                {
                    "file_path": tfds.features.Text(doc="Path to the original data file."),
                    "episode_id": tfds.features.Scalar(dtype=np.int32, doc="ID of episode in file_path."),
                    "has_image_0": flag("True if image0 exists in observation, otherwise dummy value."),
                    "has_image_1": flag("True if image1 exists in observation, otherwise dummy value."),
                    "has_image_2": flag("True if image2 exists in observation, otherwise dummy value."),
                    "has_image_3": flag("True if image3 exists in observation, otherwise dummy value."),
                    "has_language": flag("True if language exists in observation, otherwise empty string."),
                }
            ),
        }
    )


JPEG_QUALITY = 95  # high enough that JPEG error stays a few grey levels


def encode_jpeg(image: np.ndarray) -> bytes:
    """Encode an RGB uint8 image as JPEG bytes (OpenCV; much faster than one TF op per frame)."""
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise ValueError(f"cannot JPEG-encode an image of shape {image.shape}")
    return data.tobytes()


def make_episode(
    states: np.ndarray,
    actions: np.ndarray,
    images: Mapping[str, np.ndarray],
    language_instruction: str = "",
    file_path: str = "",
    episode_id: int = 0,
    language_embedding: np.ndarray | None = None,
) -> dict:
    """Build one episode in the `bridge_dataset` feature layout from per-step arrays: the one call
    every data source (synthetic renderer, MuJoCo expert) makes before `write_bridge_dataset`.

    states, actions: float32 [T, 7]; images: camera name -> uint8 [T, S, S, 3] for the cameras that
    exist (the others are written as black frames, like the release); language_embedding: float32
    [512] for the instruction (zeros when None, as for an episode without language). As the release
    does, has_image_0..3 are all False whatever exists (see the module doc). Like demonstrations in
    the release: reward 1 and is_terminal on the last step, discount 1.
    """
    states = np.asarray(states, np.float32)
    actions = np.asarray(actions, np.float32)
    length = len(states)
    if states.shape != (length, STATE_DIM) or actions.shape != (length, ACTION_DIM):
        raise ValueError(f"make_episode: states {states.shape} and actions {actions.shape} must be [T, 7] with equal T")
    unknown = set(images) - set(CAMERAS)
    if unknown or not images:
        raise ValueError(f"make_episode: images must name some of {CAMERAS}, got {sorted(images)}")
    frame_shape = None
    for camera, frames in images.items():
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[0] != length or frames.shape[3] != 3:
            raise ValueError(f"make_episode: images[{camera!r}] must be uint8 [{length}, S, S, 3], got {frames.dtype} {frames.shape}")
        frame_shape = frames.shape[1:]
    if language_embedding is None:
        language_embedding = np.zeros(LANGUAGE_EMBEDDING_DIM, np.float32)
    language_embedding = np.asarray(language_embedding, np.float32)
    if language_embedding.shape != (LANGUAGE_EMBEDDING_DIM,):
        raise ValueError(f"make_episode: language_embedding must be float32 [{LANGUAGE_EMBEDDING_DIM}], got {language_embedding.shape}")
    encoded = {camera: [encode_jpeg(frame) for frame in frames] for camera, frames in images.items()}
    blank = encode_jpeg(np.zeros(frame_shape, np.uint8))
    steps = []
    for t in range(length):
        last = t == length - 1
        steps.append(
            {
                "observation": {
                    # TFDS stores file objects' bytes as they are: no second JPEG encode
                    **{camera: io.BytesIO(encoded[camera][t] if camera in images else blank) for camera in CAMERAS},
                    "state": states[t],
                },
                "action": actions[t],
                "discount": np.float32(1.0),
                "reward": np.float32(1.0 if last else 0.0),
                "is_first": t == 0,
                "is_last": last,
                "is_terminal": last,
                "language_instruction": language_instruction,
                "language_embedding": language_embedding,
            }
        )
    metadata = {f"has_{camera}": False for camera in CAMERAS}  # the release's value, see the module doc
    metadata.update(file_path=file_path, episode_id=np.int32(episode_id), has_language=bool(language_instruction))
    return {"steps": steps, "episode_metadata": metadata}


def _builder_class():
    """Defined lazily so that importing this module does not import TensorFlow."""
    import tensorflow_datasets as tfds

    class BridgeDataset(tfds.core.GeneratorBasedBuilder, skip_registration=True):
        """`bridge_dataset` 1.0.0 (TFDS names it after the class), fed by episode iterables per split."""

        VERSION = tfds.core.Version(DATASET_VERSION)
        RELEASE_NOTES = {DATASET_VERSION: "BridgeData V2 layout."}
        # Nothing is downloaded; without this TFDS looks for a checksums file beside this module.
        url_infos = None

        def __init__(self, *, episodes_by_split: Mapping[str, Iterable[dict]], image_size: int, **kwargs):
            self._episodes_by_split = episodes_by_split
            self._image_size = image_size
            super().__init__(**kwargs)

        def _info(self):
            return tfds.core.DatasetInfo(
                builder=self,
                description="BridgeData V2 format (RLDS): WidowX 250 episodes at 5 Hz.",
                features=_bridge_features(self._image_size),
                homepage="https://rail-berkeley.github.io/bridgedata/",
            )

        def _split_generators(self, dl_manager):
            return {split: self._generate_examples(episodes) for split, episodes in self._episodes_by_split.items()}

        def _generate_examples(self, episodes):
            for index, episode in enumerate(episodes):
                yield f"{index:08d}", episode

    return BridgeDataset


def write_bridge_dataset(
    data_dir: str | os.PathLike,
    episodes_by_split: Mapping[str, Iterable[dict]],
    image_size: int = NATIVE_IMAGE_SIZE,
    num_shards: int | None = None,
    overwrite: bool = False,
) -> Path:
    """Write episodes (see `make_episode`) as a TFDS `bridge_dataset` under `data_dir`.

    Returns the dataset directory `data_dir/bridge_dataset/1.0.0`. TFDS writes into a temporary
    `incomplete.*` directory and renames it when done, so a crash never leaves a half dataset.
    `num_shards` fixes the shard count of every split (None: TFDS decides by size); each split
    needs at least that many episodes.
    """
    import tensorflow_datasets as tfds

    data_dir = Path(data_dir)
    target = data_dir / DATASET_NAME / DATASET_VERSION
    if target.exists():
        if not overwrite:
            raise FileExistsError(f"{target}: a dataset already exists here (pass overwrite to replace it)")
        shutil.rmtree(target)
    builder = _builder_class()(episodes_by_split=episodes_by_split, image_size=image_size, data_dir=str(data_dir))
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(num_shards=num_shards, compute_stats=tfds.download.ComputeStatsMode.SKIP)
    )
    return target


# ---------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------
def resolve_dataset_dir(path: str | os.PathLike) -> Path:
    """Accept the version directory itself or a TFDS data_dir holding bridge_dataset/<version>."""
    path = Path(path).expanduser()
    if (path / "dataset_info.json").is_file():
        return path
    candidates = sorted(p.parent for p in path.glob(f"{DATASET_NAME}/*/dataset_info.json"))
    if len(candidates) == 1:
        return candidates[0]
    if len(candidates) > 1:
        raise FileNotFoundError(f"{path}: several {DATASET_NAME} versions {[c.name for c in candidates]}; point data_dir at one")
    raise FileNotFoundError(
        f"{path}: no TFDS dataset here (expected dataset_info.json in it or in {DATASET_NAME}/{DATASET_VERSION}/)"
    )


def _masked_crc(data: bytes) -> int:
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def read_record_at(path: Path, offset: int) -> tuple[bytes, int]:
    """Read the TFRecord record starting at byte `offset`; return (payload, next offset). CRC-checked."""
    with open(path, "rb") as file:
        file.seek(offset)
        return _read_record(file, path, offset)


def _read_record(file, path: Path, offset: int) -> tuple[bytes, int]:
    header = file.read(12)
    where = f"{path.name} at byte {offset}"
    if len(header) != 12:
        raise BadEpisodeError("corrupt_record", where, "truncated TFRecord header")
    (length,) = struct.unpack("<Q", header[:8])
    if _masked_crc(header[:8]) != struct.unpack("<I", header[8:])[0]:
        raise BadEpisodeError("corrupt_record", where, "TFRecord length checksum mismatch")
    payload = file.read(length)
    footer = file.read(4)
    if len(payload) != length or len(footer) != 4:
        raise BadEpisodeError("corrupt_record", where, f"truncated TFRecord (expected {length} bytes)")
    if _masked_crc(payload) != struct.unpack("<I", footer)[0]:
        raise BadEpisodeError("corrupt_record", where, "TFRecord data checksum mismatch")
    return payload, offset + 12 + length + 4


def iter_records(path: Path, offset: int = 0) -> Iterator[tuple[int, bytes]]:
    """Yield (offset, payload) for each record of a TFRecord file from byte `offset`, streaming."""
    size = path.stat().st_size
    with open(path, "rb") as file:
        file.seek(offset)
        while offset < size:
            payload, next_offset = _read_record(file, path, offset)
            yield offset, payload
            offset = next_offset


def write_records(path: Path, payloads: Iterable[bytes]) -> None:
    """Write a TFRecord file atomically (temp file + rename); used to rewrite a shard in place."""
    path = Path(path)
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "wb") as file:
        for payload in payloads:
            header = struct.pack("<Q", len(payload))
            file.write(header + struct.pack("<I", _masked_crc(header)) + payload + struct.pack("<I", _masked_crc(payload)))
    os.replace(temporary, path)


@dataclasses.dataclass(frozen=True)
class EpisodeRef:
    """Where an episode lives: shard file name (in the dataset dir), byte offset, index in the shard."""

    shard: str
    offset: int
    index: int

    def describe(self) -> str:
        return f"{self.shard} episode {self.index}"


@dataclasses.dataclass
class RawEpisode:
    """One episode as stored, images still JPEG-encoded."""

    ref: EpisodeRef
    images: list[bytes]  # the chosen camera, one JPEG per step
    states: np.ndarray  # float32 [T, 7]
    actions: np.ndarray  # float32 [T, 7]
    has_camera: bool  # the chosen camera has pixels (not all-black frames); never the has_image flag

    def __len__(self) -> int:
        return len(self.images)


def _float_feature(features, key: str, where: str, length: int, width: int) -> np.ndarray:
    if key not in features:
        raise BadEpisodeError("missing_feature", where, f"missing feature {key!r}")
    feature = features[key]
    if feature.WhichOneof("kind") not in ("float_list", None):
        raise BadEpisodeError("wrong_shape", where, f"feature {key!r} holds {feature.WhichOneof('kind')}, expected float32")
    values = np.asarray(feature.float_list.value, np.float32)
    if values.size != length * width:
        raise BadEpisodeError(
            "wrong_shape", where, f"feature {key!r} has {values.size} values, expected {length} steps x {width}"
        )
    return values.reshape(length, width)


def looks_like_jpeg(data: bytes) -> bool:
    """Cheap check without decoding: JPEG start-of-image marker and an end-of-image marker near the end."""
    return data[:2] == b"\xff\xd8" and b"\xff\xd9" in data[-64:]  # some encoders pad after EOI


def parse_episode(payload: bytes, ref: EpisodeRef, camera: str) -> RawEpisode:
    """Parse one record into a RawEpisode; images are checked for JPEG markers but not decoded."""
    from tensorflow.core.example import example_pb2  # protobuf only; no TF runtime is started

    where = ref.describe()
    try:
        example = example_pb2.Example.FromString(payload)
    except Exception as error:  # protobuf raises its own DecodeError type
        raise BadEpisodeError("corrupt_record", where, f"not a tf.train.Example ({error})") from error
    features = example.features.feature
    key = image_key(camera)
    if key not in features:
        raise BadEpisodeError("missing_feature", where, f"missing feature {key!r}")
    kind = features[key].WhichOneof("kind")
    if kind not in ("bytes_list", None):  # None: an empty feature, i.e. no steps
        raise BadEpisodeError("wrong_shape", where, f"feature {key!r} holds {kind}, expected JPEG bytes")
    images = list(features[key].bytes_list.value)
    if not images:
        raise BadEpisodeError("empty", where, "zero-length episode (no steps)")
    states = _float_feature(features, STATE_KEY, where, len(images), STATE_DIM)
    actions = _float_feature(features, ACTION_KEY, where, len(images), ACTION_DIM)
    for step, data in enumerate(images):
        if not looks_like_jpeg(data):
            raise BadEpisodeError("bad_jpeg", f"{where} step {step}", f"{key} is not a JPEG image ({len(data)} bytes)")
    has_camera = not camera_is_blank(images, where)
    return RawEpisode(ref=ref, images=images, states=states, actions=actions, has_camera=has_camera)


def frame_is_blank(data: bytes, where: str) -> bool:
    """True for the release's stand-in for a missing camera: an all-black frame."""
    return int(decode_jpeg(data, where).max()) <= BLANK_FRAME_MAX


def camera_is_blank(images: list[bytes], where: str) -> bool:
    """A camera is missing from an episode when its first and last frames are black (two decodes,
    not T: the release writes a missing camera black in every step)."""
    return frame_is_blank(images[0], f"{where} step 0") and frame_is_blank(images[-1], f"{where} step {len(images) - 1}")


def probe_cameras(source: "BridgeSource", split: str, max_shards: int = 2, max_episodes: int = 64) -> tuple[dict[str, int], int, list[str]]:
    """Count, per camera, the episodes of the first shards of `split` whose frames are not black.

    Returns (episodes with pixels per camera, episodes probed, shards probed). Reads at most
    `max_episodes` records from the first `max_shards` shards, so a camera that is absent can be
    refused in seconds instead of after a pass over every shard. Unreadable records are left to the
    loader's own checks (and its skip_bad)."""
    from tensorflow.core.example import example_pb2

    present = {camera: 0 for camera in CAMERAS}
    probed, shards = 0, source.shards(split)[:max_shards]
    for shard in shards:
        for item in source.iter_shard(shard):
            if isinstance(item, BadEpisodeError) or probed >= max_episodes:
                break
            ref, payload = item
            try:
                features = example_pb2.Example.FromString(payload).features.feature
                for camera in CAMERAS:
                    frames = features[image_key(camera)].bytes_list.value if image_key(camera) in features else []
                    if frames and not camera_is_blank(list(frames), ref.describe()):
                        present[camera] += 1
            except Exception:  # noqa: BLE001 - a bad record is the loader's to report, with its kind
                continue
            probed += 1
    return present, probed, shards


def decode_jpeg(data: bytes, where: str) -> np.ndarray:
    """Decode one JPEG to an HxWx3 uint8 RGB array; BadEpisodeError naming `where` if it cannot be."""
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise BadEpisodeError("bad_jpeg", where, f"undecodable JPEG ({len(data)} bytes)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


class BridgeSource:
    """A `bridge_dataset` directory opened with `tfds.builder_from_directory` (metadata only)."""

    def __init__(self, path: str | os.PathLike, camera: str = "image_0"):
        import tensorflow_datasets as tfds

        self.path = resolve_dataset_dir(path)
        try:
            self.builder = tfds.builder_from_directory(str(self.path))
            features = self.builder.info.features
        except Exception as error:
            raise ValueError(f"{self.path}: not a readable TFDS dataset ({error})") from error
        self.camera = camera
        try:
            steps = features["steps"]
            observation = steps["observation"]
        except KeyError as error:
            raise ValueError(f"{self.path}/features.json: not an RLDS dataset (no steps/observation)") from error
        cameras = [name for name in observation.keys() if name.startswith("image")]
        if camera not in observation.keys():
            raise ValueError(f"{self.path}/features.json: camera {camera!r} not in the dataset; it has {cameras}")
        shape = tuple(observation[camera].shape)
        if len(shape) != 3 or shape[2] != 3:
            raise ValueError(f"{self.path}/features.json: {camera} has shape {shape}, expected (H, W, 3)")
        self.image_shape = shape
        for name, parent, key, width in (("observation/state", observation, "state", STATE_DIM),
                                         ("action", steps, "action", ACTION_DIM)):
            if key not in parent.keys():
                raise ValueError(f"{self.path}/features.json: no steps/{name} feature")
            feature = parent[key]
            if tuple(feature.shape) != (width,):
                raise ValueError(f"{self.path}/features.json: steps/{name} has shape {tuple(feature.shape)}, expected ({width},)")

    @property
    def splits(self) -> list[str]:
        return sorted(self.builder.info.splits.keys())

    def shards(self, split: str) -> list[str]:
        if split not in self.builder.info.splits:
            raise ValueError(f"{self.path}: no split {split!r}; it has {self.splits}")
        names = list(self.builder.info.splits[split].filenames)
        missing = [name for name in names if not (self.path / name).is_file()]
        if missing:
            raise FileNotFoundError(f"{self.path}: shard files listed in dataset_info.json are missing: {missing[:3]}")
        return names

    def num_episodes(self, split: str) -> int:
        return int(self.builder.info.splits[split].num_examples)

    def fingerprint(self) -> str:
        """Identifies the dataset's content: its metadata files plus the name and size of every shard."""
        digest = hashlib.sha256()
        for name in ("dataset_info.json", "features.json"):
            file = self.path / name
            digest.update(file.read_bytes() if file.is_file() else b"")
        for split in self.splits:
            for shard in self.shards(split):
                digest.update(f"{shard}:{(self.path / shard).stat().st_size};".encode())
        return digest.hexdigest()

    def read(self, ref: EpisodeRef) -> RawEpisode:
        payload, _ = read_record_at(self.path / ref.shard, ref.offset)
        return parse_episode(payload, ref, self.camera)

    def iter_shard(self, shard: str, offset: int = 0, index: int = 0) -> Iterator[tuple[EpisodeRef, bytes] | BadEpisodeError]:
        """Yield (ref, record) for a shard's episodes from (offset, index); a corrupt record ends the
        shard (record boundaries after it are unknown) and is yielded as its BadEpisodeError."""
        try:
            for record_offset, payload in iter_records(self.path / shard, offset):
                yield EpisodeRef(shard, record_offset, index), payload
                index += 1
        except BadEpisodeError as error:
            yield BadEpisodeError(error.kind, f"{shard} episode {index} ({error.where})", str(error).split(": ", 1)[1])

