"""INT8 graphs beside an fp32 export: static QDQ quantisation with onnxruntime.quantization.

    mqe-export --workdir runs/x --precision int8 --calibration-data ~/tensorflow_datasets/bridge_dataset

`quantize_export(export_dir, calibration, held_out)` reads the fp32 goal_encoder/policy/distance
graphs of an export and writes goal_encoder.int8.onnx, policy.int8.onnx and distance.int8.onnx next
to them (mqe.contract.graph_file). Weights are int8 per output channel, activations uint8 per tensor
(U8S8: the x86 VNNI kernels' format), scales from MinMax calibration on frames and goals from the
training split, resized by the one preprocessing (mqe.contract.resize_for_policy). The elementwise
tail behind each graph's last Conv/MatMul/Gemm (action un-normalisation, distance -> steps) stays
fp32: one per-tensor uint8 scale across the 7 action dimensions (metres, radians, gripper) would
round the small ones away.

The int8 files carry the fp32 files' metadata and export id, plus mqe.precision=int8 and the
calibration set's fingerprint. The accuracy report (int8 vs fp32 on held-out frames from the val
split) is printed and written to int8_accuracy.json; past the thresholds below the int8 files are
removed and QuantizationRefused is raised, so a robot can never load an inaccurate int8 policy.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import tempfile
from pathlib import Path

import numpy as np
import onnx

from mqe import contract
from mqe.files import atomic_write_bytes

ACCURACY_REPORT_FILE = "int8_accuracy.json"
CALIBRATION_BATCH = 8  # images per calibration run (the graphs' batch axis is dynamic)
# Refusal thresholds (docs/inference.md: why these values).
MAX_MEAN_ACTION_ERROR_STD = 0.10  # per dimension, mean |int8 - fp32| action / the dataset's action std
MAX_ACTION_ERROR_STD = 0.50  # per dimension, worst |int8 - fp32| / std over the held-out frames
MIN_STEPS_TO_GOAL_SPEARMAN = 0.90  # rank correlation of int8 vs fp32 steps-to-goal over held-out pairs
# Ops that may stay fp32 at the end of a graph (un-normalisation, distance scaling, reductions).
_TAIL_OPS = {"Add", "Sub", "Mul", "Div", "Neg", "Tanh", "Sigmoid", "Exp", "Log", "Reshape", "Squeeze", "Unsqueeze",
             "Identity", "Cast", "Max", "Min", "ReduceMax", "ReduceMin", "ReduceMean", "ReduceSum", "Abs", "Relu",
             "Clip", "Concat", "Gather", "Slice", "Split", "Softplus", "Sqrt", "Pow", "Transpose", "Flatten"}


class QuantizationRefused(RuntimeError):
    """The int8 graphs differ from the fp32 ones past the documented thresholds."""


@dataclasses.dataclass(frozen=True)
class ImagePairs:
    """Observation/goal pairs at the model's size (uint8 [N, S, S, 3] each) and where they came from."""

    observations: np.ndarray
    goals: np.ndarray
    source: str

    def fingerprint(self) -> str:
        digest = hashlib.sha256(self.source.encode())
        digest.update(np.ascontiguousarray(self.observations).tobytes())
        digest.update(np.ascontiguousarray(self.goals).tobytes())
        return digest.hexdigest()


