"""OGBench pointmaze for learner fidelity (issue #4): maze geometry and BFS (`maze`), the dataset
collector with OGBench's recipe (`collect`), the in-memory dataset (`dataset`), the 5-task evaluator
(`evaluate`), state-task presets for every agent (`presets`) and quasimetric diagnostics
(`diagnostics`). The benchmark command is `mqe-bench ogbench` (`mqe.bench.ogbench`)."""
