"""The MJCF of the simulated Bridge tabletop: a WidowX 250s, a table, four objects, a plate, a drawer.

The arm is written from Interbotix's published kinematics (interbotix_xs_modules/xs_robot/
mr_descriptions.py, the screw axes widowx_bridge.kinematics uses): with every joint at 0 the
bodies are stacked with identity orientations at the joint pivots those screw axes pass through,
so MuJoCo's forward kinematics of the `ee_gripper` site equals the product of exponentials
(tests/test_sim_scene.py compares the two, <= 1 mm). Joint limits are the Interbotix motor-config
limits, the finger stroke 0.015-0.037 m per finger (MuJoCo Menagerie trossen_wx250s and
wx250s.urdf.xacro). Collision is simple primitives: only the gripper (palm, two finger pads)
touches the world, the links are visual. Grasping is by friction (pads condim 4, elliptic cones,
impratio 10, Newton; MuJoCo's modelling guide and mujoco issue #3328) - nothing is welded.

Frame: the arm's base_link is the world origin, x forward, z up; the table top is z = 0.
"""

from __future__ import annotations

import math

import numpy as np

TIMESTEP = 0.002  # s: 500 Hz physics, as ManiSkill's Bridge twin
JOINT_NAMES = ("waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate")
# Interbotix motor-config limits (interbotix_xsarm_control/config/wx250s.yaml, ticks -> rad); the
# same numbers as widowx_bridge.kinematics, which this package may not import (it is above us).
_TICK = 2 * math.pi / 4096
JOINT_LIMITS = (
    (-math.pi, math.pi),
    ((819 - 2048) * _TICK, (3345 - 2048) * _TICK),
    ((648 - 2048) * _TICK, (3094 - 2048) * _TICK),
    (-math.pi, math.pi),
    ((910 - 2048) * _TICK, (3447 - 2048) * _TICK),
    (-math.pi, math.pi),
)
# Position-servo gains (N m / rad) and armature: stiff enough that a 0.2 s step is tracked within
# a few mm like the Dynamixel position loop, with gravity compensation standing in for its integral term.
JOINT_KP = (60.0, 90.0, 70.0, 20.0, 25.0, 10.0)
FINGER_OPEN = 0.037  # m, each finger's distance from the gripper centre line (Interbotix stroke)
FINGER_CLOSED = 0.015
FINGER_KP = 300.0  # N/m: ~3-6 N grip on a 3-4 cm object
PAD_INSET = 0.010  # m from a finger joint's value to its pad's inner face: closed gap 1 cm, open 5.4 cm
PAD_HALF_SIZE = (0.012, 0.004, 0.010)  # m, a finger pad box in the gripper frame (x approach, y across, z up)

# Camera like Bridge's over-the-shoulder view (ManiSkill's Bridge twin: 640x480, fx = fy ~ 623.6,
# on the base at about (0, -0.16, 0.36) m, looking at the workspace).
CAMERA_POSITION = (0.0, -0.16, 0.36)
CAMERA_TARGET = (0.30, 0.05, 0.0)
CAMERA_WIDTH, CAMERA_HEIGHT = 640, 480
CAMERA_FY = 623.6
CAMERA_FOVY_DEG = math.degrees(2 * math.atan(CAMERA_HEIGHT / 2 / CAMERA_FY))

OBJECTS = ("cube", "cylinder", "carrot", "mushroom")
# Per object: half height when resting upright (m), a colour, the language name.
OBJECT_HALF_HEIGHT = {"cube": 0.018, "cylinder": 0.025, "carrot": 0.016, "mushroom": 0.022}
OBJECT_COLOURS = {"cube": (0.85, 0.15, 0.15), "cylinder": (0.15, 0.35, 0.85), "carrot": (0.95, 0.5, 0.1),
                  "mushroom": (0.85, 0.8, 0.6)}
OBJECT_WORDS = {"cube": "red cube", "cylinder": "blue cylinder", "carrot": "carrot", "mushroom": "mushroom"}