def bridge_pairs(dataset_dir: str | Path, camera: str, split: str, count: int, image_size: int, seed: int = 0) -> ImagePairs:
    """`count` (observation, goal) pairs from the first episodes of a Bridge split: per episode a
    random step and a later step of the same episode as its goal (how goals are sampled in training),
    both through contract.resize_for_policy."""
    from mqe.data.bridge import BadEpisodeError, BridgeSource, decode_jpeg, parse_episode

    source = BridgeSource(dataset_dir, camera)
    if split not in source.splits:
        raise ValueError(f"{source.path}: no split {split!r} for int8 calibration; it has {source.splits}")
    episodes = []
    for shard in source.shards(split):
        for item in source.iter_shard(shard):
            if isinstance(item, BadEpisodeError):
                continue  # the loader skips corrupt records the same way
            ref, payload = item
            try:
                episode = parse_episode(payload, ref, camera)
            except BadEpisodeError:
                continue
            if len(episode) >= 2:
                episodes.append(episode)
            if len(episodes) >= count:
                break
        if len(episodes) >= count:
            break
    if not episodes:
        raise ValueError(f"{source.path}: split {split!r} has no readable episode with two or more steps")
    rng = np.random.default_rng(seed)
    observations, goals = [], []
    for index in range(count):
        episode = episodes[index % len(episodes)]
        step = int(rng.integers(0, len(episode) - 1))
        goal_step = int(rng.integers(step + 1, len(episode)))
        for images, at in ((observations, step), (goals, goal_step)):
            where = f"{source.path} {episode.ref.describe()} step {at}"
            images.append(contract.resize_for_policy(decode_jpeg(episode.images[at], where), image_size, where))
    return ImagePairs(np.stack(observations), np.stack(goals), f"{source.fingerprint()}:{camera}:{split}:{count}:{seed}")


def _session(path: Path):
    from mqe.runtime import open_session

    return open_session(path, threads=1)


def _batches(array: np.ndarray):
    return [array[start:start + CALIBRATION_BATCH] for start in range(0, len(array), CALIBRATION_BATCH)]


