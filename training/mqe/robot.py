"""Robot constants shared by the real arm, the simulated tabletop, the synthetic renderer and the
benchmarks: defined once here (numpy only, so the robot PC, the sim and the learner all import it).

Frames and conventions are BridgeData V2's (see mqe.contract for the action convention): positions
in metres in the arm's base frame, orientations as (roll, pitch, yaw) with (0, 0, 0) = gripper
pointing straight down.
"""

from __future__ import annotations

import numpy as np

# The box the commanded end-effector position is clipped to (m, base frame, x y z).
WORKSPACE_LOW: tuple[float, float, float] = (0.10, -0.15, -0.10)
WORKSPACE_HIGH: tuple[float, float, float] = (0.45, 0.25, 0.18)

# Where `arm/reset` puts the arm before a trial: x y z (m), roll pitch yaw (rad); gripper 1 = open.
START_POSE: tuple[float, float, float, float, float, float] = (0.3, 0.0, 0.15, 0.0, 0.0, 0.0)
START_GRIPPER: float = 1.0

# Per-step clip of the policy's deltas (one 5 Hz step).
MAX_TRANSLATION_STEP: float = 0.05  # m, per component of dx, dy, dz
MAX_ROTATION_STEP: float = 0.25  # rad, per component of droll, dpitch, dyaw

# Bridge's DEFAULT_ROTATION: the ee_gripper_link orientation that the state calls (0, 0, 0).
NEUTRAL_ROTATION = np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]])
NEUTRAL_ROTATION.setflags(write=False)