# m (torque per normal force): condim 6 rolling resistance, so a toppled cylinder or the capsule carrot
# stops within a few cm like a real toy does, instead of rolling on at constant speed off the table
# (measured with 0.001 and condim 4: a toppled cylinder kept 0.12 m/s until it fell off the edge).
OBJECT_ROLLING_FRICTION = 0.002
PLATE_RADIUS = 0.075  # m
PLATE_TOP = 0.012  # m above the table
# The drawer: a cabinet whose drawer slides toward the robot (-x). Opening q (m) along the slide.
DRAWER_INNER = (0.13, 0.15, 0.05)  # inner length (x), width (y), wall height (z), m
CABINET_HALF = (0.075, 0.09, 0.045)  # outer half sizes of the cabinet, m
DRAWER_RAIL_LENGTH = 0.13  # m: opened beyond this the drawer has left its rails ("pulled off")
DRAWER_SLIDE_RANGE = 0.20  # m: the slide joint's hard stop (the drawer in the operator's hand)
DRAWER_FLOOR = 0.012  # m, the drawer's floor top above the table
HANDLE_OFFSET = 0.035  # m in front of the drawer face: the bar the gripper hooks behind
HANDLE_BAR_HALF_SIZE = (0.005, 0.035, 0.005)  # m, the handle bar box (x toward the robot's back, y across, z)
HANDLE_HEIGHT = 0.045  # m above the table


def camera_xyaxes(position=CAMERA_POSITION, target=CAMERA_TARGET) -> np.ndarray:
    """MuJoCo camera x (right) and y (up) axes for a camera at `position` looking at `target`."""
    forward = np.asarray(target, float) - np.asarray(position, float)
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    return np.concatenate([right, up])


def _v(values) -> str:
    return " ".join(f"{float(v):.6g}" for v in values)


