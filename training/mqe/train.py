"""Train an agent (MQE, GCBC, GCIQL, QRL) on BridgeData V2 (or the synthetic Bridge-format set).

    mqe-train --agent mqe --data-dir ~/tensorflow_datasets/bridge_dataset/1.0.0 --workdir runs/mqe
    mqe-train --config my.yaml --set agent.alpha=0.3 data.camera=image_1 --steps 1000
    torchrun --nproc_per_node 4 -m mqe.train --data-dir ... --workdir runs/mqe_4gpu
    torchrun --nnodes 2 --nproc_per_node 8 --rdzv-backend c10d --rdzv-endpoint HOST:29400 -m mqe.train ...

A run's workdir holds config.json, metrics.jsonl, tensorboard/ and checkpoints/. Starting again with
the same workdir resumes from its newest readable checkpoint (bit-for-bit: model, optimizer, step,
RNG states and the loaders' positions are restored). Under torchrun each rank reads its own shard
stream (rank/world_size go to the loader), the agent is wrapped in DistributedDataParallel (nccl on
GPU, gloo on CPU), and only rank 0 logs and writes checkpoints. `--set batch_size=N` is per rank.
Across nodes the workdir must be on a shared filesystem: every rank resumes from rank 0's
checkpoint, which holds each rank's loader position and RNG states (resume with the same world
size). Each checkpoint also records every rank's parameter digest; a divergence stops the run.

The loop itself is dataset-agnostic and reused by the OGBench benchmark on in-memory states:

    fit(agent, train_source, config, workdir=None, *, val_source=None, transform=None,
        evaluate=None, meta=None, device="cpu", resume=True) -> dict[str, float]

      agent         an mqe.agents.base.Agent: `loss, metrics = agent(batch)`, `after_optimizer_step()`
      train_source  any object with next_batch() -> dict[str, np.ndarray] (mqe.data.batch layout),
                    state_dict() and load_state_dict(state) (states of tensors/primitives only);
                    an optional metrics() -> dict[str, float] is logged under data/
      config        mapping with the keys of get_fit_config() plus agent.lr (Adam's learning rate,
                    from the agent's get_config()); the full get_config() works as it is
      workdir       where metrics.jsonl, tensorboard/ and checkpoints/ go; None: no files at all
      val_source    like train_source; every val_every steps val_batches batches give val/... losses
      transform     f(batch: dict[str, Tensor], generator: torch.Generator) -> batch, applied to the
                    training batches on the device (image augmentation); its generator is checkpointed
      evaluate      f(agent, step) -> dict[str, float] called every eval_every steps on rank 0
                    (e.g. OGBench success rates; log them under eval/...)
      meta          JSON-able facts stored in every checkpoint (mqe-export reads them)
      device        torch device the batches and the agent live on
      resume        continue from the newest checkpoint in workdir if there is one
    It returns the last logged metrics. Seed python/numpy/torch (seed_everything) and build the
    agent before calling it, so that the initial parameters are reproducible.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import sys
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from mqe import checkpoint as ckpt
from mqe import config as config_lib
from mqe import contract
from mqe.files import atomic_write_bytes


class BatchSource(Protocol):
    def next_batch(self) -> dict[str, np.ndarray]: ...
    def state_dict(self) -> dict: ...
    def load_state_dict(self, state: dict) -> None: ...


def get_fit_config() -> dict:
    """The keys fit() reads (a subset of get_config())."""
    return dict(
        steps=500_000,  # optimizer steps in total (paper Table 4: 500k on Bridge)
        seed=0,  # seeds python, numpy, torch, the loaders and the augmentation stream
        log_every=100,  # steps between metric lines (JSONL + TensorBoard)
        val_every=5000,  # steps between validation losses on the val split (0: never)
        val_batches=4,  # batches averaged per validation
        eval_every=0,  # steps between evaluate() calls (0: never; OGBench rollouts use it)
        checkpoint_every=10_000,  # steps between checkpoints (the final step is always saved)
        keep_checkpoints=3,  # newest checkpoints kept on disk (0: keep all)
        progress=True,  # tqdm progress bar with steps/s and ETA (rank 0 only)
        ddp_find_unused_parameters=False,  # DDP option for agents whose loss skips some parameters
    )


def get_config() -> dict:
    """Bridge training defaults; every key can be overridden with --set key=value."""
    from mqe.agents import get_config as get_agent_config
    from mqe.data.augment import get_config as get_augment_config

    return dict(
        agent_name="mqe",  # agent to train: mqe | gcbc | gciql | qrl
        batch_size=128,  # transitions per optimizer step and rank (paper Table 4)
        device="auto",  # "auto" (cuda if available), "cpu", "cuda", "cuda:1", ...
        cpu_threads=0,  # torch intra-op threads (0 = torch's default); 1 suits small models on a busy CPU
        workdir="runs/mqe_bridge",  # run directory: config, metrics, TensorBoard, checkpoints
        control_rate_hz=contract.DEFAULT_CONTROL_RATE_HZ,  # robot control rate written into the export
        **get_fit_config(),
        data=_loader_config_without_goals(),  # BridgeData V2 loader (mqe.data.loader); goals come from agent.goal_sampling
        agent=get_agent_config("mqe"),  # agent hyperparameters (mqe.agents.<agent_name>)
        augment=get_augment_config(),  # image augmentation (mqe.data.augment)
    )


def _loader_config_without_goals() -> dict:
    from mqe.data.loader import get_config as get_loader_config

    config = get_loader_config()
    # One source of truth: the agent's goal_sampling (its gamma is also the critic's discount).
    del config["goals"]
    return config


def loader_config(config: Mapping) -> dict:
    """The loader's config: data.* plus the agent's goal sampling."""
    return {**config["data"], "goals": dict(config["agent"]["goal_sampling"])}


# ---------------------------------------------------------------------------------------------
# Seeding and distributed setup
# ---------------------------------------------------------------------------------------------
def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local_rank)
    return device


def setup_distributed(device_name: str) -> tuple[int, int, torch.device]:
    """(rank, world_size, device). Under torchrun (WORLD_SIZE > 1) joins the process group."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_name, local_rank)
    if world_size > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    rank = dist.get_rank() if dist.is_initialized() else 0
    return rank, world_size, device


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


