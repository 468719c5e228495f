"""The policy artifact's contract: the single source of truth shared by training and deployment.

Everything that crosses the train/deploy boundary is defined here and imported everywhere else:
image preprocessing, the action convention, action (un)normalisation, and the ONNX interface
(file names, tensor names, metadata keys). This module needs only numpy and OpenCV so that the
robot PC can import it without torch.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Mapping

import cv2
import numpy as np

# Bumped whenever the ONNX interface below changes incompatibly; the robot refuses other versions.
POLICY_FORMAT_VERSION = 1

# ---------------------------------------------------------------------------------------------
# Action convention (BridgeData V2): end-effector deltas in the robot base frame plus an
# absolute gripper command. Rotations are applied as R = Rz(yaw) Ry(pitch) Rx(roll) about the
# end-effector position.
# ---------------------------------------------------------------------------------------------
ACTION_NAMES: tuple[str, ...] = ("dx", "dy", "dz", "droll", "dpitch", "dyaw", "gripper")
ACTION_UNITS: tuple[str, ...] = ("m", "m", "m", "rad", "rad", "rad", "1")
ACTION_DIM = len(ACTION_NAMES)
ACTION_FRAME = "base"  # deltas are expressed in the arm's base frame
GRIPPER_INDEX = 6  # 1.0 = open, 0.0 = closed
ACTION_SEMANTICS = {
    "names": list(ACTION_NAMES),
    "units": list(ACTION_UNITS),
    "frame": ACTION_FRAME,
    "rotation": "R = Rz(dyaw) @ Ry(dpitch) @ Rx(droll) about the end-effector position",
    "gripper": "absolute, 1.0 open .. 0.0 closed",
}
DEFAULT_CONTROL_RATE_HZ = 5.0


# ---------------------------------------------------------------------------------------------
# Image preprocessing: the one resize used for training data and for live camera frames.
# ---------------------------------------------------------------------------------------------
def check_rgb_image(image: np.ndarray, where: str = "image") -> np.ndarray:
    """Return `image` if it is an HxWx3 uint8 array, else raise ValueError naming `where`."""
    if not isinstance(image, np.ndarray):
        raise ValueError(f"{where}: expected a numpy array, got {type(image).__name__}")
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(
            f"{where}: expected an HxWx3 uint8 RGB image, got dtype {image.dtype} shape {image.shape}"
        )
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"{where}: image is empty (shape {image.shape})")
    return image


def resize_for_policy(image: np.ndarray, size: int, where: str = "image") -> np.ndarray:
    """Squash an RGB uint8 image of any size (e.g. 640x480 camera, 256x256 Bridge) to size x size.

    The aspect ratio is not preserved (BridgeData V2 images are squashed the same way). Downscaling
    uses area interpolation, which is anti-aliased; upscaling uses bilinear interpolation.
    """
    image = check_rgb_image(image, where)
    height, width = image.shape[:2]
    if (height, width) == (size, size):
        return np.ascontiguousarray(image)
    interpolation = cv2.INTER_AREA if (height > size or width > size) else cv2.INTER_LINEAR
    return cv2.resize(image, (size, size), interpolation=interpolation)


# ---------------------------------------------------------------------------------------------
# Action normalisation statistics. Normalisation happens in training; un-normalisation is baked
# into the exported ONNX graph with the same numbers.
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class ActionStats:
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __post_init__(self):
        if len(self.mean) != ACTION_DIM or len(self.std) != ACTION_DIM:
            raise ValueError(f"action stats: expected {ACTION_DIM} means and stds")
        if not all(s > 0 for s in self.std):
            raise ValueError(f"action stats: every std must be > 0, got {self.std}")

    @classmethod
    def identity(cls) -> "ActionStats":
        return cls(mean=(0.0,) * ACTION_DIM, std=(1.0,) * ACTION_DIM)

    def normalize(self, actions: np.ndarray) -> np.ndarray:
        return ((actions - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)).astype(np.float32)

    def unnormalize(self, actions: np.ndarray) -> np.ndarray:
        return (actions * np.asarray(self.std, np.float32) + np.asarray(self.mean, np.float32)).astype(np.float32)

    def to_json(self) -> dict:
        return {"mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_json(cls, data: Mapping) -> "ActionStats":
        return cls(mean=tuple(float(x) for x in data["mean"]), std=tuple(float(x) for x in data["std"]))


# ---------------------------------------------------------------------------------------------
# The ONNX interface. An exported policy is a directory with up to three files:
#   goal_encoder.onnx  goal image -> actor goal features and critic goal embedding (once per goal)
#   policy.onnx        observation image + actor goal features -> action in robot units
#   distance.onnx      observation image + critic goal embedding -> steps to goal (optional:
#                      agents without a quasimetric critic, e.g. GCBC, do not export it)
# Images enter as uint8 RGB, NHWC, at the model's native size; normalisation is inside the graph.
# ---------------------------------------------------------------------------------------------
GOAL_ENCODER_FILE = "goal_encoder.onnx"
POLICY_FILE = "policy.onnx"
DISTANCE_FILE = "distance.onnx"

# tensor names
GOAL_IMAGE = "goal_image"  # uint8 [B, S, S, 3]
OBSERVATION_IMAGE = "observation_image"  # uint8 [B, S, S, 3]
ACTOR_GOAL_FEATURES = "actor_goal_features"  # float32 [B, F_actor]
CRITIC_GOAL_EMBEDDING = "critic_goal_embedding"  # float32 [B, F_critic]
ACTION = "action"  # float32 [B, 7], robot units, deterministic (the policy mean)
DISTANCE = "distance"  # float32 [B], quasimetric d(psi(s), psi(g)), worst of the critic ensemble
STEPS_TO_GOAL = "steps_to_goal"  # float32 [B], distance / -log(gamma)

# metadata_props keys written into every exported file
META_FORMAT_VERSION = "mqe.format_version"
META_ROLE = "mqe.role"  # "goal_encoder" | "policy" | "distance"
META_EXPORT_ID = "mqe.export_id"  # identical in the files of one export; mixing exports is refused
META_AGENT = "mqe.agent"
META_IMAGE_SIZE = "mqe.image_size"
META_CAMERA = "mqe.camera"
META_ACTION_DIM = "mqe.action_dim"
META_ACTION_SEMANTICS = "mqe.action_semantics"  # JSON of ACTION_SEMANTICS
META_ACTION_STATS = "mqe.action_stats"  # JSON of ActionStats (already applied inside the graph)
META_CONTROL_RATE_HZ = "mqe.control_rate_hz"
META_GAMMA = "mqe.gamma"
META_TRAINING_CONFIG = "mqe.training_config"  # JSON
META_DATASET_FINGERPRINT = "mqe.dataset_fingerprint"
META_SOURCE_COMMIT = "mqe.source_commit"
META_STEP = "mqe.train_step"
META_PRECISION = "mqe.precision"  # "fp32" | "int8"; files written before int8 existed lack it: fp32
META_CALIBRATION_FINGERPRINT = "mqe.calibration_fingerprint"  # int8 only: sha256 of the calibration set

# Numeric precisions of an export. The fp32 graphs are always written; `mqe-export --precision int8`
# adds static-QDQ int8 graphs beside them (policy.int8.onnx, ...), with the fp32 graphs' export id.
PRECISIONS: tuple[str, ...] = ("fp32", "int8")


def graph_file(file_name: str, precision: str) -> str:
    """The file holding `file_name`'s graph (e.g. POLICY_FILE) at `precision`: policy.onnx, policy.int8.onnx."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    return file_name if precision == "fp32" else file_name.replace(".onnx", f".{precision}.onnx")

