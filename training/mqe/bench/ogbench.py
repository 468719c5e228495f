"""OGBench pointmaze benchmark: learner fidelity of MQE, GCBC, GCIQL and QRL (issue #4).

    mqe-bench ogbench --env pointmaze-medium-stitch --agents mqe,gcbc,gciql,qrl \
        --steps 20000 --seeds 2 --eval-episodes 10 --eval-every 5000

Collects the dataset (or reuses it from the data dir), trains every agent for every seed with the
shared training loop (`mqe.train.fit`) on the OGBench state preset (`mqe.ogbench.presets`),
evaluates the 5 tasks with the deterministic actor every `--eval-every` steps and at the end, and
prints a markdown table of final success (mean +- standard error over seeds), steps/s, wall time
and the machine. For quasimetric agents it prints the Spearman correlation between d(s, g) and the
BFS shortest-path distance. It writes to --out: results.json (the one results format),
learning_curves.png, distance_<agent>.png and each run's metrics.jsonl / final checkpoint.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from mqe.files import atomic_write_bytes
from mqe.bench.machine import machine_facts
from mqe.ogbench.collect import DATA_DIR_ENV, DEFAULT_DATA_DIR, default_recipe, ensure_dataset, make_env
from mqe.ogbench.maze import Maze

RESULTS_FORMAT = "mqe.bench.ogbench/1"
SPEARMAN_PAIRS = 2000


def machine_description() -> dict:
    import torch

    return {
        **machine_facts(),
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "torch": torch.__version__,
    }


def mean_and_standard_error(values: list[float]) -> tuple[float, float | None]:
    """Mean and standard error over seeds; None for the error of a single seed (strict JSON: no NaN)."""
    values = np.asarray(values, np.float64)
    error = float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else None
    return float(values.mean()), error


@dataclasses.dataclass
class RunResult:
    agent: str
    seed: int
    steps: int
    success: float  # final evaluation, mean over the 5 tasks
    success_by_task: dict[int, float]
    curve: list[tuple[int, float]]  # (step, success) at every evaluation
    train_seconds: float  # wall time of the optimizer steps (evaluations excluded)
    eval_seconds: float
    steps_per_second: float
    spearman: float | None  # rank correlation of d(s, g) with BFS distance (quasimetric agents)
    workdir: str


def run_one(agent_name: str, seed: int, args, train_path: Path, val_path: Path, maze: Maze, evaluator, out: Path) -> RunResult:
    from mqe.agents import make_agent
    from mqe.ogbench.dataset import OGBenchDataset
    from mqe.ogbench.diagnostics import distance_rank_correlation, plot_distance_heatmap
    from mqe.ogbench.evaluate import agent_policy
    from mqe.ogbench.presets import agent_config, base_agent
    from mqe.train import fit, get_fit_config, resolve_device, seed_everything

    config = agent_config(agent_name, args.env, width=args.width)
    seed_everything(seed)
    dataset = OGBenchDataset(train_path, args.batch_size, config["goal_sampling"], seed=seed)
    val_dataset = OGBenchDataset(val_path, args.batch_size, config["goal_sampling"], seed=seed + 1)
    agent = make_agent(base_agent(agent_name), config, ("state", dataset.observation_dim), dataset.action_dim)
    device = resolve_device(args.device)
    fit_config = get_fit_config()
    eval_every = args.eval_every or args.steps
    fit_config.update(
        steps=args.steps,
        agent=config,  # fit reads agent.lr
        seed=seed,
        log_every=min(args.log_every, args.steps),
        val_every=eval_every,
        eval_every=eval_every,
        checkpoint_every=args.steps,
        keep_checkpoints=1,
        progress=not args.no_progress,
    )
    curve: list[tuple[int, float]] = []
    last_result = {}
    eval_seconds = 0.0

    def evaluate(trained_agent, step: int) -> dict[str, float]:
        nonlocal eval_seconds
        started = time.perf_counter()
        result = evaluator.evaluate(agent_policy(trained_agent))
        eval_seconds += time.perf_counter() - started
        curve.append((step, result.success))
        last_result["result"] = result
        print(f"[{agent_name} seed {seed}] step {step}: success {result.success:.3f}", file=sys.stderr)
        return result.metrics()

    workdir = out / "runs" / f"{agent_name}-seed{seed}"
    meta = {"agent_name": base_agent(agent_name), "benchmark_name": agent_name, "agent_config": config, "observation_spec": ["state", dataset.observation_dim],
            "action_dim": dataset.action_dim, "dataset": str(train_path)}
    started = time.perf_counter()
    fit(agent, dataset, fit_config, workdir, val_source=val_dataset, evaluate=evaluate, meta=meta, device=device, resume=False)
    train_seconds = time.perf_counter() - started - eval_seconds
    if not curve or curve[-1][0] != args.steps:  # the last step was not an evaluation step
        evaluate(agent, args.steps)

    spearman = None
    if agent.has_distance:
        states = val_dataset.observations
        spearman = distance_rank_correlation(agent, maze, states, np.random.default_rng(seed), SPEARMAN_PAIRS)
        if not np.isfinite(spearman):  # constant distances have no rank correlation
            print(f"[{agent_name} seed {seed}] Spearman undefined: constant distances", file=sys.stderr)
            spearman = None
        if seed == args.first_seed:
            goal = maze.ij_to_xy(evaluator.envs[0].unwrapped.task_infos[0]["goal_ij"])
            plot_distance_heatmap(agent, maze, goal, out / f"distance_{agent_name}.png",
                                  title=f"{agent_name}, {args.env}, {args.steps} steps:\nd(s, g) to the goal of task 1")
    result = last_result["result"]
    return RunResult(agent_name, seed, args.steps, result.success, result.success_by_task, curve,
                     round(train_seconds, 1), round(eval_seconds, 1), round(args.steps / train_seconds, 2),
                     spearman, str(workdir))


def summarise(runs: list[RunResult]) -> dict[str, dict]:
    summary = {}
    for agent in dict.fromkeys(run.agent for run in runs):
        mine = [run for run in runs if run.agent == agent]
        mean, error = mean_and_standard_error([run.success for run in mine])
        correlations = [run.spearman for run in mine if run.spearman is not None]
        summary[agent] = dict(
            success_mean=mean,
            success_standard_error=error,
            seeds=len(mine),
            steps_per_second=float(np.mean([run.steps_per_second for run in mine])),
            train_seconds=float(np.sum([run.train_seconds for run in mine])),
            eval_seconds=float(np.sum([run.eval_seconds for run in mine])),
            spearman=float(np.mean(correlations)) if correlations else None,
        )
    return summary


def markdown_table(summary: dict[str, dict], steps: int, machine: dict) -> str:
    lines = [
        "| agent | success % (mean ± s.e.) | seeds | steps | train steps/s | train wall (s, all seeds) | eval wall (s) | Spearman d vs BFS |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for agent, row in summary.items():
        error = row["success_standard_error"]
        error = "n/a" if error is None or np.isnan(error) else f"{100 * error:.1f}"
        spearman = f"{row['spearman']:.3f}" if row["spearman"] is not None else "—"
        lines.append(
            f"| {agent} | {100 * row['success_mean']:.1f} ± {error} | {row['seeds']} | {steps} | "
            f"{row['steps_per_second']:.1f} | {row['train_seconds']:.0f} | {row['eval_seconds']:.0f} | {spearman} |"
        )
    lines.append(f"\nMachine: {machine['cpu']}, {machine['cores']} cores, torch {machine['torch']} "
                 f"({machine['torch_threads']} threads), GPU: {machine['gpu'] or 'none'}")
    return "\n".join(lines)


def plot_learning_curves(runs: list[RunResult], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 4))
    for agent in dict.fromkeys(run.agent for run in runs):
        curves = [run.curve for run in runs if run.agent == agent]
        steps = [step for step, _ in curves[0]]
        success = np.array([[value for _, value in curve] for curve in curves if len(curve) == len(steps)])
        mean = success.mean(axis=0)
        axes.plot(steps, 100 * mean, marker="o", label=f"{agent} ({len(success)} seed{'s' if len(success) > 1 else ''})")
        if len(success) > 1:
            error = success.std(axis=0, ddof=1) / np.sqrt(len(success))
            axes.fill_between(steps, 100 * (mean - error), 100 * (mean + error), alpha=0.2)
    axes.set_xlabel("training steps")
    axes.set_ylabel("success rate (%)")
    axes.set_ylim(-2, 102)
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend()
    figure.savefig(path, dpi=80, bbox_inches="tight")
    plt.close(figure)


SAME_SETUP_KEYS = ("env", "steps", "eval_episodes_per_task", "eval_max_steps", "agent_width", "batch_size")


def print_report(paths: list[Path], plot: Path | None = None) -> dict:
    """Print the table of one results.json, or of several runs of the same setup (e.g. seeds or
    agents run by separate invocations) pooled into one summary; `plot`: their learning curves."""
    documents = []
    for path in paths:
        try:
            results = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise SystemExit(f"{path}: cannot read a results file ({error})") from error
        if results.get("format") != RESULTS_FORMAT:
            raise SystemExit(f"{path}: expected format {RESULTS_FORMAT!r}, got {results.get('format')!r}")
        differing = [key for key in SAME_SETUP_KEYS if documents and results.get(key) != documents[0].get(key)]
        if differing:
            raise SystemExit(f"{path}: cannot pool with {paths[0]}: different {', '.join(differing)}")
        documents.append(results)
    first = documents[0]
    runs = [RunResult(**run) for results in documents for run in results["runs"]]
    seeds = [(run.agent, run.seed) for run in runs]
    if len(set(seeds)) != len(seeds):
        raise SystemExit("--report: the files repeat an (agent, seed) run; pool different seeds only")
    state = "" if all(results.get("complete", True) for results in documents) else " (INCOMPLETE: cut short)"
    print(f"## {first['env']}: {first['steps']} steps, width {first.get('agent_width', '?')}, batch "
          f"{first.get('batch_size', '?')}, {first['eval_episodes_per_task']} episodes x 5 tasks per evaluation{state}\n")
    summary = summarise(runs)
    print(markdown_table(summary, first["steps"], first["machine"]))
    for results in documents:
        print(f"Command: {results['command']}")
    if plot is not None:
        plot_learning_curves(runs, plot, f"{first['env']}: success vs training steps")
        print(f"Learning curves: {plot}")
    return dict(first, runs=[dataclasses.asdict(run) for run in runs], summary=summary)


def evaluate_checkpoints(workdirs: list[Path], args) -> list[dict]:
    """Evaluate the newest checkpoint of finished runs again, with `--eval-episodes` episodes per task
    and evaluation seed `--first-seed` (a larger, independent evaluation than the one during training)."""
    import torch

    from mqe.ogbench.evaluate import Evaluator, agent_policy

    evaluator = Evaluator(default_recipe(args.env).env_name, args.eval_episodes, seed=args.first_seed,
                          max_episode_steps=args.eval_max_steps)
    rows = []
    print(f"| run | agent | step | success % ({args.eval_episodes} x 5 episodes, eval seed {args.first_seed}) | per task % |")
    print("|---|---|---|---|---|")
    for workdir in workdirs:
        agent, state = load_finished_agent(workdir)
        meta = state["meta"]
        with torch.no_grad():
            result = evaluator.evaluate(agent_policy(agent))
        by_task = ", ".join(f"{100 * value:.0f}" for _, value in sorted(result.success_by_task.items()))
        print(f"| {workdir} | {meta['agent_name']} | {state['step']} | {100 * result.success:.1f} | {by_task} |")
        rows.append(dict(workdir=str(workdir), agent=meta["agent_name"], step=state["step"], success=result.success))
    evaluator.close()
    return rows


def load_finished_agent(workdir: Path):
    """(agent in eval mode, checkpoint state) of a finished mqe-bench ogbench run directory."""
    from mqe.agents import make_agent
    from mqe.checkpoint import load_latest_checkpoint

    found = load_latest_checkpoint(workdir)
    if found is None:
        raise SystemExit(f"{workdir}: no checkpoint (expected a run directory of mqe-bench ogbench)")
    _, state = found
    meta = state["meta"]
    agent = make_agent(meta["agent_name"], meta["agent_config"], tuple(meta["observation_spec"]), meta["action_dim"])
    agent.load_state_dict(state["agent"])
    agent.eval()
    return agent, state


def diagnose_checkpoints(workdirs: list[Path], args) -> list[dict]:
    """`--diagnose`: for finished runs of quasimetric agents, the Spearman of d vs BFS distance
    (2000 validation-state pairs) and d along the noiseless expert's path of every evaluation task."""
    from mqe.ogbench.collect import dataset_paths
    from mqe.ogbench.dataset import load_npz
    from mqe.ogbench.diagnostics import distance_rank_correlation, expert_path_distances

    recipe = default_recipe(args.env)
    _, val_path = dataset_paths(recipe, args.data_dir)
    states = load_npz(val_path)["observations"]
    maze = Maze.from_env(make_env(recipe.env_name))
    rows = []
    print("| run | step | Spearman d vs BFS | task | expert steps | Spearman d vs steps-to-go | d start | d end | d falls on % of steps |")
    print("|---|---|---|---|---|---|---|---|---|")
    for workdir in workdirs:
        agent, state = load_finished_agent(workdir)
        meta = state["meta"]
        if not agent.has_distance:
            raise SystemExit(f"{workdir}: agent {meta['agent_name']} has no distance to diagnose")
        bfs = distance_rank_correlation(agent, maze, states, np.random.default_rng(args.first_seed), SPEARMAN_PAIRS)
        paths = expert_path_distances(agent, recipe.env_name, seed=args.first_seed)
        for task, row in paths.items():
            print(f"| {workdir} | {state['step']} | {bfs:.3f} | {task} | {row['path_steps']} | "
                  f"{row['spearman_steps_to_go']:.3f} | {row['d_start']:.3f} | {row['d_end']:.3f} | "
                  f"{100 * row['fraction_decreasing']:.0f} |")
        rows.append(dict(workdir=str(workdir), step=state["step"], spearman_bfs=bfs, expert_paths=paths))
    return rows


