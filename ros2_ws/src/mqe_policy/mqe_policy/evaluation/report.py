"""mqe-eval report: tables and plots from a results file (and the runs' MCAP files). No ROS needed:
MCAP files are decoded with mcap-ros2-support.

  <out>/table.md, table.csv   per task and method: progress mean ± s.e., binary successes (Table 5)
  <out>/progress.png          task progress bars with standard-error bars (the paper's Fig. 4)
  <out>/differences.md        bootstrap 95 % CI of the progress difference for each pair of methods
                              (and A/B win rates when the session recorded preferences)
  mqe-eval timeline RUN.mcap  steps-to-goal, gripper and end-effector height over time
"""

from __future__ import annotations

import csv
import io
import itertools
from collections import defaultdict
from pathlib import Path

from mqe_policy.evaluation.results import ResultsFile
from mqe_policy.evaluation.scoring import bootstrap_difference, summarize, win_rate


def collect(records: list[dict]) -> tuple[list[str], list[str], dict, dict]:
    """(tasks in first-seen order, methods sorted, {(task, method): [points]}, {task: max_points})."""
    tasks, methods, points, max_points = [], set(), defaultdict(list), {}
    for record in records:
        if record["record"] != "run":
            continue
        if record["task"] not in tasks:
            tasks.append(record["task"])
        methods.add(record["method"])
        points[(record["task"], record["method"])].append(record["points"])
        max_points[record["task"]] = record["max_points"]
    return tasks, sorted(methods), points, max_points


def table_rows(tasks, methods, points, max_points) -> list[dict]:
    rows = []
    for task in tasks:
        for method in methods:
            summary = summarize(points.get((task, method), []), max_points[task])
            rows.append({"task": task, "method": method, "trials": summary.trials, "progress_mean": summary.progress_mean,
                         "progress_se": summary.progress_se, "successes": summary.successes, "max_points": max_points[task]})
    return rows


def markdown_table(tasks, methods, points, max_points) -> str:
    lines = ["Task progress (mean ± s.e.) and binary success counts per task and method.", "",
             "| Task | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods)]
    for task in tasks:
        cells = []
        for method in methods:
            summary = summarize(points.get((task, method), []), max_points[task])
            cells.append("-" if summary.trials == 0 else
                         f"{summary.progress_mean:.2f} ± {summary.progress_se:.2f} ({summary.successes}/{summary.trials})")
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def csv_table(rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]) if rows else ["task"], lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.6f}" if isinstance(v, float) else v) for k, v in row.items()})
    return buffer.getvalue()


def differences_markdown(records, tasks, methods, points, max_points, resamples: int = 10000) -> str:
    lines = ["Progress difference (row method minus column method), percentile bootstrap 95 % CI over trials "
             f"({resamples} resamples).", "", "| Task | Pair | Difference | 95 % CI |", "|---|---|---|---|"]
    for task in tasks:
        for a, b in itertools.combinations(methods, 2):
            pa = [p / max_points[task] for p in points.get((task, a), [])]
            pb = [p / max_points[task] for p in points.get((task, b), [])]
            diff, low, high = bootstrap_difference(pa, pb, resamples=resamples)
            lines.append(f"| {task} | {a} − {b} | {diff:+.3f} | [{low:+.3f}, {high:+.3f}] |")
    preferences = [r for r in records if r["record"] == "preference"]
    if preferences and len(methods) == 2:
        a, b = methods
        lines += ["", f"A/B preferences ({a} vs {b}; ties count half):", "", "| Task | Win rate of " + a + " | Wins | Ties | Losses |",
                  "|---|---|---|---|---|"]
        for task in tasks + ["all"]:
            chosen = [r["preferred"] for r in preferences if task == "all" or r["task"] == task]
            rate, wins, ties, losses = win_rate(chosen, a, b)
            lines.append(f"| {task} | {rate:.2f} | {wins} | {ties} | {losses} |")
    return "\n".join(lines) + "\n"


