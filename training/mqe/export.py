"""Export a trained agent to the ONNX policy directory defined in mqe.contract.

    mqe-export --workdir runs/mqe_bridge                # newest checkpoint -> runs/mqe_bridge/export
    mqe-export --checkpoint runs/x/checkpoints/step_000500000.pt --out policy/
    mqe-export --workdir runs/mqe_bridge --precision int8  # + *.int8.onnx and int8_accuracy.json (mqe.quantize)

Three graphs (see mqe.contract): goal_encoder.onnx (uint8 goal image -> actor goal features and, for
agents with a quasimetric critic, psi(g)), policy.onnx (uint8 observation + actor goal features ->
action in robot units: the normalised mean action times the dataset's std plus mean, computed in the
graph) and distance.onnx (uint8 observation + psi(g) -> d and steps_to_goal = d / -log(gamma)).
Images enter as uint8 RGB NHWC at the model's native size; the agent's own image normalisation is
traced into each graph. The batch axis is dynamic. Every file carries the contract's metadata, is
validated with onnx.checker, and is written atomically; the three files of one export share an
export id so the runtime can refuse a mix of exports.

Exporter: torch.export in strict (TorchDynamo) mode, then torch.onnx.export's dynamo path at opset
18. The non-strict default specialises `len(x)` to the example batch; strict capture keeps it
symbolic, and a graph whose batch axis still came out fixed is refused. BatchNorm is folded into
the convolutions by the exporter's optimiser (no BatchNormalization node remains).

Python API: `export_agent(agent, out_dir, *, image_size, camera, action_stats, gamma, control_rate_hz,
training_config, dataset_fingerprint, train_step) -> Path` and `check_parity(agent, out_dir, ...)`.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import logging
import math
import subprocess
import uuid
import warnings
from pathlib import Path
from typing import Mapping

import numpy as np
import onnx
import torch
from torch import nn

from mqe import contract
from mqe.agents.base import Agent
from mqe.checkpoint import CheckpointError, load_checkpoint, load_latest_checkpoint
from mqe.files import atomic_write_bytes
from mqe.config import to_json

ONNX_OPSET = 18  # opset of the exported graphs (>= 17 for LayerNormalization)
EXPORT_BATCH = 3  # example batch for tracing; odd so it cannot coincide with an ensemble size of 2
PARITY_TOLERANCE = 1e-4  # max |onnxruntime - torch| accepted by mqe-export's check


class _GoalEncoderGraph(nn.Module):
    def __init__(self, agent: Agent):
        super().__init__()
        self.agent = agent

    def forward(self, goal_image: torch.Tensor):
        actor_goal_features = self.agent.encode_actor_goal(goal_image)
        if self.agent.has_distance:
            return actor_goal_features, self.agent.encode_critic_goal(goal_image)
        return actor_goal_features


class _PolicyGraph(nn.Module):
    def __init__(self, agent: Agent, action_stats: contract.ActionStats):
        super().__init__()
        self.agent = agent
        self.register_buffer("action_mean", torch.tensor(action_stats.mean, dtype=torch.float32))
        self.register_buffer("action_std", torch.tensor(action_stats.std, dtype=torch.float32))

    def forward(self, observation_image: torch.Tensor, actor_goal_features: torch.Tensor) -> torch.Tensor:
        normalised = self.agent.act_from_goal_features(observation_image, actor_goal_features)
        return normalised * self.action_std + self.action_mean


class _DistanceGraph(nn.Module):
    def __init__(self, agent: Agent, gamma: float):
        super().__init__()
        self.agent = agent
        self.steps_per_distance = 1.0 / -math.log(gamma)

    def forward(self, observation_image: torch.Tensor, critic_goal_embedding: torch.Tensor):
        distance = self.agent.distance_to_goal_embedding(observation_image, critic_goal_embedding)
        return distance, distance * self.steps_per_distance


def source_commit() -> str:
    """`git rev-parse HEAD` of the checkout this module lives in, or "unknown"."""
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return result.stdout.strip() if result.returncode == 0 and result.stdout.strip() else "unknown"


def _inference_copy(agent: nn.Module) -> Agent:
    """A CPU, eval-mode copy, unwrapped from DistributedDataParallel, so the live agent is untouched."""
    agent = getattr(agent, "module", agent)
    if not isinstance(agent, Agent):
        raise TypeError(f"export: expected an mqe.agents.base.Agent, got {type(agent).__name__}")
    return copy.deepcopy(agent).cpu().eval()


@contextlib.contextmanager
def _quiet_exporter_logs():
    """Silence the exporter's per-call notes (e.g. 'torchvision is not installed') on the console."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "torch.export", "torch._export", "torch.fx")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def _to_onnx(module: nn.Module, example: tuple, input_names: list[str], output_names: list[str]) -> onnx.ModelProto:
    batch = torch.export.Dim("batch")
    with warnings.catch_warnings(), _quiet_exporter_logs():
        warnings.simplefilter("ignore")  # the exporter's progress chatter
        # Strict (TorchDynamo) capture keeps len(x) and x.shape[0] symbolic, so the batch axis stays
        # dynamic; the non-strict default would specialise it to the example's batch size.
        exported = torch.export.export(module, example, dynamic_shapes=tuple({0: batch} for _ in example), strict=True)
        program = torch.onnx.export(
            exported,
            example,
            input_names=input_names,
            output_names=output_names,
            opset_version=ONNX_OPSET,
            dynamo=True,
            external_data=False,
            verbose=False,
        )
    model = program.model_proto
    io_values = list(model.graph.input) + list(model.graph.output)
    batch_symbols = set()
    for value in io_values:
        symbol = value.type.tensor_type.shape.dim[0].dim_param
        if not symbol:
            raise RuntimeError(
                f"export: {value.name} lost its dynamic batch axis while tracing "
                f"{type(module).__name__}; a reshape in the agent uses a fixed batch size"
            )
        batch_symbols.add(symbol)
    for value in io_values + list(model.graph.value_info):  # the exporter's "s27" -> "batch"
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param in batch_symbols:
                dim.dim_param = "batch"
    return model