REQUIRED_METADATA: tuple[str, ...] = (
    META_FORMAT_VERSION,
    META_ROLE,
    META_EXPORT_ID,
    META_IMAGE_SIZE,
    META_CAMERA,
    META_ACTION_DIM,
    META_ACTION_SEMANTICS,
    META_CONTROL_RATE_HZ,
    META_GAMMA,
)


class PolicyArtifactError(ValueError):
    """An exported policy file is missing, unreadable or does not match this contract."""


def check_policy_metadata(metadata: Mapping[str, str], where: str, role: str) -> dict:
    """Validate one file's metadata against this contract; return it parsed into Python values."""
    missing = [key for key in REQUIRED_METADATA if key not in metadata]
    if missing:
        raise PolicyArtifactError(f"{where}: missing metadata {missing}; was it written by mqe-export?")
    try:
        version = int(metadata[META_FORMAT_VERSION])
        image_size = int(metadata[META_IMAGE_SIZE])
        action_dim = int(metadata[META_ACTION_DIM])
        gamma = float(metadata[META_GAMMA])
        rate = float(metadata[META_CONTROL_RATE_HZ])
        semantics = json.loads(metadata[META_ACTION_SEMANTICS])
    except (ValueError, json.JSONDecodeError) as error:
        raise PolicyArtifactError(f"{where}: unreadable metadata ({error})") from error
    if version != POLICY_FORMAT_VERSION:
        raise PolicyArtifactError(
            f"{where}: format version {version}, this software reads version {POLICY_FORMAT_VERSION}"
        )
    if not isinstance(semantics, dict):
        raise PolicyArtifactError(
            f"{where}: metadata {META_ACTION_SEMANTICS} is {type(semantics).__name__} {semantics!r}; expected a JSON object"
        )
    if not 0.0 < rate < float("inf"):  # NaN fails too
        raise PolicyArtifactError(f"{where}: metadata {META_CONTROL_RATE_HZ} is {rate}; expected a positive, finite rate in Hz")
    if metadata[META_ROLE] != role:
        raise PolicyArtifactError(f"{where}: has role {metadata[META_ROLE]!r}, expected {role!r}")
    if action_dim != ACTION_DIM or semantics.get("names") != list(ACTION_NAMES):
        raise PolicyArtifactError(
            f"{where}: action is {action_dim}-D {semantics.get('names')}, expected {ACTION_DIM}-D {list(ACTION_NAMES)}"
        )
    if not 16 <= image_size <= 1024:
        raise PolicyArtifactError(f"{where}: image size {image_size} is outside 16..1024")
    if not 0.0 < gamma < 1.0:
        raise PolicyArtifactError(f"{where}: gamma {gamma} is outside (0, 1)")
    precision = metadata.get(META_PRECISION, "fp32")
    if precision not in PRECISIONS:
        raise PolicyArtifactError(f"{where}: metadata {META_PRECISION} is {precision!r}; expected one of {', '.join(PRECISIONS)}")
    calibration = metadata.get(META_CALIBRATION_FINGERPRINT, "")
    if precision == "int8" and not calibration:
        raise PolicyArtifactError(f"{where}: an int8 graph without metadata {META_CALIBRATION_FINGERPRINT}; was it written by mqe-export --precision int8?")
    if precision == "fp32" and calibration:
        raise PolicyArtifactError(f"{where}: an fp32 graph carries {META_CALIBRATION_FINGERPRINT}; only int8 graphs are calibrated")
    return {
        "format_version": version,
        "role": metadata[META_ROLE],
        "export_id": metadata[META_EXPORT_ID],
        "agent": metadata.get(META_AGENT, ""),
        "image_size": image_size,
        "camera": metadata[META_CAMERA],
        "action_dim": action_dim,
        "gamma": gamma,
        "control_rate_hz": rate,
        "precision": precision,
        "calibration_fingerprint": calibration,
    }


def steps_from_distance(distance: np.ndarray | float, gamma: float) -> np.ndarray | float:
    """Quasimetric distance d = -log V with V = gamma^steps, so steps = d / -log(gamma)."""
    return distance / -np.log(gamma)