def _run(session, outputs: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Run in calibration-sized batches and concatenate (a graph sees the batch sizes it was calibrated at)."""
    count = len(next(iter(feeds.values())))
    parts = [session.run(outputs, {name: value[start:start + CALIBRATION_BATCH] for name, value in feeds.items()})
             for start in range(0, count, CALIBRATION_BATCH)]
    return [np.concatenate([part[i] for part in parts]) for i in range(len(outputs))]


def _tail_nodes(model: onnx.ModelProto) -> list[str]:
    """Nodes between the last Conv/MatMul/Gemm and a graph output: they stay fp32."""
    producer = {output: node for node in model.graph.node for output in node.output}
    tail, pending = set(), [value.name for value in model.graph.output]
    while pending:
        node = producer.get(pending.pop())
        if node is None or node.name in tail or node.op_type not in _TAIL_OPS:
            continue
        tail.add(node.name)
        pending.extend(node.input)
    return sorted(tail)


def _quantize_graph(fp32_path: Path, int8_path: Path, feeds: list[dict[str, np.ndarray]], metadata: dict[str, str]) -> None:
    from onnxruntime.quantization import CalibrationDataReader

    class Feeds(CalibrationDataReader):
        def __init__(self):
            self._feeds = iter(feeds)

        def get_next(self):
            return next(self._feeds, None)

    root = logging.getLogger()  # the quantiser warns on the root logger per 1-D weight it keeps per-tensor
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        _quantize_to(fp32_path, int8_path, feeds, metadata, Feeds)
    finally:
        root.setLevel(level)


def _quantize_to(fp32_path, int8_path, feeds, metadata, Feeds) -> None:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory(prefix="mqe-int8-") as tmp:
        prepared, quantized = Path(tmp) / "prepared.onnx", Path(tmp) / "quantized.onnx"
        # Shape inference and constant folding first, as onnxruntime.quantization recommends.
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(quantized),
            Feeds(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            nodes_to_exclude=_tail_nodes(onnx.load(str(prepared))),
        )
        model = onnx.load(str(quantized))
    del model.metadata_props[:]
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(model)
    data = model.SerializeToString()
    atomic_write_bytes(int8_path, lambda handle: handle.write(data))


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Rank correlation (ties get the mean of their ranks)."""
    from scipy.stats import spearmanr

    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(spearmanr(a, b).statistic)


def accuracy_report(export_dir: str | Path, held_out: ImagePairs) -> dict:
    """int8 vs fp32 on held-out pairs, each precision end to end (its own goal encoder): action
    difference per dimension (mean, max, both also / action std) and steps-to-goal rank correlation."""
    export_dir = Path(export_dir)
    sessions = {precision: {name: _session(export_dir / contract.graph_file(name, precision))
                            for name in (contract.GOAL_ENCODER_FILE, contract.POLICY_FILE, contract.DISTANCE_FILE)
                            if (export_dir / contract.graph_file(name, precision)).is_file()}
                for precision in contract.PRECISIONS}
    metadata = sessions["fp32"][contract.POLICY_FILE].get_modelmeta().custom_metadata_map
    std = np.asarray(contract.ActionStats.from_json(json.loads(metadata[contract.META_ACTION_STATS])).std, np.float32)
    actions, steps = {}, {}
    for precision, graphs in sessions.items():
        has_distance = contract.DISTANCE_FILE in graphs
        goal_outputs = [contract.ACTOR_GOAL_FEATURES] + ([contract.CRITIC_GOAL_EMBEDDING] if has_distance else [])
        encoded = _run(graphs[contract.GOAL_ENCODER_FILE], goal_outputs, {contract.GOAL_IMAGE: held_out.goals})
        (actions[precision],) = _run(graphs[contract.POLICY_FILE], [contract.ACTION],
                                     {contract.OBSERVATION_IMAGE: held_out.observations, contract.ACTOR_GOAL_FEATURES: encoded[0]})
        if has_distance:
            (steps[precision],) = _run(graphs[contract.DISTANCE_FILE], [contract.STEPS_TO_GOAL],
                                       {contract.OBSERVATION_IMAGE: held_out.observations, contract.CRITIC_GOAL_EMBEDDING: encoded[1]})
    error = np.abs(actions["int8"] - actions["fp32"])
    report = {
        "held_out_pairs": int(len(held_out.observations)),
        "held_out_source": held_out.source,
        "action_names": list(contract.ACTION_NAMES),
        "action_std": std.tolist(),
        "action_error_mean": error.mean(0).tolist(),
        "action_error_max": error.max(0).tolist(),
        "action_error_mean_over_std": (error.mean(0) / std).tolist(),
        "action_error_max_over_std": (error.max(0) / std).tolist(),
        "steps_to_goal_spearman": _spearman(steps["fp32"], steps["int8"]) if "int8" in steps else None,
        "thresholds": {"max_mean_action_error_std": MAX_MEAN_ACTION_ERROR_STD, "max_action_error_std": MAX_ACTION_ERROR_STD,
                       "min_steps_to_goal_spearman": MIN_STEPS_TO_GOAL_SPEARMAN},
    }
    failures = [f"{name}: mean |int8 - fp32| {value:.3f} std > {MAX_MEAN_ACTION_ERROR_STD}"
                for name, value in zip(contract.ACTION_NAMES, report["action_error_mean_over_std"]) if not value <= MAX_MEAN_ACTION_ERROR_STD]
    failures += [f"{name}: max |int8 - fp32| {value:.3f} std > {MAX_ACTION_ERROR_STD}"
                 for name, value in zip(contract.ACTION_NAMES, report["action_error_max_over_std"]) if not value <= MAX_ACTION_ERROR_STD]
    rho = report["steps_to_goal_spearman"]
    if rho is not None and not rho >= MIN_STEPS_TO_GOAL_SPEARMAN:  # NaN (constant steps) fails too
        failures.append(f"steps-to-goal Spearman {rho:.3f} < {MIN_STEPS_TO_GOAL_SPEARMAN}")
    report["failures"] = failures
    report["accepted"] = not failures
    return report


def format_report(report: dict) -> str:
    lines = [f"int8 vs fp32 on {report['held_out_pairs']} held-out pairs ({report['held_out_source']}):", "",
             "| action | std | mean abs diff | max abs diff | mean / std | max / std |", "|---|---|---|---|---|---|"]
    for i, name in enumerate(report["action_names"]):
        lines.append(f"| {name} | {report['action_std'][i]:.4g} | {report['action_error_mean'][i]:.3g} | {report['action_error_max'][i]:.3g} "
                     f"| {report['action_error_mean_over_std'][i]:.4f} | {report['action_error_max_over_std'][i]:.4f} |")
    rho = report["steps_to_goal_spearman"]
    lines += ["", f"steps-to-goal Spearman int8 vs fp32: {'no distance graph' if rho is None else f'{rho:.4f}'}",
              f"thresholds: mean/std <= {MAX_MEAN_ACTION_ERROR_STD}, max/std <= {MAX_ACTION_ERROR_STD}, "
              f"Spearman >= {MIN_STEPS_TO_GOAL_SPEARMAN}: " + ("accepted" if report["accepted"] else "REFUSED: " + "; ".join(report["failures"]))]
    return "\n".join(lines)


def quantize_export(export_dir: str | Path, calibration: ImagePairs, held_out: ImagePairs, print_report=print,
                    refuse: bool = True) -> dict:
    """Write the int8 graphs of an fp32 export, check them against fp32 on `held_out`, keep the
    report (int8_accuracy.json). Returns the report; raises QuantizationRefused (and removes the int8
    files) when it is past the thresholds, unless `refuse` is False (latency benchmarks of random-init
    exports, whose accuracy means nothing; their report says accepted false all the same)."""
    export_dir = Path(export_dir)
    files = [name for name in (contract.GOAL_ENCODER_FILE, contract.POLICY_FILE, contract.DISTANCE_FILE) if (export_dir / name).is_file()]
    for name in (contract.GOAL_ENCODER_FILE, contract.POLICY_FILE):
        if name not in files:
            raise contract.PolicyArtifactError(f"{export_dir / name}: missing; int8 graphs are made from an fp32 export")
    fingerprint = calibration.fingerprint()
    goal_session = _session(export_dir / contract.GOAL_ENCODER_FILE)
    goal_outputs = [output.name for output in goal_session.get_outputs()]
    encoded = dict(zip(goal_outputs, _run(goal_session, goal_outputs, {contract.GOAL_IMAGE: calibration.goals})))
    feeds = {
        contract.GOAL_ENCODER_FILE: {contract.GOAL_IMAGE: calibration.goals},
        contract.POLICY_FILE: {contract.OBSERVATION_IMAGE: calibration.observations,
                               contract.ACTOR_GOAL_FEATURES: encoded[contract.ACTOR_GOAL_FEATURES]},
        contract.DISTANCE_FILE: {contract.OBSERVATION_IMAGE: calibration.observations,
                                 contract.CRITIC_GOAL_EMBEDDING: encoded.get(contract.CRITIC_GOAL_EMBEDDING)},
    }
    for name in files:
        metadata = {entry.key: entry.value for entry in onnx.load(str(export_dir / name), load_external_data=False).metadata_props}
        metadata.update({contract.META_PRECISION: "int8", contract.META_CALIBRATION_FINGERPRINT: fingerprint})
        batches = [dict(zip(feeds[name], values)) for values in zip(*(_batches(value) for value in feeds[name].values()))]
        _quantize_graph(export_dir / name, export_dir / contract.graph_file(name, "int8"), batches, metadata)
    stale = export_dir / contract.graph_file(contract.DISTANCE_FILE, "int8")
    if contract.DISTANCE_FILE not in files:
        stale.unlink(missing_ok=True)  # from an earlier export with a critic
    report = accuracy_report(export_dir, held_out)
    report["calibration_fingerprint"] = fingerprint
    report["calibration_pairs"] = int(len(calibration.observations))
    report["calibration_source"] = calibration.source
    data = (json.dumps(report, indent=2) + "\n").encode()
    atomic_write_bytes(export_dir / ACCURACY_REPORT_FILE, lambda handle: handle.write(data))
    print_report(format_report(report))
    if refuse and not report["accepted"]:
        for name in files:
            (export_dir / contract.graph_file(name, "int8")).unlink(missing_ok=True)
        raise QuantizationRefused(
            f"{export_dir}: int8 graphs refused and removed ({'; '.join(report['failures'])}); "
            f"the fp32 graphs are kept; report in {export_dir / ACCURACY_REPORT_FILE}"
        )
    return report
