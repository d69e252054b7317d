"""Target assignment and the loss: every object is learned, the loss can fit a batch."""

import torch

from edgevision.tasks.detect.loss import assign, detection_loss
from edgevision.tasks.detect.model import create_detector, make_points

SIZE = (96, 128)


def test_every_box_gets_a_positive_and_only_inside_points_are_positive():
    points, strides = make_points(SIZE)
    boxes = torch.tensor([[10.0, 10, 16, 15], [40, 20, 110, 90], [2, 80, 5, 83]])
    index, positive = assign(points, strides, boxes)
    assert set(index[positive].tolist()) == {0, 1, 2}  # the 3x3 box too (nearest point)
    x, y = points[positive, 0], points[positive, 1]
    b = boxes[index[positive]]
    big = index[positive] != 2  # the tiny box takes its nearest point even outside it
    assert ((x > b[:, 0]) & (x < b[:, 2]) & (y > b[:, 1]) & (y < b[:, 3]))[big].all()
    assert (index[~positive] == -1).all()


def test_overlapping_boxes_give_a_point_to_the_smaller_one():
    points, strides = make_points(SIZE)
    boxes = torch.tensor([[0.0, 0, 64, 64], [20, 20, 44, 44]])
    index, positive = assign(points, strides, boxes)
    centre = ((points[:, 0] - 32).abs() <= 4) & ((points[:, 1] - 32).abs() <= 4) & (strides == 8)
    assert (index[centre & positive] == 1).all() and (centre & positive).any()


def test_no_boxes_is_all_background():
    points, strides = make_points(SIZE)
    index, positive = assign(points, strides, torch.zeros(0, 4))
    assert not positive.any() and (index == -1).all()


def test_the_loss_fits_one_batch():
    torch.manual_seed(0)
    model = create_detector("test_efficientnet", 2, SIZE, weights=None)
    x = torch.randn(2, 3, *SIZE)
    targets = [
        {"boxes": torch.tensor([[10.0, 12, 40, 50]]), "labels": torch.tensor([1])},
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)},
    ]
    opt = torch.optim.AdamW(model.parameters(), 3e-3)
    losses = []
    for _ in range(40):
        loss, parts = detection_loss(model, model(x), targets)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    assert set(parts) == {"cls", "box", "quality"}
    assert losses[-1] < 0.5 * losses[0]