def parse_args(argv: list[str] | None):
    from mqe.agents import AGENTS
    from mqe.ogbench.presets import BATCH_SIZE, VARIANTS

    names = [*AGENTS, *VARIANTS]  # registered agents and their benchmark variants

    parser = argparse.ArgumentParser(prog="mqe-bench ogbench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", default="pointmaze-medium-stitch", help="pointmaze-{medium,large,giant}-{navigate,stitch}")
    parser.add_argument("--agents", default="mqe,gcbc,gciql,qrl", help=f"comma-separated, from {', '.join(names)}")
    parser.add_argument("--steps", type=int, default=20_000, help="training steps per run")
    parser.add_argument("--seeds", type=int, default=1, help="seeds per agent")
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--eval-episodes", type=int, default=10, help="evaluation episodes per task (5 tasks)")
    parser.add_argument("--eval-every", type=int, default=0, help="steps between evaluations (0: only at the end)")
    parser.add_argument("--eval-max-steps", type=int, help="shorter evaluation episodes than OGBench's 1000 (smoke runs)")
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE, help=f"default {BATCH_SIZE} (paper Table 2)")
    parser.add_argument("--width", type=int, default=512, help="MLP width and latent size (paper: 512)")
    parser.add_argument("--torch-threads", type=int, default=0,
                        help="torch intra-op threads (0: torch's default); 1 is far faster on a loaded 2-core CPU")
    parser.add_argument("--log-every", type=int, default=500)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--data-dir", help=f"dataset cache (default ${DATA_DIR_ENV} or {DEFAULT_DATA_DIR})")
    parser.add_argument("--episodes", type=int, help="collector: training episodes (default OGBench's)")
    parser.add_argument("--episode-steps", type=int, help="collector: steps per episode (default OGBench's)")
    parser.add_argument("--out", help="output directory (default runs/ogbench/<env>-<time>)")
    parser.add_argument("--no-progress", action="store_true", help="no tqdm bar")
    parser.add_argument("--report", nargs="+", type=Path, metavar="RESULTS_JSON",
                        help="only print the table of existing results.json files (several: seeds pooled)")
    parser.add_argument("--plot", type=Path, metavar="PNG", help="with --report: write the pooled learning curves here")
    parser.add_argument("--evaluate", nargs="+", type=Path, metavar="RUN_DIR",
                        help="only evaluate the newest checkpoint of these run directories (runs/<agent>-seed<k>) on "
                             "--env with --eval-episodes per task and evaluation seed --first-seed")
    parser.add_argument("--diagnose", nargs="+", type=Path, metavar="RUN_DIR",
                        help="only print the critic diagnostics of these MQE/QRL run directories on --env: Spearman "
                             "of d vs BFS and d along the noiseless expert's path of each evaluation task")
    args = parser.parse_args(argv)
    args.agent_names = [name.strip() for name in args.agents.split(",") if name.strip()]
    unknown = [name for name in args.agent_names if name not in names]
    if unknown:
        parser.error(f"--agents: unknown {unknown}; known: {', '.join(names)}")
    if args.steps < 1 or args.seeds < 1 or args.eval_episodes < 1:
        parser.error("--steps, --seeds and --eval-episodes must be >= 1")
    return args


