"""`mqe-bench stitch`: the paper's stitching experiment (Table 5 layout) in the simulated tabletop, state mode.

Train on single primitives only (PRIMITIVE_MIX: pick-and-place onto the plate or the table, open or
close the drawer, put an object into the open drawer; mqe.sim.dataset.record_primitive), evaluate on the
six mqe.sim tasks from one goal, closed loop through widowx_bridge.sim_episode.run_episode (the real
arm's ArmController) and scored by mqe.sim.score. Prints binary success counts per task and agent, and
the progress (points / max points) mean ± s.e.

    mqe-bench stitch --out /tmp/stitch --episodes 1600 --workers 2 --steps 30000 --agents mqe gcbc gciql tra

State observation (40-D): measured ee state (xyz, roll/pitch/yaw, gripper opening 1 open .. 0 closed),
the four objects' poses (4 x 7), the drawer opening, and the plate's and the cabinet's (x, y) (fixtures
an image shows). The goal is the same vector of the task's goal scene with the arm at its start pose.
The dataset is an npz of observations/actions/terminals (mqe.ogbench.dataset's format), built
in-process: the TFDS `state` observation mode (a join of the sim's privileged sidecar on file_path)
is not built (docs/stitching.md). Actions are scaled per dimension to [-1, 1] by the dataset's largest
magnitude and scaled back at run time.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from mqe.bench.machine import machine_facts

AGENTS = ("mqe", "gcbc", "gciql", "tra")


# The primitives of the training data and their shares: pick-and-place onto the plate most (the
# paper's Bridge tasks are mostly pick-and-place), the drawer primitives so that open_drawer and
# open_drawer_and_place are made of seen pieces. Single primitives only: never two in one episode.
PRIMITIVE_MIX = {"pick_place_plate": 0.5, "pick_place_table": 0.125, "open_drawer": 0.125, "close_drawer": 0.125,
                 "place_in_drawer": 0.125}


def state_vector(world) -> np.ndarray:
    """40-D: ee state (7), the four objects' poses (4 x 7), drawer opening, plate and cabinet (x, y)."""
    from mqe.sim import scene
    from mqe.sim.dataset import gripper_state
    from mqe.robot import state_from_pose

    poses = world.object_poses()
    return np.concatenate([state_from_pose(world.ee_pose()), [gripper_state(world)],
                           np.concatenate([poses[name] for name in scene.OBJECTS]),
                           [world.drawer_opening()], world.plate_xy(), world.cabinet_xy()]).astype(np.float32)


def goal_vector(world, task) -> np.ndarray:
    """The goal scene's state vector with the arm at its start pose (the goal image shows the same)."""
    world.reset(task.goal)
    return state_vector(world)


def primitive_of(seed: int) -> str:
    """The primitive recorded for a data seed (deterministic shares of PRIMITIVE_MIX)."""
    names, shares = list(PRIMITIVE_MIX), np.array(list(PRIMITIVE_MIX.values()))
    return names[int(np.searchsorted(np.cumsum(shares), np.random.default_rng([11, seed]).random(), side="right"))]


