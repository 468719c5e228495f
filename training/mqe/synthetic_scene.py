"""A plain synthetic tabletop seen by a fixed oblique camera, rendered with numpy + OpenCV only.

The synthetic Bridge-format dataset (mqe.data.synthetic) and the simulated camera of the ROS stack
both render with `render_tabletop`, so a policy trained on synthetic data can be closed-loop tested
in simulation. It must stay importable without TensorFlow or torch (the ROS camera node imports it).

Picture: a wooden table seen from behind and above the robot (x forward = up in the image, y left =
left in the image, farther rows narrower), a few coloured objects placed by `scene_seed`, and the
end-effector as a two-finger marker floating above its shadow. Height z lifts the marker away from
its shadow and makes it larger; the fingers are spread when the gripper is open.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np

from mqe import robot

# WidowX 250 workspace shown by the camera (metres, robot base frame); matches the arm's default
# workspace clip so every reachable pose is visible.
WORKSPACE_LOW = np.array(robot.WORKSPACE_LOW)
WORKSPACE_HIGH = np.array(robot.WORKSPACE_HIGH)
TABLE_Z = WORKSPACE_LOW[2]  # the table surface is the lowest reachable height

_NUM_OBJECTS = 4
_OBJECT_COLOURS = np.array(  # RGB, distinct under JPEG compression
    [[220, 40, 40], [40, 90, 220], [240, 200, 30], [40, 170, 70], [150, 60, 190], [250, 130, 20]], np.uint8
)


def project(x: float, y: float, z: float, image_size: int) -> tuple[float, float, float]:
    """Map a base-frame point to (column, row, scale) in the image; scale > 1 for nearer/higher points."""
    depth = (x - WORKSPACE_LOW[0]) / (WORKSPACE_HIGH[0] - WORKSPACE_LOW[0])  # 0 near .. 1 far
    lateral = (y - WORKSPACE_LOW[1]) / (WORKSPACE_HIGH[1] - WORKSPACE_LOW[1])  # 0 right .. 1 left
    height = (z - TABLE_Z) / (WORKSPACE_HIGH[2] - TABLE_Z)  # 0 on the table .. 1 at the top
    perspective = 1.0 - 0.3 * depth  # far rows are narrower
    column = image_size * (0.5 + (0.5 - lateral) * 0.8 * perspective)
    row = image_size * (0.88 - 0.62 * depth - 0.22 * height)
    return column, row, perspective * (1.0 + 0.6 * height)


@functools.lru_cache(maxsize=8)
def _background(image_size: int, scene_seed: int) -> np.ndarray:
    """The static part of the scene (table, wood grain, objects); cached because it never changes."""
    rng = np.random.default_rng(scene_seed)
    image = np.empty((image_size, image_size, 3), np.uint8)
    image[:] = (70, 70, 78)  # the wall behind the table
    corners = [project(x, y, TABLE_Z, image_size)[:2] for x, y in
               [(0.02, -0.25), (0.02, 0.35), (0.55, 0.35), (0.55, -0.25)]]
    table = np.array(corners, np.float32).round().astype(np.int32)
    cv2.fillConvexPoly(image, table, (176, 134, 92), lineType=cv2.LINE_AA)
    grain = (np.sin(np.arange(image_size) * (0.35 + 0.1 * rng.random()) * 64 / image_size) * 6).astype(np.int16)
    mask = np.zeros((image_size, image_size), np.uint8)
    cv2.fillConvexPoly(mask, table, 1)
    image = np.where(mask[..., None] > 0, np.clip(image.astype(np.int16) + grain[:, None, None], 0, 255), image)
    image = image.astype(np.uint8)
    colours = rng.permutation(len(_OBJECT_COLOURS))[:_NUM_OBJECTS]
    for colour_index in colours:
        x = rng.uniform(WORKSPACE_LOW[0] + 0.03, WORKSPACE_HIGH[0] - 0.03)
        y = rng.uniform(WORKSPACE_LOW[1] + 0.03, WORKSPACE_HIGH[1] - 0.03)
        column, row, scale = project(x, y, TABLE_Z, image_size)
        half = max(1.0, image_size * 0.035 * scale)
        colour = tuple(int(c) for c in _OBJECT_COLOURS[colour_index])
        if rng.random() < 0.5:  # a cube seen obliquely: a box
            top_left = (int(round(column - half)), int(round(row - half)))
            bottom_right = (int(round(column + half)), int(round(row + 0.7 * half)))
            cv2.rectangle(image, top_left, bottom_right, colour, thickness=-1, lineType=cv2.LINE_AA)
        else:  # a ball or bowl: an ellipse
            axes = (int(round(half * 1.1)), max(1, int(round(half * 0.8))))
            cv2.ellipse(image, (int(round(column)), int(round(row))), axes, 0, 0, 360, colour, -1, cv2.LINE_AA)
    return image


def render_tabletop(ee_xyz, gripper: float, image_size: int = 256, scene_seed: int = 0) -> np.ndarray:
    """Render the scene with the end-effector at `ee_xyz` (metres, base frame) and the gripper
    opening `gripper` (1 open .. 0 closed). Returns a uint8 image_size x image_size x 3 RGB array.
    Deterministic: the same arguments always give the same pixels."""
    ee_xyz = np.asarray(ee_xyz, np.float64).reshape(-1)
    if ee_xyz.shape != (3,) or not np.all(np.isfinite(ee_xyz)):
        raise ValueError(f"render_tabletop: ee_xyz must be 3 finite numbers, got {ee_xyz}")
    if not 16 <= image_size <= 2048:
        raise ValueError(f"render_tabletop: image_size must be in 16..2048, got {image_size}")
    x, y, z = np.clip(ee_xyz, WORKSPACE_LOW, WORKSPACE_HIGH)
    opening = float(np.clip(gripper, 0.0, 1.0))
    image = _background(image_size, int(scene_seed)).copy()

    # shadow on the table: stays put while the marker rises, so height is visible
    shadow_column, shadow_row, shadow_scale = project(x, y, TABLE_Z, image_size)
    shadow_axes = (max(1, int(round(image_size * 0.045 * shadow_scale))),
                   max(1, int(round(image_size * 0.02 * shadow_scale))))
    overlay = image.copy()
    cv2.ellipse(overlay, (int(round(shadow_column)), int(round(shadow_row))), shadow_axes, 0, 0, 360,
                (30, 25, 20), -1, cv2.LINE_AA)
    image = cv2.addWeighted(overlay, 0.55, image, 0.45, 0.0)

    # the end-effector: a wrist disc with two fingers, spread by the gripper opening
    column, row, scale = project(x, y, z, image_size)
    radius = max(1.0, image_size * 0.03 * scale)
    centre = (int(round(column)), int(round(row)))
    cv2.line(image, centre, (centre[0], int(round(row - 4 * radius))), (90, 90, 90),
             max(1, int(round(radius * 0.5))), cv2.LINE_AA)  # the forearm going up and away
    spread = radius * (0.35 + 1.1 * opening)
    finger_length = radius * 1.6
    finger_width = max(1, int(round(radius * 0.45)))
    for side in (-1, 1):
        top = (int(round(column + side * spread)), int(round(row)))
        tip = (int(round(column + side * spread)), int(round(row + finger_length)))
        cv2.line(image, top, tip, (245, 245, 245), finger_width, cv2.LINE_AA)
    cv2.circle(image, centre, int(round(radius)), (30, 30, 30), -1, cv2.LINE_AA)
    cv2.circle(image, centre, max(1, int(round(radius * 0.45))), (0, 200, 220), -1, cv2.LINE_AA)
    return image