def _arm() -> str:
    """The WidowX 250s at its all-zero pose; pivots read off the screw axes (see module docstring)."""
    limits = [f'range="{_v(limit)}"' for limit in JOINT_LIMITS]
    # gravcomp: the servos' position loop holds the arm up; the policy never sees sag
    return f"""
    <body name="base_link">
      <geom class="visual" type="box" size="0.06 0.06 0.03" pos="0 0 0.03" rgba="0.15 0.15 0.15 1"/>
      <body name="shoulder_link">
        <inertial pos="0 0 0.05" mass="0.5" diaginertia="0.001 0.001 0.001"/>
        <joint name="waist" axis="0 0 1" {limits[0]}/>
        <geom class="visual" type="cylinder" size="0.04 0.03" pos="0 0 0.08" rgba="0.2 0.2 0.2 1"/>
        <body name="upper_arm_link" pos="0 0 0.11065">
          <inertial pos="0.02 0 0.12" mass="0.4" diaginertia="0.003 0.003 0.0005"/>
          <joint name="shoulder" axis="0 1 0" {limits[1]}/>
          <geom class="visual" type="capsule" fromto="0 0 0 0.04975 0 0.25" size="0.02" rgba="0.2 0.2 0.2 1"/>
          <body name="upper_forearm_link" pos="0.04975 0 0.25">
            <inertial pos="0.07 0 0" mass="0.3" diaginertia="0.0003 0.002 0.002"/>
            <joint name="elbow" axis="0 1 0" {limits[2]}/>
            <geom class="visual" type="capsule" fromto="0 0 0 0.1 0 0" size="0.02" rgba="0.2 0.2 0.2 1"/>
            <body name="lower_forearm_link" pos="0.1 0 0">
              <inertial pos="0.07 0 0" mass="0.25" diaginertia="0.0002 0.001 0.001"/>
              <joint name="forearm_roll" axis="1 0 0" {limits[3]}/>
              <geom class="visual" type="capsule" fromto="0 0 0 0.15 0 0" size="0.018" rgba="0.25 0.25 0.25 1"/>
              <body name="wrist_link" pos="0.15 0 0">
                <inertial pos="0.03 0 0" mass="0.1" diaginertia="0.0001 0.0001 0.0001"/>
                <joint name="wrist_angle" axis="0 1 0" {limits[4]}/>
                <geom class="visual" type="box" size="0.025 0.02 0.02" pos="0.02 0 0" rgba="0.2 0.2 0.2 1"/>
                <body name="gripper_link" pos="0.05 0 0">
                  <inertial pos="0.05 0 0" mass="0.15" diaginertia="0.0001 0.0001 0.0001"/>
                  <joint name="wrist_rotate" axis="1 0 0" {limits[5]}/>
                  <geom name="palm" class="gripper" type="box" size="0.012 0.045 0.018" pos="0.072 0 0" rgba="0.15 0.15 0.15 1"/>
                  <site name="ee_gripper" pos="0.108575 0 0" size="0.004" rgba="0 1 0 0"/>
                  <body name="left_finger_link" pos="0.108575 0 0">
                    <inertial pos="0 0 0" mass="0.02" diaginertia="0.00001 0.00001 0.00001"/>
                    <joint name="left_finger" type="slide" axis="0 1 0" range="{FINGER_CLOSED} {FINGER_OPEN}"/>
                    <geom name="left_pad" class="pad" pos="0 {-PAD_INSET + PAD_HALF_SIZE[1]} 0"/>
                    <geom class="visual" type="box" size="0.03 0.004 0.01" pos="-0.03 {-PAD_INSET + 0.008} 0" rgba="0.3 0.3 0.3 1"/>
                  </body>
                  <body name="right_finger_link" pos="0.108575 0 0">
                    <inertial pos="0 0 0" mass="0.02" diaginertia="0.00001 0.00001 0.00001"/>
                    <joint name="right_finger" type="slide" axis="0 -1 0" range="{FINGER_CLOSED} {FINGER_OPEN}"/>
                    <geom name="right_pad" class="pad" pos="0 {PAD_INSET - PAD_HALF_SIZE[1]} 0"/>
                    <geom class="visual" type="box" size="0.03 0.004 0.01" pos="-0.03 {PAD_INSET - 0.008} 0" rgba="0.3 0.3 0.3 1"/>
                  </body>
                </body>
              </body>
            </body>
          </body>
        </body>
      </body>
    </body>""".replace('<body name="', '<body gravcomp="1" name="')


def _objects() -> str:
    c = {name: _v(colour) + " 1" for name, colour in OBJECT_COLOURS.items()}
    h = OBJECT_HALF_HEIGHT
    return f"""
    <body name="cube" pos="0.25 0.1 {h['cube']}">
      <freejoint name="cube"/>
      <geom name="cube" class="object" type="box" size="0.018 0.018 0.018" mass="0.03" rgba="{c['cube']}"/>
    </body>
    <body name="cylinder" pos="0.25 0.2 {h['cylinder']}">
      <freejoint name="cylinder"/>
      <geom name="cylinder" class="object" type="cylinder" size="0.017 0.025" mass="0.03" rgba="{c['cylinder']}"/>
    </body>
    <body name="carrot" pos="0.3 0.2 {h['carrot']}">
      <freejoint name="carrot"/>
      <geom name="carrot" class="object" type="capsule" size="0.016 0.03" euler="0 1.570796 0" mass="0.025" rgba="{c['carrot']}"/>
      <geom class="visual" type="cylinder" size="0.006 0.008" pos="0.05 0 0" euler="0 1.570796 0" rgba="0.2 0.6 0.2 1"/>
    </body>
    <body name="mushroom" pos="0.2 0.15 {h['mushroom']}">
      <freejoint name="mushroom"/>
      <geom name="mushroom_stem" class="object" type="cylinder" size="0.011 0.011" pos="0 0 -0.011" mass="0.01" rgba="0.95 0.93 0.85 1"/>
      <geom name="mushroom" class="object" type="ellipsoid" size="0.021 0.021 0.012" pos="0 0 0.008" mass="0.015" rgba="{c['mushroom']}"/>
    </body>"""