def generate(out: Path, episodes: int, seed: int, workers: int = 1, log=print) -> dict:
    """train.npz / val.npz of single-primitive episodes (PRIMITIVE_MIX), recorded by `workers` spawned
    processes in seed order (the same dataset for any worker count). The state vector is rebuilt from
    the recorded Bridge state, the privileged arrays (objects, drawer), the episode's plate and the
    seed's cabinet."""
    import concurrent.futures
    import multiprocessing

    from mqe.sim.dataset import record_or_failure
    from mqe.sim.tasks import random_layout
    from mqe.sim.world import World

    layout_world = World()  # layouts only (the start pose's IK); never renders here
    failures: dict[str, int] = {}
    split_sizes = {"train": episodes - max(1, episodes // 10), "val": max(1, episodes // 10)}
    first = {"train": 0, "val": 500_000}  # disjoint seed ranges, as mqe.sim.dataset
    started = time.perf_counter()
    pool = concurrent.futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    try:
        for split, count in split_sizes.items():
            observations, actions, terminals = [], [], []
            written, next_seed, pending = 0, first[split], []
            while written < count:
                while len(pending) < 2 * workers:
                    data_seed = seed * 1_000_000 + next_seed
                    pending.append((data_seed, pool.submit(record_or_failure, primitive_of(data_seed), data_seed, 16)))
                    next_seed += 1
                data_seed, future = pending.pop(0)
                recorded = future.result()
                if isinstance(recorded, str):
                    failures[recorded] = failures.get(recorded, 0) + 1
                    continue
                layout = random_layout(data_seed, layout_world)  # the cabinet never moves; the plate may have
                steps = len(recorded["states"])
                fixtures = np.tile(np.concatenate([recorded["plate_xy"], layout.cabinet_xy]), (steps, 1))
                observations.append(np.concatenate([recorded["states"], recorded["objects"].reshape(steps, -1),
                                                    recorded["drawer"][:, None], fixtures], axis=1))
                actions.append(recorded["actions"])
                ends = np.zeros(steps, bool)
                ends[-1] = True
                terminals.append(ends)
                written += 1
                if written % 50 == 0:
                    log(f"data {split}: {written}/{count} episodes, {time.perf_counter() - started:.0f} s")
            for _, future in pending:
                future.cancel()
            np.savez(out / f"{split}.npz", observations=np.concatenate(observations).astype(np.float32),
                     actions=np.concatenate(actions).astype(np.float32), terminals=np.concatenate(terminals))
    finally:
        pool.shutdown(cancel_futures=True)
    raw = np.load(out / "train.npz")["actions"]
    scale = np.maximum(np.abs(raw).max(axis=0), 1e-6).astype(np.float32)
    for split in split_sizes:
        arrays = dict(np.load(out / f"{split}.npz"))
        arrays["actions"] = np.clip(arrays["actions"] / scale, -1.0, 1.0).astype(np.float32)
        np.savez(out / f"{split}_scaled.npz", **arrays)
    stats = {"episodes": split_sizes, "failures": failures, "seconds": round(time.perf_counter() - started, 1),
             "action_scale": scale.tolist(), "primitive_mix": PRIMITIVE_MIX}
    log(f"data: {split_sizes}, discarded {failures or 'none'}, {stats['seconds']} s")
    return stats


def train(agent_name: str, seed: int, args, out: Path):
    from mqe.agents import make_agent
    from mqe.ogbench.dataset import OGBenchDataset
    from mqe.ogbench.presets import agent_config, base_agent
    from mqe.train import fit, get_fit_config, resolve_device, seed_everything

    config = agent_config(agent_name, "stitch", width=args.width)
    seed_everything(seed)
    dataset = OGBenchDataset(out / "train_scaled.npz", args.batch_size, config["goal_sampling"], seed=seed)
    val = OGBenchDataset(out / "val_scaled.npz", args.batch_size, config["goal_sampling"], seed=seed + 1)
    agent = make_agent(base_agent(agent_name), config, ("state", dataset.observation_dim), dataset.action_dim)
    fit_config = get_fit_config()
    fit_config.update(steps=args.steps, agent=config, seed=seed, log_every=min(100, args.steps), val_every=args.steps,
                      eval_every=args.steps, checkpoint_every=args.steps, keep_checkpoints=1, progress=False)
    meta = {"agent_name": base_agent(agent_name), "benchmark_name": agent_name, "agent_config": config,
            "observation_spec": ["state", dataset.observation_dim], "action_dim": dataset.action_dim}
    started = time.perf_counter()
    # workdir None: no files, so no TensorBoard writer; its TensorFlow import and MuJoCo's EGL renderer
    # segfault in one process whichever comes first (faulthandler traces in docs/stitching.md).
    fit(agent, dataset, fit_config, None, val_source=val, meta=meta,
        device=resolve_device("cpu"), resume=False)
    return agent, time.perf_counter() - started


def evaluate(agent, scale: np.ndarray, tasks, trials: int, first_trial: int, horizon: int) -> dict[str, list[tuple[int, int]]]:
    """(points, max_points) per trial per task, through the no-ROS runner and the sim scorer."""
    import torch

    from mqe import sim
    from widowx_bridge.sim_episode import run_episode

    world = sim.World()
    agent.eval()
    results: dict[str, list[tuple[int, int]]] = {}
    for task_name in tasks:
        results[task_name] = []
        for trial in range(first_trial, first_trial + trials):
            task = sim.make_task(task_name, trial, world)
            goal = torch.from_numpy(goal_vector(world, task)[None])

            def policy(_observation: dict) -> np.ndarray:
                with torch.no_grad():
                    action = agent.act(torch.from_numpy(state_vector(world)[None]), goal)[0].numpy()
                return (np.clip(action, -1.0, 1.0) * scale).astype(np.float64)

            steps = horizon * task.max_points
            result = run_episode(task_name, trial, policy, steps=steps, world=world, render=False)
            results[task_name].append((result.points, result.max_points))
    world.close()
    return results


def steps_to_go_correlation(agent, out: Path) -> dict | None:
    """Critic diagnostics along the validation episodes (scripted experts): Spearman rho of
    d(s_t, s_T) with T - t per episode, averaged; and d at the first state vs the episode length.
    None for agents without a distance (GCBC, TRA's actor-only path)."""
    from scipy.stats import spearmanr

    from mqe.ogbench.diagnostics import critic_distances

    if not getattr(agent, "has_distance", False):
        return None
    data = np.load(out / "val_scaled.npz")
    observations, ends = data["observations"], np.flatnonzero(data["terminals"])
    rhos, first = [], []
    for start, end in zip(np.r_[0, ends[:-1] + 1], ends):
        episode = observations[start:end + 1]
        distances = critic_distances(agent, episode, np.repeat(episode[-1:], len(episode), axis=0))
        steps_to_go = np.arange(len(episode))[::-1]
        rhos.append(spearmanr(distances[:-1], steps_to_go[:-1]).statistic)
        first.append((float(distances[0]), int(steps_to_go[0])))
    return {"spearman_steps_to_go": round(float(np.nanmean(rhos)), 3), "episodes": len(rhos),
            "first_state_distance_vs_length": first[:10]}


def write_eval_records(path: Path, report: dict, tasks) -> None:
    """Every trial as an mqe-eval results record (the fields mqe-eval's report reads: record, run_id,
    task, trial, method, points, max_points, progress, scorer), so `mqe-eval report PATH --out DIR`
    draws the Table 5 layout, the Fig. 4 bars and the bootstrap differences from this run. Written
    here, not through mqe_policy (the learner's benchmarks do not import the ROS packages)."""
    from mqe.files import atomic_write_bytes

    lines = [{"record": "session", "protocol": report["command"], "protocol_name": "mqe-bench stitch", "mode": "open",
              "target": "sim (no-ROS runner)", "methods": {a: "trained in-process" for a in report["agents"]}}]
    for agent, per_task in report["results"].items():
        for task in tasks:
            for trial, (points, max_points) in enumerate(per_task[task]):
                lines.append({"record": "run", "run_id": f"{task}/{trial}/{agent}", "task": task, "trial": trial,
                              "method": agent, "label": agent, "points": points, "max_points": max_points,
                              "progress": points / max_points, "scorer": "mqe.sim.score (widowx_bridge.sim_episode)"})
    text = "".join(json.dumps(line) + "\n" for line in lines).encode()
    atomic_write_bytes(path, lambda handle: handle.write(text))


def mean_se(values: list[float]) -> tuple[float, float]:
    values = np.asarray(values, float)
    se = float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else float("nan")
    return float(values.mean()), se


def table(results: dict[str, dict[str, list[tuple[int, int]]]], tasks) -> str:
    """Paper's Table 5 layout: successes/trials per task (rows) and agent (columns), then progress."""
    agents = list(results)
    lines = ["| task | " + " | ".join(agents) + " |", "|---|" + "---|" * len(agents)]
    for task in tasks:
        cells = [f"{sum(p == m for p, m in results[a][task])}/{len(results[a][task])}" for a in agents]
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
    lines += ["", "progress (points / max points), mean ± s.e. over trials and seeds:", "",
              "| task | " + " | ".join(agents) + " |", "|---|" + "---|" * len(agents)]
    for task in tasks:
        cells = []
        for a in agents:
            mean, se = mean_se([p / m for p, m in results[a][task]])
            cells.append(f"{mean:.2f} ± {se:.2f}")
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
    lines += ["", "per stage: trials that reached at least k points (k = 1, 2, ...):", "",
              "| task | " + " | ".join(agents) + " |", "|---|" + "---|" * len(agents)]
    for task in tasks:
        cells = []
        for a in agents:
            top = max((m for _, m in results[a][task]), default=0)
            cells.append(" / ".join(str(sum(p >= k for p, _ in results[a][task])) for k in range(1, top + 1)))
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="mqe-bench stitch", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="work folder: datasets, runs, results.json")
    parser.add_argument("--agents", nargs="+", default=list(AGENTS), choices=AGENTS, help="agents trained and evaluated")
    parser.add_argument("--episodes", type=int, default=40, help="single-primitive episodes generated (train + val)")
    parser.add_argument("--workers", type=int, default=1, help="processes recording the data (the same data for any count)")
    parser.add_argument("--steps", type=int, default=2000, help="optimizer steps per agent")
    parser.add_argument("--seeds", type=int, default=1, help="training seeds per agent")
    parser.add_argument("--trials", type=int, default=3, help="evaluation trials (task seeds) per task, agent and seed")
    parser.add_argument("--horizon", type=int, default=60, help="5 Hz policy steps per trial and point of the task (single_pnp: 1 x, quadruple_pnp: 4 x)")
    parser.add_argument("--batch-size", type=int, default=256, help="training batch size")
    parser.add_argument("--width", type=int, default=256, help="MLP width of every network (CPU-sized)")
    parser.add_argument("--tasks", nargs="+", default=None, help="subset of mqe.sim.TASKS (default: all six)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    from mqe import sim

    args = parse_args(argv)
    tasks = args.tasks or list(sim.TASKS)
    unknown = [t for t in tasks if t not in sim.TASKS]
    if unknown:
        raise SystemExit(f"mqe-bench stitch: --tasks {unknown} not in mqe.sim.TASKS {list(sim.TASKS)}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    data_file = out / "data.json"
    if data_file.exists() and json.loads(data_file.read_text())["requested"] == args.episodes:
        data = json.loads(data_file.read_text())  # the same dataset (generation is deterministic): reuse it
    else:
        data = {**generate(out, args.episodes, seed=0, workers=args.workers), "requested": args.episodes}
        data_file.write_text(json.dumps(data))
    scale = np.array(data["action_scale"], np.float32)
    results: dict[str, dict[str, list[tuple[int, int]]]] = {}
    timings: dict[str, list[float]] = {}
    diagnostics: dict[str, list] = {}
    for agent_name in args.agents:
        results[agent_name] = {task: [] for task in tasks}
        for seed in range(args.seeds):
            agent, seconds = train(agent_name, seed, args, out)
            timings.setdefault(agent_name, []).append(round(seconds, 1))
            diagnostics.setdefault(agent_name, []).append(steps_to_go_correlation(agent, out))
            for task, trials in evaluate(agent, scale, tasks, args.trials, 1000, args.horizon).items():
                results[agent_name][task] += trials
            print(f"[{agent_name} seed {seed}] trained {args.steps} steps in {seconds:.0f} s", file=sys.stderr)
            print(table(results, tasks), file=sys.stderr, flush=True)  # partial table: a killed run still shows it
    report = {"command": "mqe-bench stitch " + " ".join(argv if argv is not None else sys.argv[2:]),
              "agents": args.agents, "seeds": args.seeds, "steps": args.steps, "trials": args.trials,
              "horizon": args.horizon, "data": data, "train_seconds": timings, "diagnostics": diagnostics,
              "wall_seconds": round(time.perf_counter() - started, 1), "machine": machine_facts(),
              "results": {a: {t: [list(x) for x in v] for t, v in r.items()} for a, r in results.items()}}
    (out / "results.json").write_text(json.dumps(report, indent=1))
    write_eval_records(out / "results.jsonl", report, tasks)
    print(table(results, tasks))
    for agent_name, entries in diagnostics.items():
        rhos = [e["spearman_steps_to_go"] for e in entries if e]
        if rhos:
            print(f"{agent_name}: critic distance vs steps-to-go along validation episodes, Spearman {rhos}")
    print(f"\nseeds {args.seeds}, steps {args.steps}, {args.trials} trials/task/seed, horizon {args.horizon}, "
          f"data {data['episodes']}, train s {timings}, wall {report['wall_seconds']} s, machine {report['machine']}")
    return report


if __name__ == "__main__":
    main()
