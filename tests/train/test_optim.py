import pytest
import torch

from edgevision.errors import RegistryError
from edgevision.train.config import TrainConfig
from edgevision.train.optim import make_optimizer, make_scheduler


def lrs(config: TrainConfig, steps_per_epoch: int = 10) -> list[float]:
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.BatchNorm1d(4))
    opt = make_optimizer(model, config)
    sched = make_scheduler(opt, config, steps_per_epoch)
    out = []
    for _ in range(config.epochs * steps_per_epoch):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_cosine_with_warmup():
    config = TrainConfig(data="x", epochs=5, warmup_epochs=1, lr=0.1)
    lr = lrs(config)
    assert lr[0] == pytest.approx(0.001)  # 1% of the peak
    assert lr[:10] == sorted(lr[:10]) and lr[10] == pytest.approx(0.1)
    assert lr[10:] == sorted(lr[10:], reverse=True) and lr[-1] < 0.001


def test_step_schedule():
    config = TrainConfig(data="x", epochs=6, warmup_epochs=0, schedule="step", step_size=2, lr=1.0)
    lr = lrs(config)
    assert lr[0] == 1.0 and lr[20] == pytest.approx(0.1) and lr[45] == pytest.approx(0.01)


def test_optimizers_and_no_decay_on_norms():
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.BatchNorm1d(4))
    model[0].bias.requires_grad_(False)
    adamw = make_optimizer(model, TrainConfig(data="x", weight_decay=0.05))
    assert isinstance(adamw, torch.optim.AdamW)
    decay, no_decay = adamw.param_groups
    assert decay["weight_decay"] == 0.05 and len(decay["params"]) == 1
    assert no_decay["weight_decay"] == 0.0 and len(no_decay["params"]) == 2  # frozen bias left out
    sgd = make_optimizer(model, TrainConfig(data="x", optimizer="sgd", momentum=0.8))
    assert isinstance(sgd, torch.optim.SGD) and sgd.param_groups[0]["momentum"] == 0.8
    with pytest.raises(RegistryError):
        make_optimizer(model, TrainConfig(data="x", optimizer="lion"))