# ---------------------------------------------------------------------------------------------
# Logging
# ---------------------------------------------------------------------------------------------
class MetricLogger:
    """Namespaced scalars to metrics.jsonl (one JSON object per line) and TensorBoard."""

    def __init__(self, workdir: Path | None):
        self.jsonl = None
        self.writer = None
        if workdir is not None:
            workdir.mkdir(parents=True, exist_ok=True)
            self.jsonl = open(workdir / "metrics.jsonl", "a", buffering=1)
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(workdir / "tensorboard"))

    def log(self, step: int, metrics: Mapping[str, float]) -> None:
        if self.jsonl is not None:
            self.jsonl.write(json.dumps({"step": step, **metrics}) + "\n")
        if self.writer is not None:
            for key, value in metrics.items():
                self.writer.add_scalar(key, value, step)

    def close(self) -> None:
        if self.jsonl is not None:
            self.jsonl.close()
        if self.writer is not None:
            self.writer.close()


def _to_device(batch: Mapping[str, np.ndarray], device: torch.device) -> dict[str, torch.Tensor]:
    return {key: torch.from_numpy(np.ascontiguousarray(value)).to(device, non_blocking=True) for key, value in batch.items()}


def _namespaced(prefix: str, metrics: Mapping[str, Any]) -> dict[str, float]:
    return {f"{prefix}/{key}" if not key.startswith(prefix + "/") else key: float(value) for key, value in metrics.items()}


def _mean_metrics(sums: dict[str, torch.Tensor], count: int) -> dict[str, float]:
    if not sums:
        return {}
    keys = list(sums)
    values = (torch.stack([sums[k].float() for k in keys]) / max(count, 1)).tolist()  # one device sync
    return dict(zip(keys, values))


def validate(agent: nn.Module, source: BatchSource, batches: int, device: torch.device) -> dict[str, float]:
    """Mean losses over `batches` validation batches, in eval mode and without touching the
    global RNG streams (so validation never changes the training trajectory)."""
    was_training = agent.training
    agent.eval()
    sums: dict[str, torch.Tensor] = {}
    devices = [device] if device.type == "cuda" else []
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=devices):
            for _ in range(batches):
                loss, metrics = agent(_to_device(source.next_batch(), device))
                for key, value in {"loss": loss, **metrics}.items():
                    sums[key] = sums.get(key, 0) + value.detach().float()
    finally:
        agent.train(was_training)
    return {f"val/{key}": value for key, value in _mean_metrics(sums, batches).items()}