def _drawer() -> str:
    lx, ly, lz = DRAWER_INNER
    hx, hy, hz = CABINET_HALF
    wall = 0.006
    floor_half = DRAWER_FLOOR / 2
    return f"""
    <body name="cabinet" pos="0.43 -0.07 0">
      <geom class="fixture" type="box" size="{hx} {hy} 0.004" pos="0 0 {2 * hz - 0.004}" rgba="0.55 0.35 0.2 1"/>
      <geom class="fixture" type="box" size="{hx} 0.006 {hz}" pos="0 {hy - 0.006} {hz}" rgba="0.55 0.35 0.2 1"/>
      <geom class="fixture" type="box" size="{hx} 0.006 {hz}" pos="0 {-hy + 0.006} {hz}" rgba="0.55 0.35 0.2 1"/>
      <geom class="fixture" type="box" size="0.006 {hy} {hz}" pos="{hx - 0.006} 0 {hz}" rgba="0.55 0.35 0.2 1"/>
      <body name="drawer" pos="{-hx + lx / 2 + wall} 0 0">
        <inertial pos="0 0 0.02" mass="0.2" diaginertia="0.001 0.001 0.001"/>
        <joint name="drawer" type="slide" axis="-1 0 0" range="0 {DRAWER_SLIDE_RANGE}" damping="3" frictionloss="0.2"/>
        <geom class="fixture" type="box" size="{lx / 2 + wall} {ly / 2 + wall} {floor_half}" pos="0 0 {floor_half}" rgba="0.7 0.5 0.3 1"/>
        <geom name="drawer_front" class="fixture" type="box" size="{wall / 2} {hy - 0.012} {hz - 0.006}" pos="{-lx / 2 - wall / 2} 0 {hz - 0.004}" rgba="0.75 0.55 0.35 1"/>
        <geom class="fixture" type="box" size="{wall / 2} {ly / 2 + wall} {lz / 2}" pos="{lx / 2 + wall / 2} 0 {lz / 2 + DRAWER_FLOOR}" rgba="0.7 0.5 0.3 1"/>
        <geom class="fixture" type="box" size="{lx / 2} {wall / 2} {lz / 2}" pos="0 {ly / 2 + wall / 2} {lz / 2 + DRAWER_FLOOR}" rgba="0.7 0.5 0.3 1"/>
        <geom class="fixture" type="box" size="{lx / 2} {wall / 2} {lz / 2}" pos="0 {-ly / 2 - wall / 2} {lz / 2 + DRAWER_FLOOR}" rgba="0.7 0.5 0.3 1"/>
        <geom name="handle" class="fixture" type="box" size="{_v(HANDLE_BAR_HALF_SIZE)}" pos="{-lx / 2 - wall - HANDLE_OFFSET} 0 {HANDLE_HEIGHT}" rgba="0.3 0.3 0.3 1"/>
        <geom class="fixture" type="box" size="{HANDLE_OFFSET / 2} 0.004 0.005" pos="{-lx / 2 - wall - HANDLE_OFFSET / 2} 0.031 {HANDLE_HEIGHT}" rgba="0.3 0.3 0.3 1"/>
        <geom class="fixture" type="box" size="{HANDLE_OFFSET / 2} 0.004 0.005" pos="{-lx / 2 - wall - HANDLE_OFFSET / 2} -0.031 {HANDLE_HEIGHT}" rgba="0.3 0.3 0.3 1"/>
        <site name="drawer_inside" pos="0 0 {DRAWER_FLOOR}" size="0.005" rgba="0 0 0 0"/>
      </body>
    </body>"""