def _set_metadata(model: onnx.ModelProto, metadata: Mapping[str, str]) -> None:
    del model.metadata_props[:]
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value


def export_agent(
    agent: nn.Module,
    out_dir: str | Path,
    *,
    image_size: int,
    camera: str,
    action_stats: contract.ActionStats,
    gamma: float,
    control_rate_hz: float = contract.DEFAULT_CONTROL_RATE_HZ,
    training_config: Mapping | None = None,
    dataset_fingerprint: str = "unknown",
    train_step: int = 0,
    agent_name: str | None = None,
) -> Path:
    """Write goal_encoder.onnx, policy.onnx and (if agent.has_distance) distance.onnx to `out_dir`.

    `agent` is a live image agent (any device, train or eval mode, optionally DDP-wrapped); it is
    not modified. Returns `out_dir`.
    """
    if not 0.0 < gamma < 1.0:
        raise ValueError(f"export: gamma must be in (0, 1), got {gamma}")
    if not isinstance(action_stats, contract.ActionStats):
        raise TypeError(f"export: action_stats must be mqe.contract.ActionStats, got {type(action_stats).__name__}")
    model = _inference_copy(agent)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    common = {
        contract.META_FORMAT_VERSION: str(contract.POLICY_FORMAT_VERSION),
        contract.META_EXPORT_ID: uuid.uuid4().hex,
        contract.META_AGENT: agent_name or model.name,
        contract.META_IMAGE_SIZE: str(int(image_size)),
        contract.META_CAMERA: camera,
        contract.META_ACTION_DIM: str(contract.ACTION_DIM),
        contract.META_ACTION_SEMANTICS: json.dumps(contract.ACTION_SEMANTICS),
        contract.META_ACTION_STATS: json.dumps(action_stats.to_json()),
        contract.META_CONTROL_RATE_HZ: repr(float(control_rate_hz)),
        contract.META_GAMMA: repr(float(gamma)),
        contract.META_TRAINING_CONFIG: to_json(training_config or {}),
        contract.META_DATASET_FINGERPRINT: dataset_fingerprint,
        contract.META_SOURCE_COMMIT: source_commit(),
        contract.META_STEP: str(int(train_step)),
        contract.META_PRECISION: "fp32",
    }

    generator = torch.Generator().manual_seed(0)
    image = torch.randint(0, 256, (EXPORT_BATCH, image_size, image_size, 3), dtype=torch.uint8, generator=generator)
    with torch.no_grad():
        actor_goal_features = model.encode_actor_goal(image)
        critic_goal_embedding = model.encode_critic_goal(image) if model.has_distance else None

    goal_outputs = [contract.ACTOR_GOAL_FEATURES] + ([contract.CRITIC_GOAL_EMBEDDING] if model.has_distance else [])
    graphs = [
        ("goal_encoder", contract.GOAL_ENCODER_FILE, _GoalEncoderGraph(model), (image,), [contract.GOAL_IMAGE], goal_outputs),
        (
            "policy",
            contract.POLICY_FILE,
            _PolicyGraph(model, action_stats),
            (image, actor_goal_features),
            [contract.OBSERVATION_IMAGE, contract.ACTOR_GOAL_FEATURES],
            [contract.ACTION],
        ),
    ]
    if model.has_distance:
        graphs.append(
            (
                "distance",
                contract.DISTANCE_FILE,
                _DistanceGraph(model, gamma),
                (image, critic_goal_embedding),
                [contract.OBSERVATION_IMAGE, contract.CRITIC_GOAL_EMBEDDING],
                [contract.DISTANCE, contract.STEPS_TO_GOAL],
            )
        )

    # Build and check every graph before replacing any file, so a failure leaves the old export whole.
    serialized = []
    for role, file_name, module, example, input_names, output_names in graphs:
        proto = _to_onnx(module, example, input_names, output_names)
        _set_metadata(proto, {**common, contract.META_ROLE: role})
        onnx.checker.check_model(proto, full_check=True)
        serialized.append((out_dir / file_name, proto.SerializeToString()))
    for path, data in serialized:
        atomic_write_bytes(path, lambda handle, data=data: handle.write(data))
    if not model.has_distance:
        # A distance graph left by an earlier export would carry another export id.
        (out_dir / contract.DISTANCE_FILE).unlink(missing_ok=True)
    return out_dir


