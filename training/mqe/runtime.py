"""Run an exported policy with onnxruntime alone: the code the robot PC runs (numpy, OpenCV and
onnxruntime; no torch).

An export is the directory described in mqe.contract: goal_encoder.onnx, policy.onnx and, for
agents with a quasimetric critic, distance.onnx. Every file is validated against the contract
before anything runs, and every problem is reported as one line naming the file.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort

from mqe import contract


class GoalImageError(ValueError):
    """The goal image is missing, unreadable, empty or not an RGB image."""


class NonFiniteOutputError(RuntimeError):
    """The policy produced NaN or Inf; the caller must not act on it."""


class ActionShapeError(RuntimeError):
    """The policy graph's action does not have the contract's ACTION_DIM values."""


# Smallest goal image side accepted from a file or the goal topic. A goal is a camera view of the
# scene to reach; anything this small (a 1x1 "image" is one colour) carries no scene to reach, and
# upsampling it to the model's input makes a blur the policy was never trained on.
MIN_GOAL_SIDE = 32


def check_goal_image(rgb: np.ndarray, where: str) -> np.ndarray:
    """An HxWx3 uint8 RGB goal at least MIN_GOAL_SIDE on each side, else GoalImageError naming `where`."""
    try:
        contract.check_rgb_image(rgb, where)
    except ValueError as error:
        raise GoalImageError(str(error)) from error
    if min(rgb.shape[:2]) < MIN_GOAL_SIDE:
        raise GoalImageError(
            f"{where}: {rgb.shape[1]}x{rgb.shape[0]} px is too small for a goal (at least {MIN_GOAL_SIDE}x{MIN_GOAL_SIDE}: "
            "a camera view of the scene to reach)"
        )
    return rgb


def load_goal_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as HxWx3 uint8 RGB; raise GoalImageError (one line naming the file)."""
    path = Path(path)
    if not path.exists():
        raise GoalImageError(f"goal image {path}: no such file")
    if not path.is_file():
        raise GoalImageError(f"goal image {path}: not a file")
    try:
        data = path.read_bytes()
    except OSError as error:
        raise GoalImageError(f"goal image {path}: unreadable ({error.strerror})") from error
    if not data:
        raise GoalImageError(f"goal image {path}: file is empty")
    # Decode from memory: cv2.imread silently returns None for every failure, without a reason.
    # IMREAD_UNCHANGED keeps the channels the file has, so grayscale and alpha are seen, not converted.
    try:
        decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error as error:  # e.g. a header declaring more than OpenCV's CV_IO_MAX_IMAGE_PIXELS
        reason = str(error).strip().splitlines()[-1].strip() if str(error).strip() else "decoder error"
        raise GoalImageError(f"goal image {path}: cannot be decoded ({reason})") from error
    if decoded is None:
        raise GoalImageError(f"goal image {path}: not a readable image (PNG/JPEG expected)")
    channels = 1 if decoded.ndim == 2 else decoded.shape[2]
    if channels in (1, 2):
        # The camera is colour and so is every training frame: a gray goal can never be matched.
        raise GoalImageError(f"goal image {path}: grayscale; expected a colour (RGB) image from the robot's camera")
    if decoded.dtype != np.uint8:  # 16-bit PNG: the camera and the training data are 8-bit
        decoded = (decoded // 257).astype(np.uint8) if decoded.dtype == np.uint16 else None
        if decoded is None:
            raise GoalImageError(f"goal image {path}: unsupported sample type; expected 8-bit RGB")
    if channels == 4:
        # Pixels under transparency have an arbitrary colour the user never saw: refuse them rather
        # than make that colour the goal. A fully opaque alpha channel carries nothing and is dropped.
        if decoded[..., 3].min() < 255:
            raise GoalImageError(f"goal image {path}: has transparent pixels; expected an opaque RGB image (flatten it first)")
        decoded = decoded[..., :3]
    rgb = cv2.cvtColor(np.ascontiguousarray(decoded), cv2.COLOR_BGR2RGB)
    return check_goal_image(rgb, f"goal image {path}")


OPTIMIZATION_LEVELS = {
    "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


# The runtime's `provider` names and the onnxruntime execution provider each one means. OpenVINO
# comes with the onnxruntime-openvino wheel, CUDA and TensorRT with onnxruntime-gpu; each wheel
# replaces the plain onnxruntime one.
PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}
PROVIDER_PACKAGES = {"cpu": "onnxruntime", "openvino": "onnxruntime-openvino", "cuda": "onnxruntime-gpu", "tensorrt": "onnxruntime-gpu"}


class ProviderUnavailableError(ValueError):
    """The requested execution provider is not in this onnxruntime or did not initialise."""


def check_provider(provider: str) -> str:
    """The onnxruntime provider for a runtime `provider` name; ProviderUnavailableError (one line)
    when this onnxruntime does not have it. There is never a fallback to another provider."""
    if provider not in PROVIDERS:
        raise ProviderUnavailableError(f"provider {provider!r}: unknown; expected one of {', '.join(PROVIDERS)}")
    available = ort.get_available_providers()
    if PROVIDERS[provider] not in available:
        raise ProviderUnavailableError(
            f"provider {provider!r}: {PROVIDERS[provider]} is not in this onnxruntime {ort.__version__} "
            f"(it has {', '.join(available)}); install {PROVIDER_PACKAGES[provider]} or choose provider:=cpu"
        )
    return PROVIDERS[provider]


def open_session(path: Path, threads: int, optimization_level: str = "all", spin: bool = False,
                 provider: str = "cpu") -> ort.InferenceSession:
    """The one way a policy graph is opened, by the robot and by the benchmarks.

    Spinning intra-op threads answer faster on an idle machine but burn the cores they wait on; the
    robot PC shares its cores with the camera and arm nodes, and on a shared 2-core machine spinning
    doubled the latency (mqe-bench inference: 48 ms spinning vs 26 ms not, ResNet34 at 128 px)."""
    options = ort.SessionOptions()
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = OPTIMIZATION_LEVELS[optimization_level]
    options.log_severity_level = 3  # errors only; warnings about unused initialisers are noise here
    wanted = check_provider(provider)
    try:
        session = ort.InferenceSession(str(path), sess_options=options, providers=[wanted])
    except Exception as error:  # onnxruntime raises its own exception types, one per failure kind
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise contract.PolicyArtifactError(f"{path}: not a loadable ONNX model ({reason})") from error
    # onnxruntime falls back to the CPU when a provider fails to initialise (e.g. no CUDA driver) and
    # only logs it; that fallback is refused here.
    if session.get_providers()[0] != wanted:
        raise ProviderUnavailableError(
            f"provider {provider!r}: {wanted} did not initialise for {path} (onnxruntime chose {session.get_providers()}); "
            "check the driver/toolkit install or choose provider:=cpu"
        )
    return session


def _check_tensors(session: ort.InferenceSession, path: Path, inputs: tuple[str, ...], outputs: tuple[str, ...]):
    have_inputs = {tensor.name for tensor in session.get_inputs()}
    have_outputs = {tensor.name for tensor in session.get_outputs()}
    missing = [name for name in inputs if name not in have_inputs]
    missing += [name for name in outputs if name not in have_outputs]
    if missing:
        raise contract.PolicyArtifactError(
            f"{path}: missing tensors {missing} (has inputs {sorted(have_inputs)}, outputs {sorted(have_outputs)})"
        )


def _check_batch_one(session: ort.InferenceSession, path: Path, image_size: int) -> None:
    """Every input must accept batch 1 (the robot runs one frame at a time) and images must be
    [B, S, S, 3] at the metadata's size; a graph traced with a fixed batch fails here, not mid-run."""
    for tensor in session.get_inputs():
        shape = list(tensor.shape)
        if shape and isinstance(shape[0], int) and shape[0] != 1:
            raise contract.PolicyArtifactError(
                f"{path}: input {tensor.name} has a fixed batch of {shape[0]}; the export must have a dynamic batch axis"
            )
        if tensor.name in (contract.GOAL_IMAGE, contract.OBSERVATION_IMAGE) and shape[1:] != [image_size, image_size, 3]:
            raise contract.PolicyArtifactError(
                f"{path}: input {tensor.name} has shape {shape}, expected [batch, {image_size}, {image_size}, 3]"
            )


class OnnxPolicy:
    """A goal-conditioned policy loaded from an export directory.

    set_goal(rgb) once per goal, then act(rgb) per control step. Images are HxWx3 uint8 RGB of any
    size; they are squashed to the model's native size by mqe.contract.resize_for_policy.

    `threads` are the intra-op threads of the goal encoder and the policy graph. The distance graph
    (steps_to_goal, operator feedback) gets `distance_threads`, by default one: then it runs wholly on
    the calling thread, so a caller that lowers that thread's priority lowers all of its work.

    `precision` "int8" loads the *.int8.onnx graphs written by `mqe-export --precision int8` (their
    metadata must say int8 and carry one calibration fingerprint); `provider` is a PROVIDERS name,
    refused with one line when this onnxruntime lacks it.
    """

    def __init__(self, artifact_dir: str | os.PathLike, threads: int = 2, distance_threads: int = 1,
                 precision: str = "fp32", provider: str = "cpu"):
        self.artifact_dir = Path(artifact_dir)
        if not self.artifact_dir.is_dir():
            raise contract.PolicyArtifactError(f"{self.artifact_dir}: no such policy directory (expected the output of mqe-export)")
        if precision not in contract.PRECISIONS:
            raise ValueError(f"precision {precision!r}: expected one of {', '.join(contract.PRECISIONS)}")
        check_provider(provider)  # before any file is opened: the one line says what to install
        self._precision, self._provider = precision, provider
        goal_path = self.artifact_dir / contract.graph_file(contract.GOAL_ENCODER_FILE, precision)
        policy_path = self.artifact_dir / contract.graph_file(contract.POLICY_FILE, precision)
        distance_path = self.artifact_dir / contract.graph_file(contract.DISTANCE_FILE, precision)
        for path in (goal_path, policy_path):
            if not path.is_file():
                hint = " (int8 graphs are written by mqe-export --precision int8)" if precision == "int8" else ""
                raise contract.PolicyArtifactError(f"{path}: missing (an export holds {goal_path.name} and {policy_path.name}){hint}")

        self._goal_session, goal_meta = self._load(goal_path, "goal_encoder", threads)
        self._policy_session, policy_meta = self._load(policy_path, "policy", threads)
        self._distance_session = None
        files = [(goal_path, goal_meta), (policy_path, policy_meta)]
        if distance_path.is_file():
            self._distance_session, distance_meta = self._load(distance_path, "distance", distance_threads)
            files.append((distance_path, distance_meta))

        # The files must come from one export: same id, and the same values for the shared fields.
        for path, meta in files[1:]:
            for key in ("export_id", "image_size", "camera", "gamma", "control_rate_hz", "precision", "calibration_fingerprint"):
                if meta[key] != goal_meta[key]:
                    raise contract.PolicyArtifactError(
                        f"{path}: {key} {meta[key]!r} differs from {goal_path.name}'s {goal_meta[key]!r}; "
                        "the files come from different exports"
                    )

        goal_outputs = (contract.ACTOR_GOAL_FEATURES,)
        if self._distance_session is not None:
            goal_outputs += (contract.CRITIC_GOAL_EMBEDDING,)
        _check_tensors(self._goal_session, goal_path, (contract.GOAL_IMAGE,), goal_outputs)
        _check_tensors(self._policy_session, policy_path, (contract.OBSERVATION_IMAGE, contract.ACTOR_GOAL_FEATURES), (contract.ACTION,))
        if self._distance_session is not None:
            outputs = {tensor.name for tensor in self._distance_session.get_outputs()}
            self._distance_output = contract.STEPS_TO_GOAL if contract.STEPS_TO_GOAL in outputs else contract.DISTANCE
            _check_tensors(
                self._distance_session,
                distance_path,
                (contract.OBSERVATION_IMAGE, contract.CRITIC_GOAL_EMBEDDING),
                (self._distance_output,),
            )

        for path, _ in files:
            session = {goal_path: self._goal_session, policy_path: self._policy_session}.get(path, self._distance_session)
            _check_batch_one(session, path, goal_meta["image_size"])

        for path, meta in files:
            if meta["precision"] != precision:
                raise contract.PolicyArtifactError(f"{path}: holds a {meta['precision']} graph, expected {precision}")
        self._metadata = dict(policy_meta)
        self._metadata["provider"] = provider
        self._metadata["has_distance"] = self._distance_session is not None
        self._metadata["files"] = [str(path) for path, _ in files]
        self._actor_goal: np.ndarray | None = None
        self._critic_goal: np.ndarray | None = None

    def _load(self, path: Path, role: str, threads: int) -> tuple[ort.InferenceSession, dict]:
        session = open_session(path, threads, provider=self._provider)
        metadata = session.get_modelmeta().custom_metadata_map
        return session, contract.check_policy_metadata(metadata, str(path), role)

    # --- properties -----------------------------------------------------------------------------
    @property
    def image_size(self) -> int:
        return self._metadata["image_size"]

    @property
    def camera(self) -> str:
        return self._metadata["camera"]

    @property
    def gamma(self) -> float:
        return self._metadata["gamma"]

    @property
    def control_rate_hz(self) -> float:
        return self._metadata["control_rate_hz"]

    @property
    def precision(self) -> str:
        return self._precision

    @property
    def provider(self) -> str:
        return self._provider

    @property
    def has_distance(self) -> bool:
        return self._distance_session is not None

    @property
    def has_goal(self) -> bool:
        return self._actor_goal is not None

    @property
    def metadata(self) -> dict:
        """The validated metadata (format version, role, export id, agent, image size, camera,
        action dim, gamma, control rate, precision, calibration fingerprint) plus the provider,
        has_distance and the files loaded."""
        return dict(self._metadata)

    # --- inference ------------------------------------------------------------------------------
    def preprocess(self, rgb: np.ndarray, where: str = "image") -> np.ndarray:
        """HxWx3 uint8 RGB of any size -> uint8 [1, S, S, 3] at the model's native size."""
        return contract.resize_for_policy(rgb, self.image_size, where)[None]

    def set_goal(self, rgb: np.ndarray) -> None:
        """Encode the goal image once; later act() and steps_to_goal() calls are conditioned on it."""
        outputs = [contract.ACTOR_GOAL_FEATURES]
        if self.has_distance:
            outputs.append(contract.CRITIC_GOAL_EMBEDDING)
        values = self._goal_session.run(outputs, {contract.GOAL_IMAGE: self.preprocess(rgb, "goal image")})
        for name, value in zip(outputs, values):
            if not np.all(np.isfinite(value)):
                raise NonFiniteOutputError(f"goal encoder produced non-finite {name}")
        self._actor_goal = values[0]
        self._critic_goal = values[1] if self.has_distance else None

    def act(self, rgb: np.ndarray) -> np.ndarray:
        """The deterministic action for this observation: float32 [7] in robot units."""
        if self._actor_goal is None:
            raise RuntimeError("act() before set_goal(): the policy has no goal")
        (action,) = self._policy_session.run(
            [contract.ACTION],
            {contract.OBSERVATION_IMAGE: self.preprocess(rgb, "observation"), contract.ACTOR_GOAL_FEATURES: self._actor_goal},
        )
        action = np.asarray(action, np.float32).reshape(-1)
        if action.shape != (contract.ACTION_DIM,):
            raise ActionShapeError(f"policy produced an action of shape {action.shape}, expected ({contract.ACTION_DIM},)")
        if not np.all(np.isfinite(action)):
            raise NonFiniteOutputError(f"policy produced a non-finite action {action.tolist()}")
        return action

    def probe(self, rgb: np.ndarray) -> np.ndarray:
        """One inference on `rgb` (after set_goal) before any action is used: a graph whose action does
        not match the contract or is NaN/Inf is refused here, as an artifact error naming the file,
        instead of failing every control tick."""
        try:
            return self.act(rgb)
        except (ActionShapeError, NonFiniteOutputError) as error:
            raise contract.PolicyArtifactError(
                f"{self.artifact_dir / contract.POLICY_FILE}: probe inference failed: {error}"
            ) from error

    def steps_to_goal(self, rgb: np.ndarray) -> float | None:
        """Estimated steps from this observation to the goal (critic distance / -log gamma), or None
        when the export has no distance graph."""
        if self._distance_session is None:
            return None
        if self._critic_goal is None:
            raise RuntimeError("steps_to_goal() before set_goal(): the policy has no goal")
        (value,) = self._distance_session.run(
            [self._distance_output],
            {contract.OBSERVATION_IMAGE: self.preprocess(rgb, "observation"), contract.CRITIC_GOAL_EMBEDDING: self._critic_goal},
        )
        value = float(np.asarray(value).reshape(-1)[0])
        if self._distance_output == contract.DISTANCE:
            value = float(contract.steps_from_distance(value, self.gamma))
        if not np.isfinite(value):
            raise NonFiniteOutputError(f"distance graph produced a non-finite value {value}")
        return value
