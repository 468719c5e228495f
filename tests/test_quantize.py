"""mqe-export --precision int8 on a tiny agent: calibration pairs read back from real TFDS files,
int8 graphs beside the fp32 ones, the accuracy report and its refusal, the contract's validation of
precision and calibration fingerprint, and the runtime's precision and provider selection."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from mqe import contract, quantize
from mqe.data.synthetic import make_synthetic_dataset
from mqe.runtime import OnnxPolicy, ProviderUnavailableError, check_provider
from test_export import SIZE, _export, small_mqe_agent
from test_runtime import set_metadata

INT8_FILES = [contract.graph_file(name, "int8") for name in (contract.GOAL_ENCODER_FILE, contract.POLICY_FILE, contract.DISTANCE_FILE)]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    # 64 px frames: resize_for_policy squashes them to the model's 32 px, as it does 640x480 camera frames.
    return make_synthetic_dataset(tmp_path_factory.mktemp("bridge"), episodes=10, steps=6, seed=0, image_size=64, val_episodes=3)


@pytest.fixture(scope="module")
def int8_export(tmp_path_factory, dataset):
    torch.manual_seed(0)
    out_dir = _export(small_mqe_agent(), tmp_path_factory.mktemp("policy"))
    calibration = quantize.bridge_pairs(dataset, "image_0", "train", 24, SIZE)
    held_out = quantize.bridge_pairs(dataset, "image_0", "val", 16, SIZE, seed=1)
    printed = []
    report = quantize.quantize_export(out_dir, calibration, held_out, print_report=printed.append)
    return out_dir, calibration, held_out, report, printed[0]


def test_calibration_pairs_come_from_the_split_through_the_one_resize(dataset):
    pairs = quantize.bridge_pairs(dataset, "image_0", "train", 12, SIZE)
    assert pairs.observations.shape == pairs.goals.shape == (12, SIZE, SIZE, 3)
    assert pairs.observations.dtype == np.uint8
    assert pairs.fingerprint() == quantize.bridge_pairs(dataset, "image_0", "train", 12, SIZE).fingerprint()
    assert pairs.fingerprint() != quantize.bridge_pairs(dataset, "image_0", "val", 12, SIZE).fingerprint()
    with pytest.raises(ValueError, match="no split 'test'"):
        quantize.bridge_pairs(dataset, "image_0", "test", 4, SIZE)


def test_int8_graphs_sit_beside_fp32_with_precision_and_fingerprint(int8_export):
    out_dir, calibration, _, report, _ = int8_export
    fp32_ids = set()
    for name in (contract.GOAL_ENCODER_FILE, contract.POLICY_FILE, contract.DISTANCE_FILE):
        fp32 = {p.key: p.value for p in onnx.load(str(out_dir / name)).metadata_props}
        int8_model = onnx.load(str(out_dir / contract.graph_file(name, "int8")))
        int8 = {p.key: p.value for p in int8_model.metadata_props}
        assert contract.check_policy_metadata(fp32, name, fp32[contract.META_ROLE])["precision"] == "fp32"
        parsed = contract.check_policy_metadata(int8, name, fp32[contract.META_ROLE])
        assert parsed["precision"] == "int8" and parsed["calibration_fingerprint"] == calibration.fingerprint()
        assert int8[contract.META_EXPORT_ID] == fp32[contract.META_EXPORT_ID]
        fp32_ids.add(fp32[contract.META_EXPORT_ID])
        ops = {node.op_type for node in int8_model.graph.node}
        assert {"QuantizeLinear", "DequantizeLinear"} <= ops, f"{name}: not QDQ-quantised ({sorted(ops)})"
        # per-channel weights: some DequantizeLinear carries a vector of scales
        initialisers = {t.name: t for t in int8_model.graph.initializer}
        scales = [initialisers[node.input[1]] for node in int8_model.graph.node
                  if node.op_type == "DequantizeLinear" and node.input[1] in initialisers]
        assert any(len(scale.dims) == 1 and scale.dims[0] > 1 for scale in scales), f"{name}: no per-channel weight scales"
    assert len(fp32_ids) == 1
    assert report["calibration_fingerprint"] == calibration.fingerprint()


def test_accuracy_report_is_printed_and_kept(int8_export):
    out_dir, _, held_out, report, printed = int8_export
    kept = json.loads((out_dir / quantize.ACCURACY_REPORT_FILE).read_text())
    assert kept == json.loads(json.dumps(report))
    assert kept["accepted"] and kept["held_out_pairs"] == len(held_out.observations)
    assert len(kept["action_error_mean_over_std"]) == contract.ACTION_DIM
    assert all(0 <= m <= x for m, x in zip(kept["action_error_mean"], kept["action_error_max"]))
    assert 0.9 <= kept["steps_to_goal_spearman"] <= 1.0
    assert "| dx |" in printed and "Spearman" in printed and "accepted" in printed
    # The report's numbers are the runtime's: recompute the first held-out action both ways.
    fp32, int8 = OnnxPolicy(out_dir, threads=1), OnnxPolicy(out_dir, threads=1, precision="int8")
    for policy in (fp32, int8):
        policy.set_goal(held_out.goals[0])
    difference = np.abs(fp32.act(held_out.observations[0]) - int8.act(held_out.observations[0]))
    assert np.all(difference <= np.asarray(kept["action_error_max"]) + 1e-6)


def test_runtime_selects_precision_and_refuses_mixtures(int8_export, tmp_path):
    out_dir, calibration, held_out, _, _ = int8_export
    int8 = OnnxPolicy(out_dir, threads=1, precision="int8")
    assert int8.precision == "int8" and int8.provider == "cpu"
    assert int8.metadata["calibration_fingerprint"] == calibration.fingerprint()
    assert all(".int8.onnx" in path for path in int8.metadata["files"])
    assert all(".int8." not in path for path in OnnxPolicy(out_dir, threads=1).metadata["files"])
    int8.set_goal(held_out.goals[0])
    assert int8.probe(held_out.observations[0]).shape == (contract.ACTION_DIM,)

    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for name in [contract.GOAL_ENCODER_FILE, contract.POLICY_FILE, contract.DISTANCE_FILE, *INT8_FILES]:
        (mixed / name).write_bytes((out_dir / name).read_bytes())
    # an fp32 graph under an int8 name is refused, naming the file
    (mixed / INT8_FILES[1]).write_bytes((out_dir / contract.POLICY_FILE).read_bytes())
    with pytest.raises(contract.PolicyArtifactError, match=r"policy\.int8\.onnx: .*fp32"):
        OnnxPolicy(mixed, threads=1, precision="int8")
    # int8 graphs of two calibrations are refused as a mixture
    (mixed / INT8_FILES[1]).write_bytes((out_dir / INT8_FILES[1]).read_bytes())
    set_metadata(mixed / INT8_FILES[1], **{contract.META_CALIBRATION_FINGERPRINT: "another-calibration"})
    with pytest.raises(contract.PolicyArtifactError, match="calibration_fingerprint .* differs"):
        OnnxPolicy(mixed, threads=1, precision="int8")
    # an export without int8 graphs says how to make them
    for name in INT8_FILES:
        (mixed / name).unlink()
    with pytest.raises(contract.PolicyArtifactError, match="goal_encoder.int8.onnx: missing .*--precision int8"):
        OnnxPolicy(mixed, threads=1, precision="int8")
    with pytest.raises(ValueError, match="precision 'fp16'"):
        OnnxPolicy(mixed, threads=1, precision="fp16")


@pytest.mark.parametrize(
    "values, expected",
    [
        ({contract.META_PRECISION: "fp16"}, "mqe.precision is 'fp16'"),
        ({contract.META_PRECISION: "int8"}, "int8 graph without metadata mqe.calibration_fingerprint"),
        ({contract.META_CALIBRATION_FINGERPRINT: "abc"}, "fp32 graph carries mqe.calibration_fingerprint"),
    ],
)
def test_contract_validates_precision_and_fingerprint(int8_export, values, expected):
    out_dir = int8_export[0]
    metadata = {p.key: p.value for p in onnx.load(str(out_dir / contract.POLICY_FILE)).metadata_props}
    metadata.update(values)
    with pytest.raises(contract.PolicyArtifactError, match=expected):
        contract.check_policy_metadata(metadata, "policy.onnx", "policy")


def test_int8_calibrated_on_the_wrong_frames_is_refused_and_removed(tmp_path, dataset):
    """Calibrated on black frames the activation ranges are near zero, so real frames saturate:
    the report is past the thresholds, the int8 files are removed, fp32 stays loadable."""
    torch.manual_seed(0)
    out_dir = _export(small_mqe_agent(), tmp_path / "policy")
    black = np.zeros((16, SIZE, SIZE, 3), np.uint8)
    calibration = quantize.ImagePairs(black, black, "black frames")
    held_out = quantize.bridge_pairs(dataset, "image_0", "val", 16, SIZE, seed=1)
    printed = []
    with pytest.raises(quantize.QuantizationRefused, match="int8 graphs refused and removed") as caught:
        quantize.quantize_export(out_dir, calibration, held_out, print_report=printed.append)
    assert "\n" not in str(caught.value)
    assert "REFUSED" in printed[0]
    assert not json.loads((out_dir / quantize.ACCURACY_REPORT_FILE).read_text())["accepted"]
    assert not any((out_dir / name).exists() for name in INT8_FILES)
    OnnxPolicy(out_dir, threads=1)
    # A latency benchmark of random weights keeps them (refuse=False), its report still says not accepted.
    report = quantize.quantize_export(out_dir, calibration, held_out, print_report=printed.append, refuse=False)
    assert not report["accepted"] and all((out_dir / name).exists() for name in INT8_FILES)


def test_unavailable_provider_is_one_line_and_never_a_fallback(int8_export):
    out_dir = int8_export[0]
    assert check_provider("cpu") == "CPUExecutionProvider"
    missing = [name for name, ep in (("openvino", "OpenVINOExecutionProvider"), ("cuda", "CUDAExecutionProvider"),
                                     ("tensorrt", "TensorrtExecutionProvider")) if ep not in ort.get_available_providers()]
    assert missing, "this test needs a provider this onnxruntime lacks"
    for provider in missing + ["npu"]:
        with pytest.raises(ProviderUnavailableError) as caught:
            OnnxPolicy(out_dir, threads=1, provider=provider)
        message = str(caught.value)
        assert "\n" not in message and f"provider {provider!r}" in message
        assert ("install onnxruntime-" in message) if provider != "npu" else ("expected one of" in message)


def test_policy_node_refuses_an_unavailable_provider_or_missing_int8_with_one_line(int8_export, tmp_path):
    from test_system import run_refusal, write_goal

    out_dir = int8_export[0]
    goal = write_goal(tmp_path / "goal.png")
    fp32_only = tmp_path / "fp32_only"
    fp32_only.mkdir()
    for name in (contract.GOAL_ENCODER_FILE, contract.POLICY_FILE, contract.DISTANCE_FILE):
        (fp32_only / name).write_bytes((out_dir / name).read_bytes())
    cases = [
        (("provider:=openvino",), f"policy: refusing to start: provider 'openvino': OpenVINOExecutionProvider is not in this onnxruntime"),
        (("precision:=int8",), "goal_encoder.int8.onnx: missing"),
    ]
    for extra, expected in cases:
        if "openvino" in extra[0] and "OpenVINOExecutionProvider" in ort.get_available_providers():
            continue
        args = [word for parameter in (f"model:={fp32_only}", f"goal:={goal}", *extra) for word in ("-p", parameter)]
        code, lines = run_refusal(*args)
        assert code == 2 and len(lines) == 1 and expected in lines[0], lines


def test_policy_node_runs_int8_and_reports_precision_and_provider_in_diagnostics(int8_export, tmp_path):
    import subprocess
    import sys
    import time

    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from mqe_policy import topics
    from test_system import write_goal

    goal = write_goal(tmp_path / "goal.png")
    node = subprocess.Popen([sys.executable, "-m", "mqe_policy.policy_node", "--ros-args", "-p", f"model:={int8_export[0]}",
                             "-p", f"goal:={goal}", "-p", "precision:=int8", "-p", "threads:=1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        listener = rclpy.create_node("diagnostics_listener", context=context)
        received = []
        listener.create_subscription(DiagnosticArray, topics.DIAGNOSTICS, received.append, 10)
        executor = rclpy.executors.SingleThreadedExecutor(context=context)
        executor.add_node(listener)
        deadline = time.monotonic() + 60
        while not received and time.monotonic() < deadline and node.poll() is None:
            executor.spin_once(timeout_sec=0.2)
        assert received, f"no /diagnostics from the int8 policy node: {node.poll()} {node.stderr.read() if node.poll() is not None else ''}"
        values = {kv.key: kv.value for kv in received[0].status[0].values}
        assert values["precision"] == "int8" and values["provider"] == "cpu"
        assert received[0].status[0].hardware_id == str(int8_export[0])
    finally:
        node.terminate()
        node.wait(timeout=15)
        rclpy.try_shutdown(context=context)