def read_metadata(path: str | Path) -> dict[str, str]:
    """metadata_props of an ONNX file as a dict (without loading the weights into onnxruntime)."""
    model = onnx.load(str(path), load_external_data=False)
    return {entry.key: entry.value for entry in model.metadata_props}


def check_parity(
    agent: nn.Module,
    out_dir: str | Path,
    *,
    action_stats: contract.ActionStats,
    gamma: float,
    batch_size: int = 3,
    seed: int = 0,
) -> dict[str, float]:
    """Max |onnxruntime - torch| per exported output on random uint8 images of a fresh batch size."""
    import onnxruntime as ort

    model = _inference_copy(agent)
    out_dir = Path(out_dir)
    size = int(read_metadata(out_dir / contract.POLICY_FILE)[contract.META_IMAGE_SIZE])
    rng = np.random.default_rng(seed)
    observation = rng.integers(0, 256, (batch_size, size, size, 3), dtype=np.uint8)
    goal = rng.integers(0, 256, (batch_size, size, size, 3), dtype=np.uint8)

    def session(name):
        return ort.InferenceSession(str(out_dir / name), providers=["CPUExecutionProvider"])

    errors = {}
    with torch.no_grad():
        goal_features = model.encode_actor_goal(torch.from_numpy(goal))
        onnx_goal = session(contract.GOAL_ENCODER_FILE).run(None, {contract.GOAL_IMAGE: goal})
        errors[contract.ACTOR_GOAL_FEATURES] = float(np.abs(onnx_goal[0] - goal_features.numpy()).max())
        mean = torch.tensor(action_stats.mean)
        std = torch.tensor(action_stats.std)
        action = model.act_from_goal_features(torch.from_numpy(observation), goal_features) * std + mean
        onnx_action = session(contract.POLICY_FILE).run(
            None, {contract.OBSERVATION_IMAGE: observation, contract.ACTOR_GOAL_FEATURES: goal_features.numpy()}
        )[0]
        errors[contract.ACTION] = float(np.abs(onnx_action - action.numpy()).max())
        if model.has_distance:
            embedding = model.encode_critic_goal(torch.from_numpy(goal))
            errors[contract.CRITIC_GOAL_EMBEDDING] = float(np.abs(onnx_goal[1] - embedding.numpy()).max())
            distance = model.distance_to_goal_embedding(torch.from_numpy(observation), embedding).numpy()
            onnx_distance, onnx_steps = session(contract.DISTANCE_FILE).run(
                None, {contract.OBSERVATION_IMAGE: observation, contract.CRITIC_GOAL_EMBEDDING: embedding.numpy()}
            )
            errors[contract.DISTANCE] = float(np.abs(onnx_distance - distance).max())
            steps = contract.steps_from_distance(distance, gamma)
            errors[contract.STEPS_TO_GOAL] = float(np.abs(onnx_steps - steps).max())
    return errors


def agent_from_checkpoint(source: str | Path) -> tuple[Agent, dict, int, Path]:
    """Rebuild the trained agent from a checkpoint file or a workdir (its newest readable
    checkpoint). Returns (agent in eval mode, checkpoint meta, step, checkpoint path)."""
    from mqe.agents import make_agent

    source = Path(source)
    if source.is_dir():
        found = load_latest_checkpoint(source)
        if found is None:
            raise CheckpointError(f"{source}: no checkpoints/step_*.pt in this workdir")
        path, state = found
    else:
        path, state = source, load_checkpoint(source)
    meta = state.get("meta") or {}
    missing = [key for key in ("agent_name", "agent_config", "observation_spec", "action_stats", "gamma") if key not in meta]
    if missing:
        raise CheckpointError(f"{path}: checkpoint meta lacks {missing}; was it written by mqe-train?")
    kind, size = meta["observation_spec"]
    if kind != "image":
        raise CheckpointError(f"{path}: only image agents export to the robot policy, this one observes {kind}s")
    agent = make_agent(meta["agent_name"], meta["agent_config"], (kind, int(size)), int(meta["action_dim"]))
    agent.load_state_dict(state["agent"])
    return agent.eval(), meta, int(state["step"]), path


