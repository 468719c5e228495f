"""The interface every arm backend implements. Poses are 4x4 ee_gripper_link poses in the arm's
base frame (metres, rotation matrices); joints in rad in the model's joint order."""

from __future__ import annotations

import abc

import numpy as np

from widowx_bridge.kinematics import ArmModel


class ArmBackend(abc.ABC):
    model: ArmModel

    @abc.abstractmethod
    def startup(self) -> None:
        """Connect to the arm; called exactly once before any command."""

    @abc.abstractmethod
    def shutdown(self) -> None:
        """Disconnect; called exactly once at the end."""

    @abc.abstractmethod
    def command_ee_pose(self, pose: np.ndarray, moving_time: float) -> bool:
        """Solve IK for `pose` and start moving there over `moving_time` s without waiting for the
        motion to finish. Return False (and move nothing) when no solution within the joint
        limits exists."""

    @abc.abstractmethod
    def set_gripper(self, open_: bool) -> None:
        """Start opening or closing the gripper; must not wait for it."""

    @abc.abstractmethod
    def home(self, moving_time: float) -> None:
        """Move to the all-zero joint pose."""

    @abc.abstractmethod
    def sleep(self, moving_time: float) -> None:
        """Move to the folded rest pose."""

    @abc.abstractmethod
    def torque_off(self) -> None:
        """Emergency stop: motors go limp (the arm falls if not supported)."""

    @abc.abstractmethod
    def reboot_motors(self) -> None:
        """Reboot the servos (clears error states) and leave them torqued on."""

    @abc.abstractmethod
    def joint_positions(self) -> np.ndarray:
        """Latest joint positions in rad."""

    def set_moving_time(self, moving_time: float) -> None:
        """Set the servo profile for the commands that follow. command_ee_pose switches it itself when
        its moving_time differs; the controller calls this between moves (when a reset has finished)
        so that no step pays for the switch. Only the Interbotix arm has a profile to switch (two
        blocking register writes)."""

    def joint_efforts(self) -> np.ndarray | None:
        """Latest joint efforts in the driver's units (model.effort_limits), or None where the arm
        does not measure them (the kinematic sim)."""
        return None

    def hold_position(self) -> None:
        """Stop pushing: command the measured joint positions (the effort guard's hold). An arm that
        is always where it was commanded (the kinematic sim) has nothing to do."""
