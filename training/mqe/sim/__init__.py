"""The simulated Bridge tabletop (MuJoCo): a WidowX 250s, four objects, a plate and a drawer.

No ROS, no torch: numpy, mujoco, mqe.robot and mqe.contract only. See docs/sim.md.

    from mqe import sim
    world = sim.World()
    task = sim.make_task("double_pnp", seed=3, world=world)
    world.reset(task.start)
    frame = world.render(640, 480)
    points, max_points, details = sim.score(world, task)
"""

from mqe.sim.tasks import TASKS, TaskInstance, Target, make_task, score
from mqe.sim.world import SceneState, World


def render_goal_image(task: TaskInstance, world: World | None = None, width: int = 640, height: int = 480):
    """The task's goal image: its goal state rendered from the over-the-shoulder camera.

    Resets `world` (a fresh one if None) to the goal state."""
    world = world or World()
    world.reset(task.goal)
    return world.render(width, height)


__all__ = ["TASKS", "SceneState", "Target", "TaskInstance", "World", "make_task", "render_goal_image", "score"]