def export_checkpoint(source: str | Path, out_dir: str | Path | None = None, verify: bool = True, precision: str = "fp32",
                      calibration_data: str | Path | None = None, calibration_pairs: int = 256, held_out_pairs: int = 128) -> Path:
    """Export a checkpoint (or a workdir's newest) to `out_dir` (default: <workdir>/export). With
    precision "int8", also the int8 graphs (mqe.quantize), calibrated on `calibration_pairs` pairs of
    the dataset's train split (default: the checkpoint's training data) and checked on its val split."""
    if precision not in contract.PRECISIONS:
        raise ValueError(f"--precision {precision!r}: expected one of {', '.join(contract.PRECISIONS)}")
    agent, meta, step, path = agent_from_checkpoint(source)
    if out_dir is None:
        out_dir = path.parent.parent / "export"
    action_stats = contract.ActionStats.from_json(meta["action_stats"])
    export_agent(
        agent,
        out_dir,
        image_size=int(meta["image_size"]),
        camera=meta["camera"],
        action_stats=action_stats,
        gamma=float(meta["gamma"]),
        control_rate_hz=float(meta.get("control_rate_hz", contract.DEFAULT_CONTROL_RATE_HZ)),
        training_config=json.loads(meta["config"]) if "config" in meta else {},
        dataset_fingerprint=meta.get("dataset_fingerprint", "unknown"),
        train_step=step,
        agent_name=meta["agent_name"],
    )
    if verify:
        errors = check_parity(agent, out_dir, action_stats=action_stats, gamma=float(meta["gamma"]))
        worst = max(errors.values())
        if worst > PARITY_TOLERANCE:
            raise RuntimeError(f"{out_dir}: onnxruntime differs from torch by {worst:.2e} > {PARITY_TOLERANCE} ({errors})")
    if precision == "int8":
        from mqe import quantize

        if calibration_data is None:
            config = json.loads(meta["config"]) if "config" in meta else {}
            calibration_data = (config.get("data") or {}).get("data_dir")
            if not calibration_data:
                raise CheckpointError(f"{path}: the checkpoint names no training data; pass --calibration-data DIR")
        size, camera = int(meta["image_size"]), meta["camera"]
        calibration = quantize.bridge_pairs(calibration_data, camera, "train", calibration_pairs, size)
        held_out = quantize.bridge_pairs(calibration_data, camera, "val", held_out_pairs, size, seed=1)
        quantize.quantize_export(out_dir, calibration, held_out)
    return Path(out_dir)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="mqe-export", description="Export a trained agent to the ONNX policy directory.")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--workdir", help="training run directory (its newest readable checkpoint is exported)")
    source.add_argument("--checkpoint", help="a checkpoints/step_*.pt file")
    parser.add_argument("--out", help="output directory (default: <workdir>/export)")
    parser.add_argument("--no-verify", action="store_true", help="skip the onnxruntime-vs-torch parity check")
    parser.add_argument("--precision", choices=contract.PRECISIONS, default="fp32",
                        help="int8: also write static-QDQ int8 graphs beside the fp32 ones, with an accuracy report")
    parser.add_argument("--calibration-data", help="bridge_dataset directory for int8 calibration (default: the training data)")
    parser.add_argument("--calibration-pairs", type=int, default=256, help="observation/goal pairs from the train split to calibrate on")
    parser.add_argument("--held-out-pairs", type=int, default=128, help="pairs from the val split for the accuracy report")
    args = parser.parse_args(argv)
    try:
        out_dir = export_checkpoint(args.workdir or args.checkpoint, args.out, verify=not args.no_verify, precision=args.precision,
                                    calibration_data=args.calibration_data, calibration_pairs=args.calibration_pairs,
                                    held_out_pairs=args.held_out_pairs)
    except (CheckpointError, ValueError, RuntimeError) as error:  # QuantizationRefused is a RuntimeError
        raise SystemExit(f"mqe-export: {error}") from error
    for path in sorted(out_dir.glob("*.onnx")):
        metadata = read_metadata(path)
        print(f"{path}  role={metadata[contract.META_ROLE]} precision={metadata.get(contract.META_PRECISION, 'fp32')} "
              f"step={metadata[contract.META_STEP]} "
              f"size={metadata[contract.META_IMAGE_SIZE]} agent={metadata[contract.META_AGENT]}")


if __name__ == "__main__":
    main()
