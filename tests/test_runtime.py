"""mqe.runtime: refusals of bad exports and bad goal images, one clear line each, on real exports."""

from __future__ import annotations

import cv2
import numpy as np
import onnx
import pytest

from mqe import contract
from mqe.runtime import GoalImageError, NonFiniteOutputError, OnnxPolicy, load_goal_image
from test_policy_artifacts import copy_export, random_image


def set_metadata(path, **values):
    model = onnx.load(str(path))
    props = {entry.key: entry.value for entry in model.metadata_props}
    props.update(values)
    del model.metadata_props[:]
    for key, value in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(path))


def refusal(artifact_dir) -> str:
    with pytest.raises(contract.PolicyArtifactError) as caught:
        OnnxPolicy(artifact_dir, threads=1)
    message = str(caught.value)
    assert "\n" not in message, "refusals are one line"
    return message


@pytest.fixture
def export(tmp_path):
    return copy_export("mqe", tmp_path / "export")


def test_missing_directory_and_files(tmp_path, export):
    assert "no such policy directory" in refusal(tmp_path / "nowhere")
    (export / contract.POLICY_FILE).unlink()
    message = refusal(export)
    assert str(export / contract.POLICY_FILE) in message and "missing" in message


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty"])
def test_corrupt_file_is_refused_naming_it(export, damage):
    path = export / contract.GOAL_ENCODER_FILE
    data = path.read_bytes()
    path.write_bytes({"garbage": b"\x00not an onnx model" * 64, "truncated": data[: len(data) // 2], "empty": b""}[damage])
    message = refusal(export)
    assert str(path) in message and "not a loadable ONNX model" in message


@pytest.mark.parametrize(
    "file_name, values, expected",
    [
        (contract.POLICY_FILE, {contract.META_FORMAT_VERSION: "2"}, "format version 2"),
        (contract.GOAL_ENCODER_FILE, {contract.META_ACTION_DIM: "6"}, "action is 6-D"),
        (contract.POLICY_FILE, {contract.META_IMAGE_SIZE: "8"}, "image size 8 is outside"),
        (contract.DISTANCE_FILE, {contract.META_IMAGE_SIZE: "64"}, "image_size 64 differs"),
        (contract.DISTANCE_FILE, {contract.META_EXPORT_ID: "another-export"}, "different exports"),
        (contract.POLICY_FILE, {contract.META_ROLE: "distance"}, "expected 'policy'"),
        (contract.POLICY_FILE, {contract.META_GAMMA: "one"}, "unreadable metadata"),
    ],
)
def test_mismatched_metadata_is_refused_naming_the_file(export, file_name, values, expected):
    set_metadata(export / file_name, **values)
    message = refusal(export)
    assert str(export / file_name) in message and expected in message


def test_file_without_export_metadata_is_refused(export):
    path = export / contract.POLICY_FILE
    model = onnx.load(str(path))
    del model.metadata_props[:]
    onnx.save(model, str(path))
    assert "missing metadata" in refusal(export)


def test_export_without_distance_graph_has_no_steps(export):
    (export / contract.DISTANCE_FILE).unlink()
    policy = OnnxPolicy(export, threads=1)
    rng = np.random.default_rng(0)
    policy.set_goal(random_image(rng))
    assert not policy.has_distance and policy.steps_to_goal(random_image(rng)) is None
    assert np.all(np.isfinite(policy.act(random_image(rng))))


def test_non_finite_outputs_raise_instead_of_returning(tmp_path, export):
    nan_export = copy_export("nan", tmp_path / "nan")
    with pytest.raises(NonFiniteOutputError, match="non-finite"):
        nan_policy = OnnxPolicy(nan_export, threads=1)
        nan_policy.set_goal(np.zeros((32, 32, 3), np.uint8))
    # A finite goal encoder with a NaN policy graph: act() raises, never returns NaN.
    export_id = onnx.load(str(export / contract.POLICY_FILE)).metadata_props
    export_id = {entry.key: entry.value for entry in export_id}[contract.META_EXPORT_ID]
    (export / contract.POLICY_FILE).write_bytes((nan_export / contract.POLICY_FILE).read_bytes())
    set_metadata(export / contract.POLICY_FILE, **{contract.META_EXPORT_ID: export_id})
    policy = OnnxPolicy(export, threads=1)
    policy.set_goal(np.zeros((32, 32, 3), np.uint8))
    with pytest.raises(NonFiniteOutputError, match="non-finite action"):
        policy.act(np.zeros((32, 32, 3), np.uint8))


def test_bad_observation_is_a_value_error(export):
    policy = OnnxPolicy(export, threads=1)
    policy.set_goal(np.zeros((32, 32, 3), np.uint8))
    with pytest.raises(ValueError, match="observation"):
        policy.act(np.zeros((32, 32), np.uint8))


def test_goal_image_loading_and_refusals(tmp_path):
    rgb = random_image(np.random.default_rng(0))
    good = tmp_path / "goal.png"
    cv2.imwrite(str(good), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    np.testing.assert_array_equal(load_goal_image(good), rgb)  # RGB order, lossless

    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "notes.png").write_text("this is not an image")
    (tmp_path / "folder.png").mkdir()
    for name, expected in [
        ("missing.png", "no such file"),
        ("empty.png", "file is empty"),
        ("notes.png", "not a readable image"),
        ("folder.png", "not a file"),
    ]:
        with pytest.raises(GoalImageError) as caught:
            load_goal_image(tmp_path / name)
        assert str(tmp_path / name) in str(caught.value) and expected in str(caught.value)
        assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    "values, expected",
    [
        ({contract.META_ACTION_SEMANTICS: "[]"}, "expected a JSON object"),
        ({contract.META_ACTION_SEMANTICS: "null"}, "expected a JSON object"),
        ({contract.META_CONTROL_RATE_HZ: "nan"}, "control_rate_hz is nan; expected a positive, finite rate"),
        ({contract.META_CONTROL_RATE_HZ: "0"}, "control_rate_hz is 0.0; expected a positive, finite rate"),
        ({contract.META_CONTROL_RATE_HZ: "inf"}, "expected a positive, finite rate"),
    ],
)
def test_invalid_metadata_values_are_refused_not_crashed_on(export, values, expected):
    set_metadata(export / contract.POLICY_FILE, **values)
    message = refusal(export)
    assert str(export / contract.POLICY_FILE) in message and expected in message


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR declares width x height (8-bit RGB) with almost no pixel data: the decoder
    must refuse it from the header, as OpenCV does past CV_IO_MAX_IMAGE_PIXELS (2^30)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b"")


def test_bad_goal_images_are_refused_with_one_line(tmp_path):
    rng = np.random.default_rng(1)
    (tmp_path / "huge.png").write_bytes(png_header_only(40000, 40000))
    cv2.imwrite(str(tmp_path / "tiny.png"), np.full((1, 1, 3), 128, np.uint8))
    cv2.imwrite(str(tmp_path / "narrow.png"), rng.integers(0, 256, (480, 16, 3), dtype=np.uint8))
    cv2.imwrite(str(tmp_path / "gray.png"), rng.integers(0, 256, (64, 64), dtype=np.uint8))
    rgba = rng.integers(0, 256, (64, 64, 4), dtype=np.uint8)
    rgba[..., 3] = 255
    rgba[:8, :8, 3] = 0  # a transparent corner
    cv2.imwrite(str(tmp_path / "transparent.png"), rgba)
    for name, expected in [
        ("huge.png", "cannot be decoded"),
        ("tiny.png", "1x1 px is too small for a goal (at least 32x32"),
        ("narrow.png", "16x480 px is too small"),
        ("gray.png", "grayscale; expected a colour (RGB) image"),
        ("transparent.png", "has transparent pixels"),
    ]:
        with pytest.raises(GoalImageError) as caught:
            load_goal_image(tmp_path / name)
        message = str(caught.value)
        assert str(tmp_path / name) in message and expected in message, message
        assert "\n" not in message


def test_opaque_rgba_and_16_bit_goals_are_read_as_the_rgb_they_show(tmp_path):
    rng = np.random.default_rng(2)
    bgra = rng.integers(0, 256, (48, 64, 4), dtype=np.uint8)
    bgra[..., 3] = 255
    cv2.imwrite(str(tmp_path / "opaque.png"), bgra)
    np.testing.assert_array_equal(load_goal_image(tmp_path / "opaque.png"), bgra[..., 2::-1])
    deep = rng.integers(0, 65536, (40, 40, 3), dtype=np.uint16)
    cv2.imwrite(str(tmp_path / "deep.png"), deep)
    np.testing.assert_array_equal(load_goal_image(tmp_path / "deep.png"), (deep[..., ::-1] // 257).astype(np.uint8))


def truncate_action(path, keep: int) -> None:
    """Rewrite policy.onnx so its `action` output is the first `keep` values of the real one."""
    from onnx import helper

    model = onnx.load(str(path))
    graph = model.graph
    for node in graph.node:
        node.output[:] = ["action_full" if name == contract.ACTION else name for name in node.output]
    for name, value in (("slice_starts", 0), ("slice_ends", keep), ("slice_axes", 1)):
        graph.initializer.append(helper.make_tensor(name, onnx.TensorProto.INT64, [1], [value]))
    graph.node.append(helper.make_node("Slice", ["action_full", "slice_starts", "slice_ends", "slice_axes"], [contract.ACTION]))
    (output,) = [o for o in graph.output if o.name == contract.ACTION]
    output.type.tensor_type.shape.dim[1].dim_value = keep
    onnx.save(model, str(path))


def test_probe_refuses_a_graph_whose_action_does_not_match_its_metadata(export):
    truncate_action(export / contract.POLICY_FILE, keep=6)  # metadata still says 7-D
    policy = OnnxPolicy(export, threads=1)
    policy.set_goal(random_image(np.random.default_rng(0)))
    with pytest.raises(contract.PolicyArtifactError) as caught:
        policy.probe(random_image(np.random.default_rng(1)))
    message = str(caught.value)
    assert str(export / contract.POLICY_FILE) in message
    assert "probe inference failed: policy produced an action of shape (6,), expected (7,)" in message
    assert "non-finite" not in message


def test_probe_refuses_a_nan_policy_graph_and_passes_a_good_one(tmp_path, export):
    good = OnnxPolicy(export, threads=1)
    good.set_goal(random_image(np.random.default_rng(0)))
    assert good.probe(random_image(np.random.default_rng(1))).shape == (contract.ACTION_DIM,)
    nan_export = copy_export("nan", tmp_path / "nan")
    export_id = {e.key: e.value for e in onnx.load(str(export / contract.POLICY_FILE)).metadata_props}[contract.META_EXPORT_ID]
    (export / contract.POLICY_FILE).write_bytes((nan_export / contract.POLICY_FILE).read_bytes())
    set_metadata(export / contract.POLICY_FILE, **{contract.META_EXPORT_ID: export_id})
    policy = OnnxPolicy(export, threads=1)
    policy.set_goal(random_image(np.random.default_rng(0)))
    with pytest.raises(contract.PolicyArtifactError, match="probe inference failed: policy produced a non-finite action"):
        policy.probe(random_image(np.random.default_rng(1)))


def nan_on_uniform_observations(path, value: int) -> None:
    """Rewrite policy.onnx so its action is NaN exactly when every observation pixel equals `value`
    (action * (m - value) / (m - value), m the mean pixel): a graph that passes the start-up probe on
    a varied goal image and fails on some frames at run time."""
    from onnx import helper

    model = onnx.load(str(path))
    graph = model.graph
    for node in graph.node:
        node.output[:] = ["action_full" if name == contract.ACTION else name for name in node.output]
    graph.initializer.append(helper.make_tensor("uniform_value", onnx.TensorProto.FLOAT, [], [float(value)]))
    graph.node.extend([
        helper.make_node("Cast", [contract.OBSERVATION_IMAGE], ["observation_float"], to=onnx.TensorProto.FLOAT),
        helper.make_node("ReduceMean", ["observation_float"], ["observation_mean"], keepdims=0),
        helper.make_node("Sub", ["observation_mean", "uniform_value"], ["observation_offset"]),
        helper.make_node("Div", ["observation_offset", "observation_offset"], ["one_or_nan"]),
        helper.make_node("Mul", ["action_full", "one_or_nan"], [contract.ACTION]),
    ])
    onnx.save(model, str(path))


def test_a_graph_can_pass_the_probe_and_fail_on_some_frames(export):
    nan_on_uniform_observations(export / contract.POLICY_FILE, 100)
    policy = OnnxPolicy(export, threads=1)
    policy.set_goal(random_image(np.random.default_rng(0)))
    policy.probe(random_image(np.random.default_rng(1)))
    with pytest.raises(NonFiniteOutputError, match="non-finite action"):
        policy.act(np.full((48, 48, 3), 100, np.uint8))
