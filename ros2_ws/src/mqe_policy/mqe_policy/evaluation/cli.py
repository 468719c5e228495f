"""mqe-eval: run an evaluation session, report on it, plot one run.

  mqe-eval run PROTOCOL.yaml --results session.jsonl [--recordings DIR] [--no-wait] [-p NAME:=VALUE ...]
  mqe-eval report session.jsonl --out DIR
  mqe-eval timeline RUN.mcap --out timeline.png

`run` needs the arm and the camera running and no policy node: mqe-eval starts a fresh policy node
process per run (docs/evaluation.md shows the bring-up). Answers are read from the terminal; a script pipes them in (one line per question) with --no-wait.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _policy_parameters(words: list[str]) -> dict:
    values = {}
    for word in words:
        name, sep, text = word.partition(":=")
        if not sep or not name:
            raise SystemExit(f"mqe-eval: -p {word!r}: expected NAME:=VALUE")
        lowered = text.lower()
        if lowered in ("true", "false"):
            values[name] = lowered == "true"
        else:
            try:
                values[name] = int(text)
            except ValueError:
                try:
                    values[name] = float(text)
                except ValueError:
                    values[name] = text
    return values


def sim_goal(sim_task: str, seed: int, directory: Path) -> Path:
    """The goal image of a simulated task instance (goal_capture.write_sim_goal)."""
    try:
        from mqe import sim
    except ImportError as error:
        raise SystemExit(f"mqe-eval: target sim needs mqe.sim ({error})") from None
    from mqe_policy.goal_capture import write_sim_goal

    return write_sim_goal(sim.make_task(sim_task, seed), directory)


def run_command(args) -> int:
    from mqe_policy.evaluation.protocol import ProtocolError, load_protocol
    from mqe_policy.evaluation.results import ResultsError
    from mqe_policy.evaluation.scoring import PointsError
    from mqe_policy.evaluation.session import Evaluator, Session

    try:
        sim_names = None
        protocol = load_protocol(args.protocol)
        if protocol.target == "sim":
            from mqe import sim

            sim_names = tuple(sim.TASKS)
            protocol = load_protocol(args.protocol, sim_task_names=sim_names)
    except (ProtocolError, ImportError) as error:
        print(f"mqe-eval: {error}", file=sys.stderr)
        return 2

    import rclpy

    from mqe_policy.evaluation.ros_system import RosSystem, SystemUnavailable
    from mqe_policy.system import apply_dds_environment

    apply_dds_environment()
    rclpy.init()
    system = None
    try:
        recordings = Path(args.recordings or Path(args.results).with_suffix("").as_posix() + "_recordings")
        system = RosSystem(rate_hz=args.rate_hz, policy_parameters=_policy_parameters(args.param or []),
                           log_dir=recordings / "logs", goal_for_sim=sim_goal)
        evaluator = Evaluator(read=_reader(), wait_for_enter=not args.no_wait)
        session = Session(protocol, args.results, recordings, system, evaluator)
        count = session.run()
        print(f"mqe-eval: session complete ({count} runs this time); results in {args.results}; "
              f"report: mqe-eval report {args.results} --out DIR")
        return 0
    except (ProtocolError, ResultsError, PointsError, SystemUnavailable) as error:
        print(f"mqe-eval: {error}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, EOFError):
        print("\nmqe-eval: interrupted; everything recorded so far is kept - run the same command to resume", file=sys.stderr)
        return 130
    finally:
        if system is not None:
            system.close()
        rclpy.try_shutdown()


def _reader():
    def read(prompt: str) -> str:
        sys.stdout.write(prompt)
        sys.stdout.flush()
        line = sys.stdin.readline()
        if not line:
            raise EOFError("no more answers on standard input")
        if not sys.stdin.isatty():
            sys.stdout.write(line if line.endswith("\n") else line + "\n")
        return line.rstrip("\n")

    return read


def report_command(args) -> int:
    from mqe_policy.evaluation.report import write_report
    from mqe_policy.evaluation.results import ResultsError

    try:
        files = write_report(args.results, args.out, resamples=args.resamples)
    except (ResultsError, ValueError) as error:
        print(f"mqe-eval: {error}", file=sys.stderr)
        return 2
    print(Path(files["table.md"]).read_text())
    print(Path(files["differences.md"]).read_text())
    for name, path in files.items():
        print(f"wrote {path}")
    return 0


def timeline_command(args) -> int:
    from mqe_policy.evaluation.report import timeline_chart

    try:
        path = timeline_chart(args.recording, args.out)
    except (OSError, ValueError) as error:
        print(f"mqe-eval: {args.recording}: cannot read the recording ({error})", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mqe-eval", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run (or resume) an evaluation session")
    run.add_argument("protocol")
    run.add_argument("--results", required=True, help="the session's append-only results file (JSON lines)")
    run.add_argument("--recordings", help="folder of per-run MCAP files (default: next to the results file)")
    run.add_argument("--no-wait", action="store_true", help="do not wait for Enter before each run (scripts, simulator)")
    run.add_argument("--rate-hz", type=float, default=5.0, help="policy control rate (BridgeData V2: 5)")
    run.add_argument("-p", "--param", action="append", help="policy node parameter NAME:=VALUE for every run")
    run.set_defaults(handler=run_command)
    report = commands.add_parser("report", help="tables, bar chart and bootstrap differences from a results file")
    report.add_argument("results")
    report.add_argument("--out", required=True)
    report.add_argument("--resamples", type=int, default=10000)
    report.set_defaults(handler=report_command)
    timeline = commands.add_parser("timeline", help="steps-to-goal, gripper and end-effector height of one run")
    timeline.add_argument("recording")
    timeline.add_argument("--out", required=True)
    timeline.set_defaults(handler=timeline_command)
    args = parser.parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
