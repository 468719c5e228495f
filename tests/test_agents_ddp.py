"""Every agent under DistributedDataParallel wrapping the whole agent (2 CPU ranks over gloo,
find_unused_parameters=False): training steps run and the ranks end with identical parameters."""

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from mqe.agents import AGENTS, make_agent

from test_agents_smoke import make_batch, tiny

STEPS = 2


def train_on_rank(rank: int, world_size: int, rendezvous: str, results) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=world_size)
    try:
        for name in sorted(AGENTS):
            torch.manual_seed(0)  # same initial parameters on every rank
            agent = make_agent(name, tiny(name, "mlp"), ("state", 4), 7)
            model = torch.nn.parallel.DistributedDataParallel(agent, find_unused_parameters=False)
            optimizer = torch.optim.Adam([p for p in agent.parameters() if p.requires_grad], lr=1e-3)
            generator = torch.Generator().manual_seed(100 + rank)  # each rank sees different data
            for _ in range(STEPS):
                loss, _ = model(make_batch("state", generator))
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                agent.after_optimizer_step()
            results[(name, rank)] = torch.cat([p.detach().flatten() for p in agent.parameters()])
    finally:
        dist.destroy_process_group()


def test_every_agent_trains_under_ddp_with_identical_ranks(tmp_path):
    world_size = 2
    with mp.Manager() as manager:
        results = manager.dict()
        mp.spawn(train_on_rank, args=(world_size, str(tmp_path / "rendezvous"), results), nprocs=world_size)
        results = dict(results)
    for name in AGENTS:
        first, second = results[(name, 0)], results[(name, 1)]
        assert torch.isfinite(first).all(), name
        assert torch.equal(first, second), f"{name}: ranks diverged"