# ---------------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------------
def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, batch: dict[str, torch.Tensor]):
    """One optimizer step on `batch`: forward, backward, optimizer, the agent's post-step hook
    (`model` may be the DDP wrapper of the agent). Returns (loss, metrics) as tensors."""
    loss, metrics = model(batch)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    getattr(model, "module", model).after_optimizer_step()
    return loss, metrics


def parameter_digest(module: nn.Module) -> str:
    """SHA-256 of every parameter and buffer, in state_dict order: equal digests = equal weights."""
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _gather(obj: Any) -> list:
    if not _distributed():
        return [obj]
    gathered = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def fit(
    agent: nn.Module,
    train_source: BatchSource,
    config: Mapping,
    workdir: str | Path | None = None,
    *,
    val_source: BatchSource | None = None,
    transform: Callable[[dict[str, torch.Tensor], torch.Generator], dict[str, torch.Tensor]] | None = None,
    evaluate: Callable[[nn.Module, int], Mapping[str, float]] | None = None,
    meta: Mapping | None = None,
    device: str | torch.device = "cpu",
    resume: bool = True,
) -> dict[str, float]:
    """Train `agent` for config["steps"] optimizer steps; see the module docstring."""
    device = torch.device(device)
    workdir = Path(workdir) if workdir is not None else None
    rank = dist.get_rank() if _distributed() else 0
    world_size = dist.get_world_size() if _distributed() else 1
    is_main = rank == 0
    steps = int(config["steps"])

    agent.to(device)
    agent.train()
    optimizer = torch.optim.Adam(agent.parameters(), lr=float(config["agent"]["lr"]))
    augment_generator = torch.Generator(device=device).manual_seed(int(config["seed"]) * 1000 + rank)

    start_step = 0
    if resume and workdir is not None:
        found = ckpt.load_latest_checkpoint(workdir, map_location="cpu")
        if found is not None:
            path, state = found
            ranks = state["ranks"]
            if len(ranks) != world_size:
                raise ckpt.CheckpointError(
                    f"{path}: written by {len(ranks)} rank(s), this run has {world_size}; resume with the same world size"
                )
            agent.load_state_dict(state["agent"])
            optimizer.load_state_dict(state["optimizer"])
            mine = ranks[rank]
            ckpt.restore_rng_state(mine["rng"])
            augment_generator.set_state(mine["augment_rng"])
            train_source.load_state_dict(mine["loader"])
            if val_source is not None and mine["val_loader"] is not None:
                val_source.load_state_dict(mine["val_loader"])
            start_step = int(state["step"])
            if is_main:
                print(f"resumed from {path} at step {start_step}", file=sys.stderr)

    model: nn.Module = agent
    if _distributed():
        model = nn.parallel.DistributedDataParallel(
            agent,
            device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=config["ddp_find_unused_parameters"],
        )

    def save(step: int) -> None:
        rank_state = {
            "rng": ckpt.capture_rng_state(),
            "augment_rng": augment_generator.get_state(),
            "loader": train_source.state_dict(),
            "val_loader": val_source.state_dict() if val_source is not None else None,
        }
        rank_state["parameter_digest"] = parameter_digest(agent)
        ranks = _gather(rank_state)  # collective: every rank takes part
        digests = {r["parameter_digest"] for r in ranks}
        if len(digests) > 1:
            raise RuntimeError(f"step {step}: the {world_size} ranks hold different parameters ({sorted(digests)})")
        if is_main and workdir is not None:
            state = {
                "step": step,
                "agent": agent.state_dict(),
                "optimizer": optimizer.state_dict(),
                "ranks": ranks,
                "meta": dict(meta or {}),
            }
            ckpt.save_checkpoint(ckpt.checkpoint_path(workdir, step), state)
            ckpt.prune_checkpoints(workdir, config["keep_checkpoints"])

    logger = MetricLogger(workdir if is_main else None)
    progress = None
    if is_main and config["progress"]:
        from tqdm import tqdm

        progress = tqdm(total=steps, initial=start_step, unit="step", dynamic_ncols=True, smoothing=0.05)

    sums: dict[str, torch.Tensor] = {}
    count = 0
    data_seconds = 0.0
    interval_start = time.perf_counter()
    last_metrics: dict[str, float] = {}
    try:
        for step in range(start_step + 1, steps + 1):
            data_start = time.perf_counter()
            batch = _to_device(train_source.next_batch(), device)
            if transform is not None:
                batch = transform(batch, augment_generator)
            data_seconds += time.perf_counter() - data_start

            loss, metrics = train_step(model, optimizer, batch)
            for key, value in {"train/loss": loss, **metrics}.items():
                sums[key] = sums.get(key, 0) + value.detach()
            count += 1

            if step % config["log_every"] == 0 or step == steps:
                elapsed = time.perf_counter() - interval_start
                last_metrics = _mean_metrics(sums, count)
                if not math.isfinite(last_metrics["train/loss"]):  # checked here, not per step: no GPU sync
                    raise FloatingPointError(f"non-finite training loss in steps {step - count + 1}..{step}: {last_metrics}")
                last_metrics["perf/steps_per_s"] = count / elapsed
                last_metrics["perf/samples_per_s"] = count * len(batch["actions"]) * world_size / elapsed
                last_metrics["perf/data_fraction"] = data_seconds / elapsed
                if hasattr(train_source, "metrics"):
                    last_metrics.update(_namespaced("data", train_source.metrics()))
                if is_main:
                    logger.log(step, last_metrics)
                    if progress is not None:
                        progress.set_postfix(loss=f"{last_metrics['train/loss']:.3g}", refresh=False)
                sums, count, data_seconds = {}, 0, 0.0
                interval_start = time.perf_counter()
            if is_main and val_source is not None and config["val_every"] and step % config["val_every"] == 0:
                val_metrics = validate(agent, val_source, config["val_batches"], device)
                logger.log(step, val_metrics)
                last_metrics.update(val_metrics)
            if is_main and evaluate is not None and config["eval_every"] and step % config["eval_every"] == 0:
                with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                    eval_metrics = dict(evaluate(agent, step))
                logger.log(step, eval_metrics)
                last_metrics.update(eval_metrics)
            if step % config["checkpoint_every"] == 0 or step == steps:
                save(step)
            if progress is not None:
                progress.update(1)
    finally:
        if progress is not None:
            progress.close()
        logger.close()
    return last_metrics


