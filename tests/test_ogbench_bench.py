"""OGBench benchmark smoke run: every agent through the real training loop (mqe.train.fit), the
real evaluator and the diagnostics, on a tiny collected pointmaze dataset; plus the presets."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mqe.agents import get_config as agent_defaults
from mqe.bench.ogbench import main as bench_main
from mqe.ogbench.presets import agent_config


def test_presets_follow_the_paper_and_ogbench():
    mqe = agent_config("mqe", "pointmaze-medium-stitch-v0")
    assert mqe["trunk"] == "mlp" and mqe["state_trunk_dims"] == ()
    assert mqe["value_hidden_dims"] == (512, 512, 512) == mqe["actor_hidden_dims"]
    assert mqe["latent_dim"] == 512 and mqe["layer_norm"] and mqe["clip_actor_actions"]
    assert mqe["alpha"] == 0.03 and mqe["lr"] == 3e-4
    assert (mqe["goal_sampling"]["gamma"], mqe["goal_sampling"]["waypoint_lambda"], mqe["goal_sampling"]["p_next_waypoint"]) == (0.995, 0.95, 0.2)
    assert agent_config("gciql", "pointmaze-medium-navigate-v0")["alpha"] == 0.003
    assert agent_config("gciql", "pointmaze-giant-navigate-v0")["goal_sampling"]["gamma"] == 0.995
    assert agent_config("qrl", "pointmaze-medium-navigate-v0")["alpha"] == 0.0003
    assert agent_config("qrl", "pointmaze-medium-navigate-v0")["goal_sampling"]["value_p_randomgoal"] == 1.0
    for name in ("mqe", "gcbc", "gciql", "qrl"):  # OGBench: random actor goals on stitch datasets only
        assert agent_config(name, "pointmaze-medium-stitch-v0")["goal_sampling"]["actor_p_randomgoal"] == 0.5
        assert agent_config(name, "pointmaze-medium-navigate-v0")["goal_sampling"]["actor_p_randomgoal"] == 0.0
    small = agent_config("mqe", "pointmaze-medium-stitch-v0", width=64)
    assert small["value_hidden_dims"] == (64, 64, 64) and small["latent_dim"] == 64
    for name in ("mqe", "gcbc", "gciql", "qrl"):  # the presets only change existing keys
        assert set(agent_config(name, "pointmaze-large-stitch-v0")) == set(agent_defaults(name))


def test_benchmark_smoke_run_of_every_agent(tmp_path, capsys):
    out = tmp_path / "bench"
    results = bench_main([
        "--env", "pointmaze-medium-navigate", "--agents", "mqe,gcbc,gciql,qrl",
        "--steps", "4", "--eval-every", "2", "--eval-episodes", "1", "--eval-max-steps", "20",
        "--episodes", "10", "--episode-steps", "30", "--data-dir", str(tmp_path / "data"),
        "--width", "32", "--batch-size", "16", "--log-every", "2",
        "--out", str(out), "--no-progress",
    ])
    printed = capsys.readouterr().out
    assert json.loads((out / "results.json").read_text()) == json.loads(json.dumps(results))
    assert "NaN" not in (out / "results.json").read_text()  # strict JSON for report tooling
    results = json.loads((out / "results.json").read_text())
    assert results["format"] == "mqe.bench.ogbench/1" and results["complete"] and results["steps"] == 4
    assert results["dataset"]["recipe"]["episodes"] == 10
    assert [run["agent"] for run in results["runs"]] == ["mqe", "gcbc", "gciql", "qrl"]
    for run in results["runs"]:
        assert [step for step, _ in run["curve"]] == [2, 4]
        assert 0.0 <= run["success"] <= 1.0 and sorted(run["success_by_task"]) == ["1", "2", "3", "4", "5"]
        assert run["steps_per_second"] > 0
        metrics = [json.loads(line) for line in (out / "runs" / f"{run['agent']}-seed0" / "metrics.jsonl").open()]
        assert any("eval/success" in line for line in metrics) and any("val/loss" in line for line in metrics)
        assert list((out / "runs" / f"{run['agent']}-seed0" / "checkpoints").iterdir())
        quasimetric = run["agent"] in ("mqe", "qrl")
        assert (run["spearman"] is not None) == quasimetric
        if quasimetric:
            assert np.isfinite(run["spearman"]) and -1.0 <= run["spearman"] <= 1.0
            assert (out / f"distance_{run['agent']}.png").stat().st_size > 1000
        assert f"| {run['agent']} |" in printed
    assert (out / "learning_curves.png").stat().st_size > 1000
    assert "Machine:" in printed and results["machine"]["cores"] >= 1
    bench_main(["--report", str(out / "results.json"), "--plot", str(tmp_path / "pooled.png")])
    assert "| qrl |" in capsys.readouterr().out
    assert (tmp_path / "pooled.png").stat().st_size > 1000
    with pytest.raises(SystemExit, match="repeat"):  # pooling is for different seeds only
        bench_main(["--report", str(out / "results.json"), str(out / "results.json")])
    # a finished run's checkpoint evaluated again, with other episodes
    evaluated = bench_main(["--env", "pointmaze-medium-navigate", "--evaluate", str(out / "runs" / "gcbc-seed0"),
                            "--eval-episodes", "1", "--eval-max-steps", "20", "--first-seed", "5"])["evaluations"]
    assert [(row["agent"], row["step"]) for row in evaluated] == [("gcbc", 4)] and 0.0 <= evaluated[0]["success"] <= 1.0
    assert "| gcbc | 4 |" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="no checkpoint"):
        bench_main(["--env", "pointmaze-medium-navigate", "--evaluate", str(tmp_path)])


def test_benchmark_rejects_unknown_agents(tmp_path):
    with pytest.raises(SystemExit):
        bench_main(["--agents", "mqe,sac", "--out", str(tmp_path)])


def test_mqe_variants_select_the_release_and_the_previous_forms():
    from mqe.bench.ogbench import parse_args
    from mqe.ogbench.presets import MQE_PREVIOUS, MQE_RELEASE, agent_config, base_agent

    release, previous, default = (agent_config(name, "pointmaze-large-stitch", width=64)
                                  for name in ("mqe-release", "mqe-previous", "mqe"))
    assert {k: release[k] for k in MQE_RELEASE} == MQE_RELEASE == {k: default[k] for k in MQE_RELEASE}
    assert {k: previous[k] for k in MQE_PREVIOUS} == MQE_PREVIOUS
    for key in ("alpha", "goal_sampling", "latent_dim", "value_hidden_dims"):  # only the five forms differ
        assert release[key] == previous[key]
    assert base_agent("mqe-previous") == "mqe" and base_agent("gciql") == "gciql"
    assert parse_args(["--agents", "mqe-release,mqe-previous,tra"]).agent_names == ["mqe-release", "mqe-previous", "tra"]
