import pytest
import torch

from edgevision.errors import RegistryError
from edgevision.train.config import TrainConfig
from edgevision.train.optim import make_optimizer, make_scheduler


class Net(torch.nn.Sequential):
    """Linear → BatchNorm → Linear head, with timm's ``get_classifier``."""

    def __init__(self) -> None:
        super().__init__(torch.nn.Linear(4, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 2))

    def get_classifier(self) -> torch.nn.Module:
        return self[2]


def lrs(config: TrainConfig, steps_per_epoch: int = 10) -> list[float]:
    model = Net()
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
    model = Net()
    model[0].bias.requires_grad_(False)
    config = TrainConfig(data="x", lr=0.1, weight_decay=0.05, backbone_lr_scale=0.2)
    adamw = make_optimizer(model, config)
    assert isinstance(adamw, torch.optim.AdamW)
    head_w, head_b, body_w, body_1d = adamw.param_groups
    assert head_w["params"] == [model[2].weight] and head_b["params"] == [model[2].bias]
    assert head_w["lr"] == 0.1 and head_w["weight_decay"] == 0.05 and head_b["weight_decay"] == 0
    assert body_w["params"] == [model[0].weight] and body_w["lr"] == pytest.approx(0.02)
    assert len(body_1d["params"]) == 2 and body_1d["weight_decay"] == 0  # frozen bias left out
    sgd = make_optimizer(model, TrainConfig(data="x", optimizer="sgd", momentum=0.8))
    assert isinstance(sgd, torch.optim.SGD) and sgd.param_groups[0]["momentum"] == 0.8
    with pytest.raises(RegistryError):
        make_optimizer(model, TrainConfig(data="x", optimizer="lion"))