# ---------------------------------------------------------------------------------------------
# Bridge entry point
# ---------------------------------------------------------------------------------------------
def _agent_name_in_file(path: str) -> str | None:
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as error:
        raise config_lib.ConfigError(f"{path}: cannot read config file ({error})") from error
    return data.get("agent_name") if isinstance(data, dict) else None


def build_config_from(
    agent: str | None = None,
    data_dir: str | Path | None = None,
    workdir: str | Path | None = None,
    steps: int | None = None,
    overrides: list[str] = (),
    config_file: str | Path | None = None,
    trunk_weights: str | Path | None = None,
) -> dict:
    """get_config() with the chosen agent's defaults (agent, else agent_name in the file, else mqe),
    then the YAML file, then the named arguments, then `key=value` overrides."""
    from mqe.agents import get_config as get_agent_config

    config = get_config()
    agent = agent or (_agent_name_in_file(config_file) if config_file else None)
    config["agent_name"] = agent or config["agent_name"]
    config["agent"] = get_agent_config(config["agent_name"])
    if config_file:
        config = config_lib.apply_file(config, config_file)
    flags = []
    if data_dir is not None:
        flags.append(f"data.data_dir={json.dumps(str(data_dir))}")
    if workdir is not None:
        flags.append(f"workdir={json.dumps(str(workdir))}")
    if steps is not None:
        flags.append(f"steps={int(steps)}")
    if trunk_weights is not None:
        flags.append(f"agent.trunk_weights={json.dumps(str(trunk_weights))}")
    return config_lib.apply_overrides(config, flags + list(overrides))