def scene_xml() -> str:
    """The whole scene as one MJCF string (no files, no meshes: runs offline and headless)."""
    xyaxes = _v(camera_xyaxes())
    actuators = "\n".join(
        f'<position name="{name}" joint="{name}" kp="{kp}" dampratio="1" ctrlrange="{_v(limit)}"/>'
        for name, kp, limit in zip(JOINT_NAMES, JOINT_KP, JOINT_LIMITS))
    return f"""
<mujoco model="bridge_tabletop">
  <compiler angle="radian" autolimits="true"/>
  <option timestep="{TIMESTEP}" cone="elliptic" impratio="10" solver="Newton" iterations="50" noslip_iterations="3"/>
  <visual><global offwidth="{CAMERA_WIDTH}" offheight="{CAMERA_HEIGHT}"/><quality shadowsize="1024"/></visual>
  <default>
    <joint armature="0.02" damping="0.1"/>
    <geom contype="0" conaffinity="0"/>
    <default class="visual"><geom contype="0" conaffinity="0" density="0"/></default>
    <default class="gripper"><geom contype="1" conaffinity="1" density="0" friction="1 0.02 0.001"/></default>
    <default class="pad"><geom type="box" size="{_v(PAD_HALF_SIZE)}" contype="1" conaffinity="1" condim="4"
      friction="1.5 0.02 0.001" solref="0.01 1" solimp="0.95 0.99 0.001" density="0" rgba="0.1 0.1 0.1 1"/></default>
    <default class="object"><geom contype="1" conaffinity="1" condim="6" friction="1 0.02 {OBJECT_ROLLING_FRICTION}"
      solref="0.01 1" solimp="0.95 0.99 0.001"/></default>
    <default class="fixture"><geom contype="1" conaffinity="1" condim="3" friction="0.8 0.01 0.001"/></default>
  </default>
  <asset>
    <texture name="grid" type="2d" builtin="checker" rgb1="0.62 0.6 0.56" rgb2="0.58 0.56 0.52" width="256" height="256"/>
    <material name="table" texture="grid" texrepeat="8 8"/>
  </asset>
  <worldbody>
    <light name="key" pos="0.3 -0.3 1.2" dir="0 0.2 -1" diffuse="0.7 0.7 0.7" castshadow="true"/>
    <light name="fill" pos="-0.4 0.5 1.0" dir="0.3 -0.3 -1" diffuse="0.3 0.3 0.3" castshadow="false"/>
    <geom name="table" class="fixture" type="box" size="0.5 0.5 0.02" pos="0.3 0 -0.02" material="table"/>
    <geom class="visual" type="box" size="0.05 1 0.5" pos="0.85 0 0.5" rgba="0.8 0.8 0.78 1"/>
    <camera name="over_shoulder" pos="{_v(CAMERA_POSITION)}" xyaxes="{xyaxes}" fovy="{CAMERA_FOVY_DEG:.4f}"/>
    <body name="plate" pos="0.25 0.12 0">
      <geom name="plate" class="fixture" type="cylinder" size="{PLATE_RADIUS} {PLATE_TOP / 2}" pos="0 0 {PLATE_TOP / 2}" rgba="0.95 0.95 0.95 1"/>
      <geom class="visual" type="cylinder" size="{PLATE_RADIUS + 0.006} 0.004" pos="0 0 0.004" rgba="0.8 0.8 0.85 1"/>
    </body>
    {_drawer()}
    {_objects()}
    {_arm()}
  </worldbody>
  <contact>
    <exclude body1="left_finger_link" body2="right_finger_link"/>
    <!-- the drawer's box overlaps the cabinet's walls (3 mm at the sides): their contacts jammed it shut
         against any pull; its slide joint (range, damping, friction loss) is what guides it -->
    <exclude body1="cabinet" body2="drawer"/>
  </contact>
  <actuator>
    {actuators}
    <position name="left_finger" joint="left_finger" kp="{FINGER_KP}" dampratio="1" ctrlrange="{FINGER_CLOSED} {FINGER_OPEN}" forcerange="-8 8"/>
    <position name="right_finger" joint="right_finger" kp="{FINGER_KP}" dampratio="1" ctrlrange="{FINGER_CLOSED} {FINGER_OPEN}" forcerange="-8 8"/>
  </actuator>
</mujoco>"""

