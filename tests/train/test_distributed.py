"""DistributedDataParallel on 2 CPU processes (gloo): both ranks must end with the same weights."""

import json
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from edgevision.train.config import TrainConfig
from tests.helpers import free_port, set_torchrun_env


def _worker(rank: int, world: int, port: int, config: dict, out: str) -> None:
    set_torchrun_env(rank, world, port)
    torch.set_num_threads(1)
    from edgevision.train import train

    result = train(TrainConfig(**config))
    state = {k: v.detach().cpu().clone() for k, v in result.model.state_dict().items()}
    torch.save(
        {"state": state, "history": result.history, "metrics": result.metrics["test"]["top1"]},
        Path(out) / f"rank{rank}.pt",
    )


@pytest.mark.slow
def test_two_cpu_ranks_end_identical(tiny_config, tmp_path):
    config = tiny_config(epochs=2, dropout=0.3, augment="default", batch_size=2, ema=0.9)
    config = config.to_dict()
    config["split"] = tuple(config["split"])
    mp.spawn(_worker, args=(2, free_port(), config, str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2))
    assert r0["state"].keys() == r1["state"].keys()
    for key in r0["state"]:
        assert torch.equal(r0["state"][key], r1["state"][key]), key  # incl. BatchNorm stats
    timing = {"seconds", "images_per_s"}  # each rank's own clock
    strip = [
        [{k: v for k, v in h.items() if k not in timing} for h in r["history"]] for r in (r0, r1)
    ]
    assert strip[0] == strip[1] and r0["metrics"] == r1["metrics"]
    run = Path(config["out"])
    assert (run / "checkpoint_best.pt").is_file() and (run / "metrics.json").is_file()
    # each rank trained on its own shard: together they saw the train split once per epoch
    train_size = len(json.loads((run / "split.json").read_text())["items"]["train"])
    assert train_size - 4 < r0["history"][0]["train_images"] <= train_size
    from edgevision.train.checkpoint import load_checkpoint

    saved = load_checkpoint(run).model.state_dict()
    assert all(torch.equal(saved[k], r0["state"][k]) for k in saved)