def progress_chart(path: Path, tasks, methods, points, max_points, title: str = "Task progress") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    width = 0.8 / max(len(methods), 1)
    figure, axes = plt.subplots(figsize=(max(6.0, 1.4 * len(tasks) + 2), 3.6), dpi=120)
    x = np.arange(len(tasks))
    for index, method in enumerate(methods):
        summaries = [summarize(points.get((task, method), []), max_points[task]) for task in tasks]
        means = [s.progress_mean if s.trials else 0.0 for s in summaries]
        errors = [s.progress_se if s.trials else 0.0 for s in summaries]
        axes.bar(x + (index - (len(methods) - 1) / 2) * width, means, width, yerr=errors, capsize=3, label=method)
    axes.set_xticks(x, [task.replace("_", " ") for task in tasks], rotation=15)
    axes.set_ylim(0, 1.05)
    axes.set_ylabel("task progress")
    axes.set_title(title)
    axes.legend(fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return path


def write_report(results_path: str | Path, out_dir: str | Path, resamples: int = 10000) -> dict[str, Path]:
    records = ResultsFile(results_path).records
    tasks, methods, points, max_points = collect(records)
    if not tasks:
        raise ValueError(f"{results_path}: no finished runs to report")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {"table.md": out / "table.md", "table.csv": out / "table.csv", "differences.md": out / "differences.md",
             "progress.png": out / "progress.png"}
    files["table.md"].write_text(markdown_table(tasks, methods, points, max_points))
    files["table.csv"].write_text(csv_table(table_rows(tasks, methods, points, max_points)))
    files["differences.md"].write_text(differences_markdown(records, tasks, methods, points, max_points, resamples))
    progress_chart(files["progress.png"], tasks, methods, points, max_points)
    return files


# --- a run's recording ----------------------------------------------------------------------------
def read_recording(path: str | Path) -> dict:
    """Decoded topics {topic: [(log_time_s, message)]}, attachments {name: bytes}, metadata {name: {..}}."""
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    series: dict[str, list] = defaultdict(list)
    with open(path, "rb") as handle:
        reader = make_reader(handle, decoder_factories=[DecoderFactory()])
        for _, channel, message, decoded in reader.iter_decoded_messages():
            series[channel.topic].append((message.log_time * 1e-9, decoded))
        attachments = {a.name: a.data for a in reader.iter_attachments()}
        metadata = {m.name: dict(m.metadata) for m in reader.iter_metadata()}
        summary = reader.get_summary()
        channels = {c.topic: c for c in summary.channels.values()} if summary else {}
        schemas = {s.id: s for s in summary.schemas.values()} if summary else {}
    return {"series": dict(series), "attachments": attachments, "metadata": metadata, "channels": channels, "schemas": schemas}


def timeline_chart(recording: str | Path, path: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = read_recording(recording)
    series = data["series"]

    def points_of(suffix, value):
        for topic, items in series.items():
            if topic.endswith(suffix):
                return [t for t, _ in items], [value(m) for _, m in items]
        return [], []

    t_steps, steps = points_of("policy/steps_to_goal", lambda m: m.data)
    t_grip, grip = points_of("arm/commanded_gripper", lambda m: m.data)
    t_pose, height = points_of("arm/commanded_pose", lambda m: m.pose.position.z)
    t_act, act_grip = points_of("policy/action", lambda m: m.position[6])
    starts = [t for t in (t_steps[:1] + t_grip[:1] + t_pose[:1] + t_act[:1])]
    origin = min(starts) if starts else 0.0
    shift = lambda ts: [t - origin for t in ts]  # noqa: E731
    figure, axes = plt.subplots(3, 1, figsize=(7, 5.5), dpi=110, sharex=True)
    axes[0].plot(shift(t_steps), steps, ".-", markersize=3)
    axes[0].set_ylabel("steps to goal")
    axes[1].step(shift(t_grip), grip, where="post", label="commanded (arm)")
    axes[1].plot(shift(t_act), act_grip, ".", markersize=3, label="action (policy)")
    axes[1].set_ylabel("gripper")
    axes[1].legend(fontsize=7)
    axes[2].plot(shift(t_pose), height)
    axes[2].set_ylabel("end-effector z (m)")
    axes[2].set_xlabel("time since the first message (s)")
    meta = data["metadata"].get("mqe_eval", {})
    figure.suptitle(f"{Path(recording).name}  (policy {meta.get('label', '?')}, trial {meta.get('trial', '?')})", fontsize=9)
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return path