def train(config: dict, resume: str = "auto") -> Path:
    """Train on BridgeData V2 (mqe.data.loader) as configured; returns the workdir."""
    from mqe.agents import make_agent
    from mqe.data.augment import augment_batch
    from mqe.data.loader import BridgeLoader

    rank, world_size, device = setup_distributed(config["device"])
    if config["cpu_threads"] > 0:
        torch.set_num_threads(int(config["cpu_threads"]))
    workdir = Path(config["workdir"])
    if resume == "never" and ckpt.list_checkpoints(workdir):
        raise SystemExit(f"{workdir} already holds checkpoints; use another --workdir or --resume auto")
    seed = int(config["seed"])
    seed_everything(seed + rank)

    data_config = loader_config(config)
    # A dataset the loader refuses (not TFDS, camera missing, bad episode) is one line, not a traceback.
    try:
        train_loader = BridgeLoader(data_config, data_config["train_split"], config["batch_size"], seed, rank, world_size)
    except ValueError as error:
        raise SystemExit(f"mqe-train: {error}") from error
    val_loader = None
    if rank == 0 and config["val_every"]:
        try:
            val_loader = BridgeLoader(data_config, data_config["val_split"], config["batch_size"], seed + 1, 0, 1)
        except ValueError as error:
            train_loader.close()  # its reader threads would keep the process alive
            raise SystemExit(f"mqe-train: {error}") from error
    observation_spec = ("image", int(train_loader.image_size))
    agent = make_agent(config["agent_name"], config["agent"], observation_spec, contract.ACTION_DIM)
    meta = {
        "agent_name": config["agent_name"],
        "agent_config": config["agent"],
        "observation_spec": list(observation_spec),
        "action_dim": contract.ACTION_DIM,
        "action_stats": train_loader.action_stats.to_json(),
        "image_size": int(train_loader.image_size),
        "camera": str(train_loader.camera),
        "dataset_fingerprint": str(train_loader.fingerprint),
        "gamma": float(agent_gamma(config)),
        "control_rate_hz": float(config["control_rate_hz"]),
        "config": config_lib.to_json(config),
        "world_size": world_size,
    }
    if rank == 0:
        atomic_write_bytes(workdir / "config.json", lambda f: f.write(json.dumps(config, indent=2, default=str).encode()))

    def augment(batch: dict[str, torch.Tensor], generator: torch.Generator) -> dict[str, torch.Tensor]:
        return augment_batch(batch, config["augment"], generator)

    try:
        fit(agent, train_loader, config, workdir, val_source=val_loader, transform=augment, meta=meta,
            device=device, resume=resume != "never")
    finally:
        for loader in (train_loader, val_loader):
            if loader is not None:
                loader.close()
        if dist.is_initialized():
            dist.destroy_process_group()
    return workdir


def agent_gamma(config: Mapping) -> float:
    """The discount the critic was trained with (it converts distances to steps at export)."""
    return float(config["agent"]["goal_sampling"]["gamma"])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="mqe-train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--agent", help="mqe | gcbc | gciql | qrl (default: mqe, or agent_name in --config)")
    parser.add_argument("--data-dir", help="bridge_dataset TFDS directory (the one holding dataset_info.json)")
    parser.add_argument("--workdir", help="run directory (default runs/mqe_bridge)")
    parser.add_argument("--steps", type=int, help="total optimizer steps")
    parser.add_argument("--config", help="YAML file of (nested) config keys")
    parser.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", help="overrides, e.g. agent.alpha=0.3")
    parser.add_argument("--trunk-weights", help="torchvision ImageNet ResNet34 .pth for the trunks")
    parser.add_argument("--resume", choices=["auto", "never"], default="auto",
                        help="auto: continue from the workdir's newest checkpoint (default); never: refuse if one exists")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config as JSON and exit")
    parser.add_argument("--skip-bad", action="store_true",
                        help="skip and count unreadable episodes (data/skipped_*) instead of stopping (= --set data.skip_bad=true)")
    args = parser.parse_args(argv)
    if args.skip_bad:
        args.set = [*args.set, "data.skip_bad=true"]
    try:
        config = build_config_from(args.agent, args.data_dir, args.workdir, args.steps, args.set, args.config,
                                   args.trunk_weights)
    except config_lib.ConfigError as error:
        parser.error(str(error))
    if args.print_config:
        print(json.dumps(config, indent=2, default=str))
        return
    train(config, resume=args.resume)


if __name__ == "__main__":
    main()