def main(argv: list[str] | None = None) -> dict:
    from mqe.ogbench.collect import canonical_dataset_name
    from mqe.ogbench.evaluate import Evaluator

    args = parse_args(argv)
    if args.report:
        return print_report(args.report, args.plot)
    args.env = canonical_dataset_name(args.env)
    if args.torch_threads:
        import torch

        torch.set_num_threads(args.torch_threads)
    if args.evaluate:
        return {"evaluations": evaluate_checkpoints(args.evaluate, args)}
    if args.diagnose:
        return {"diagnostics": diagnose_checkpoints(args.diagnose, args)}
    command = "mqe-bench ogbench " + " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    out = Path(args.out or f"runs/ogbench/{args.env}-{time.strftime('%Y%m%d-%H%M%S')}")
    out.mkdir(parents=True, exist_ok=True)

    recipe = default_recipe(args.env)
    recipe = dataclasses.replace(
        recipe, episodes=args.episodes or recipe.episodes, episode_steps=args.episode_steps or recipe.episode_steps
    )
    collect_started = time.perf_counter()
    train_path, val_path = ensure_dataset(recipe, args.data_dir, log=lambda line: print(line, file=sys.stderr))
    collect_seconds = time.perf_counter() - collect_started
    collection_info_path = train_path.with_suffix(".json")
    collection = json.loads(collection_info_path.read_text()) if collection_info_path.exists() else None

    maze = Maze.from_env(make_env(recipe.env_name))
    import torch.utils.tensorboard  # noqa: F401  (its slow first import must not count as training time)

    machine = machine_description()
    runs: list[RunResult] = []
    started = time.perf_counter()

    def write_results(complete: bool) -> dict:
        """results.json after every run (complete=false until the last), so a cut-short benchmark
        still leaves what it measured."""
        results = dict(
            format=RESULTS_FORMAT,
            benchmark="ogbench",
            complete=complete,
            command=command,
            env=args.env,
            dataset=dict(train=str(train_path), val=str(val_path), recipe=dataclasses.asdict(recipe),
                         collection=collection, prepare_seconds=round(collect_seconds, 1)),
            steps=args.steps,
            eval_episodes_per_task=args.eval_episodes,
            eval_max_steps=args.eval_max_steps or 1000,
            agent_width=args.width,
            batch_size=args.batch_size,
            machine=machine,
            total_seconds=round(time.perf_counter() - started, 1),
            summary=summarise(runs),
            runs=[dataclasses.asdict(run) for run in runs],
            written=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        )
        atomic_write_bytes(out / "results.json", lambda f: f.write(json.dumps(results, indent=2, allow_nan=False).encode()))
        return results

    for agent_name in args.agent_names:
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            evaluator = Evaluator(recipe.env_name, args.eval_episodes, seed=seed, max_episode_steps=args.eval_max_steps)
            runs.append(run_one(agent_name, seed, args, train_path, val_path, maze, evaluator, out))
            evaluator.close()
            write_results(complete=False)
    results = write_results(complete=True)
    total_seconds = results["total_seconds"]
    summary = results["summary"]
    plot_learning_curves(runs, out / "learning_curves.png", f"{args.env}: success vs training steps")

    print(f"\n## {args.env}: {args.steps} steps, {args.eval_episodes} episodes x 5 tasks per evaluation\n")
    print(markdown_table(summary, args.steps, machine))
    if collection:
        print(f"Dataset collection: {collection['steps']} steps at {collection['steps_per_second']} steps/s "
              f"({collection['seconds']} s)")
    print(f"Total wall time: {total_seconds:.0f} s; results in {out}")
    return results


if __name__ == "__main__":
    main()
