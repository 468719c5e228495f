"""The synthetic tabletop renderer shared by the synthetic dataset and the ROS sim camera."""

import subprocess
import sys

import numpy as np
import pytest

from mqe.synthetic_scene import WORKSPACE_HIGH, WORKSPACE_LOW, project, render_tabletop

CENTRE = [0.28, 0.05, 0.02]


def test_image_format_and_determinism():
    image = render_tabletop(CENTRE, 1.0, image_size=96, scene_seed=3)
    assert image.dtype == np.uint8 and image.shape == (96, 96, 3)
    assert np.array_equal(image, render_tabletop(CENTRE, 1.0, image_size=96, scene_seed=3))
    assert image.std() > 10  # not a blank frame


def _marker_centroid(image, other):
    changed = np.abs(image.astype(int) - other.astype(int)).sum(axis=2) > 30
    rows, cols = np.nonzero(changed)
    return rows.mean(), cols.mean()


def test_end_effector_position_moves_the_marker_the_right_way():
    reference = render_tabletop([0.10, -0.15, -0.10], 1.0, 128)  # marker in a corner, away from the others
    near = render_tabletop([0.15, 0.05, 0.0], 1.0, 128)
    far = render_tabletop([0.40, 0.05, 0.0], 1.0, 128)
    left = render_tabletop([0.15, 0.20, 0.0], 1.0, 128)
    near_row, near_col = _marker_centroid(near, reference)
    far_row, _ = _marker_centroid(far, reference)
    _, left_col = _marker_centroid(left, reference)
    assert far_row < near_row - 10  # farther from the robot = higher in the image
    assert left_col < near_col - 10  # +y (robot's left) = left in the image


def test_height_and_gripper_are_visible():
    low = render_tabletop([0.28, 0.05, -0.08], 1.0, 128)
    high = render_tabletop([0.28, 0.05, 0.16], 1.0, 128)
    assert np.abs(low.astype(int) - high.astype(int)).sum(axis=2).astype(bool).sum() > 100
    column, low_row, low_scale = project(0.28, 0.05, -0.08, 128)
    _, high_row, high_scale = project(0.28, 0.05, 0.16, 128)
    assert high_row < low_row and high_scale > low_scale  # raised = higher in the image and larger
    opened = render_tabletop(CENTRE, 1.0, 128)
    closed = render_tabletop(CENTRE, 0.0, 128)
    assert np.abs(opened.astype(int) - closed.astype(int)).sum(axis=2).astype(bool).sum() > 20


def test_scene_seed_changes_the_layout_and_poses_outside_are_clipped():
    assert not np.array_equal(render_tabletop(CENTRE, 1.0, 64, 0), render_tabletop(CENTRE, 1.0, 64, 1))
    outside = render_tabletop(WORKSPACE_HIGH + 0.5, 1.0, 64)
    assert np.array_equal(outside, render_tabletop(WORKSPACE_HIGH, 1.0, 64))
    assert np.array_equal(render_tabletop(WORKSPACE_LOW - 1, 0.0, 64), render_tabletop(WORKSPACE_LOW, 0.0, 64))


@pytest.mark.parametrize("bad", [[0.3, 0.0], [np.nan, 0.0, 0.0]])
def test_bad_pose_is_refused(bad):
    with pytest.raises(ValueError, match="ee_xyz"):
        render_tabletop(bad, 1.0)


def test_importable_without_tensorflow_or_torch():
    code = ("import sys, mqe.synthetic_scene as s; s.render_tabletop([0.3, 0, 0], 1.0, 32); "
            "bad = [m for m in ('tensorflow', 'torch') if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
