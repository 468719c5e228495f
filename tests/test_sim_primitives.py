"""mqe.sim.dataset's single primitives: each scripted expert completes its primitive on most fixed
seeds, judged on the end state with the scorer's own tests (mqe.sim.tasks); an idle arm completes
none; the drawer slides under a small pull; the generator discards failed primitives and writes
several primitives that read back in the Bridge format. MuJoCo runs in fresh processes
(tests/sim_subprocess.py): this session imports TensorFlow."""

import numpy as np

from mqe.sim.dataset import PRIMITIVES, generate

from sim_subprocess import run_in_fresh_process

SEEDS = (0, 1, 2)


def test_each_primitive_completes_on_at_least_two_of_three_seeds():
    run_in_fresh_process(_each_primitive_completes_on_at_least_two_of_three_seeds)


def _end_state_reached(world, primitive: str, recorded: dict) -> bool:
    """The primitive's end state, checked here from the world the recorder left (not its own verdict)."""
    from mqe import robot
    from mqe.robot import state_from_pose
    from mqe.sim import scene, tasks

    home = np.linalg.norm(state_from_pose(world.ee_pose())[:3] - np.array(robot.START_POSE[:3])) < 0.015
    opening = world.drawer_opening()
    obj = {"pick_place_plate": None, "pick_place_table": None, "place_in_drawer": "mushroom"}.get(primitive)
    if primitive == "open_drawer":
        reached = tasks.DRAWER_OPEN_ENOUGH <= opening <= scene.DRAWER_RAIL_LENGTH
    elif primitive == "close_drawer":
        reached = opening < tasks.DRAWER_CLOSED and recorded["drawer"][0] > tasks.DRAWER_OPEN_ENOUGH
    elif primitive == "place_in_drawer":
        opened = recorded["drawer"][0] >= tasks.DRAWER_OPEN_ENOUGH
        reached = opened and tasks.in_drawer(world, world.object_poses()[obj])
    else:  # the object that moved most is the one placed: on the plate, or on the table off the plate
        moved = np.linalg.norm(recorded["objects"][-1, :, :2] - recorded["objects"][0, :, :2], axis=1)
        obj = scene.OBJECTS[int(np.argmax(moved))]
        on_plate = world.resting_on(obj, "plate")
        reached = on_plate if primitive == "pick_place_plate" else world.resting_on(obj, "table") and not on_plate
        reached = reached and moved.max() > 0.05
    if obj is not None:
        checks = tasks.released_at_rest(world, obj)
        reached = reached and checks["released"] and checks["at_rest"]
    return bool(reached and home and world.gripper_command == 1.0)


def _each_primitive_completes_on_at_least_two_of_three_seeds():
    from mqe.sim.dataset import PrimitiveFailed, record_primitive
    from mqe.sim.world import World

    world = World()
    completed = {}
    for primitive in PRIMITIVES:
        completed[primitive] = []
        for seed in SEEDS:
            try:
                recorded = record_primitive(world, primitive, seed, image_size=16)
            except PrimitiveFailed:
                continue
            assert recorded["primitive"] == primitive and recorded["images"].shape[1:] == (16, 16, 3)
            np.testing.assert_array_equal(recorded["plate_xy"], world.plate_xy().astype(np.float32))
            assert _end_state_reached(world, primitive, recorded), (primitive, seed)
            completed[primitive].append(seed)
    assert all(len(seeds) >= 2 for seeds in completed.values()), completed


def test_an_idle_arm_completes_no_primitive():
    run_in_fresh_process(_an_idle_arm_completes_no_primitive)


def _an_idle_arm_completes_no_primitive():
    """Each primitive's success test rejects its own start state (the expert never moved)."""
    from mqe.sim import dataset
    from mqe.sim.world import World

    world = World()
    for primitive in PRIMITIVES:
        episode = dataset._SETUPS[primitive](world, 0)
        world.step(0.4)
        assert episode.failure(world, episode.expert) is not None, primitive


def test_the_drawer_slides_under_a_small_pull():
    run_in_fresh_process(_the_drawer_slides_under_a_small_pull)


def _the_drawer_slides_under_a_small_pull():
    """0.5 N along the slide opens the drawer several cm in a second; 0.1 N (below its 0.2 N friction
    loss) does not move it. The cabinet's walls once jammed it shut against any force."""
    from mqe.sim import make_task
    from mqe.sim.world import World

    world = World()
    start = make_task("open_drawer", 0, world).start
    dof = world.model.joint("drawer").dofadr[0]
    moved = {}
    for force in (0.1, 0.5):
        world.reset(start)
        world.data.qfrc_applied[dof] = force
        world.step(1.0)
        moved[force] = world.drawer_opening() - start.drawer
    world.data.qfrc_applied[dof] = 0.0
    assert abs(moved[0.1]) < 0.002 and moved[0.5] > 0.03, moved


def _read_back(path, split: str) -> list[dict]:
    """The split's episodes as TFDS reads them (the training side's own reader)."""
    import tensorflow_datasets as tfds

    dataset = tfds.builder_from_directory(str(path)).as_dataset(split=split)
    episodes = []
    for episode in tfds.as_numpy(dataset):
        steps = list(episode["steps"])
        episodes.append({"file_path": episode["episode_metadata"]["file_path"].decode(),
                         "instruction": steps[0]["language_instruction"].decode(),
                         "states": np.stack([step["observation"]["state"] for step in steps]),
                         "actions": np.stack([step["action"] for step in steps])})
    return episodes


def test_the_generator_discards_a_failed_primitive(tmp_path):
    """Generator seed 29's first pick_place_plate episode (seed 29000000) ends with the object off the
    plate: recorded to the end, then counted and not written; the next seed of the split is."""
    path, stats = generate(tmp_path, episodes=2, seed=29, image_size=32, primitives=("pick_place_plate",),
                           log=lambda *a, **k: None)
    assert stats["written"] == 2 and stats["failures"] == {"pick_place_plate:not_placed": 1}
    paths = [episode["file_path"] for split in ("train", "val") for episode in _read_back(path, split)]
    assert sorted(paths) == ["sim/pick_place_plate/seed_29000001", "sim/pick_place_plate/seed_29500000"]
    sidecars = sorted(p.name for p in (tmp_path / "sim_privileged").glob("*/*.npz"))
    assert sidecars == ["sim_pick_place_plate_seed_29000001.npz", "sim_pick_place_plate_seed_29500000.npz"]


def test_the_generator_writes_several_primitives_that_read_back(tmp_path):
    path, stats = generate(tmp_path, episodes=4, image_size=32, log=lambda *a, **k: None)
    assert stats["written"] == 4
    episodes = _read_back(path, "train")
    primitives = {episode["file_path"].split("/")[1] for episode in episodes}
    assert len(episodes) == 3 and len(primitives) >= 2 and primitives <= set(PRIMITIVES), primitives
    words = {"pick_place_plate": "plate", "pick_place_table": "table", "open_drawer": "open the drawer",
             "close_drawer": "close the drawer", "place_in_drawer": "in the drawer"}
    for episode in episodes:
        assert words[episode["file_path"].split("/")[1]] in episode["instruction"], episode["instruction"]
        assert len(episode["actions"]) == len(episode["states"]) >= 10
        # every primitive starts at the start pose with the gripper open and ends commanding it open
        np.testing.assert_allclose(episode["states"][0, :3], [0.3, 0.0, 0.15], atol=0.01)
        assert episode["states"][0, 6] > 0.95 and episode["actions"][-1, 6] == 1.0
    sidecars = list((tmp_path / "sim_privileged" / "train").glob("*.npz"))
    assert len(sidecars) == len(episodes)
