"""The one learner step (trainers/modules/learner.py): the weighted sum of named parts, clip, finite check before the step."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from trainers.modules.learner import learner_step, weighted_total
from worldmodels.finite import NonFiniteError


def _model_and_parts(seed: int = 0):
    torch.manual_seed(seed)
    model = nn.Linear(3, 2)
    x = torch.randn(5, 3)
    out = model(x)
    return model, {"a": out.pow(2).mean(), "b": out.abs().mean()}


def test_weighted_total_and_a_zero_scale_gives_zero_gradient():
    model, parts = _model_and_parts()
    assert torch.allclose(weighted_total(parts, {"a": 2.0, "b": 0.5}), 2 * parts["a"] + 0.5 * parts["b"])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    before = [p.clone() for p in model.parameters()]
    norm = learner_step(optimizer, parts, scales={"a": 0.0, "b": 0.0}, where="test")
    assert float(norm) == 0.0  # zero at zero weight: nothing moves
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_a_step_moves_the_weights_by_the_clipped_gradient():
    model, parts = _model_and_parts()
    reference, reference_parts = _model_and_parts()
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    norm = learner_step(optimizer, parts, scales={"a": 1.0, "b": 1.0}, clip=1e-3, where="test")
    # The same step by hand: the plain sum's gradient, scaled to norm 1e-3.
    (reference_parts["a"] + reference_parts["b"]).backward()
    grads = [p.grad for p in reference.parameters()]
    total = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
    assert torch.isfinite(norm) and torch.allclose(norm, total)  # the norm before clipping is returned
    for moved, start, grad in zip(model.parameters(), reference.parameters(), grads):
        torch.testing.assert_close(moved, start - grad * (1e-3 / (float(total) + 1e-6)))


def test_a_non_finite_part_stops_before_the_step_naming_the_part():
    model, parts = _model_and_parts()
    parts["b"] = parts["b"] * float("nan")
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    before = [p.clone() for p in model.parameters()]
    with pytest.raises(NonFiniteError, match=r"^fit step 7: loss part 'b' is nan; training stopped before this step "
                                             r"was applied.*; lower --lr$"):
        learner_step(optimizer, parts, where="fit step 7", hint=lambda: "lower --lr")
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))  # never applied
    assert not optimizer.state  # Adam never stepped either


def test_several_optimisers_step_together_on_one_backward():
    torch.manual_seed(0)
    first, second = nn.Linear(2, 1), nn.Linear(2, 1)
    x = torch.randn(4, 2)
    parts = {"first": first(x).pow(2).mean(), "second": second(x).pow(2).mean()}  # disjoint graphs
    optimizers = [torch.optim.SGD(first.parameters(), lr=0.1), torch.optim.SGD(second.parameters(), lr=0.1)]
    before = [p.clone() for p in (*first.parameters(), *second.parameters())]
    learner_step(optimizers, parts, where="test")
    after = list((*first.parameters(), *second.parameters()))
    assert all(not torch.equal(a, b) for a, b in zip(before, after))  # both moved


def test_scales_must_name_exactly_the_parts():
    model, parts = _model_and_parts()
    with pytest.raises(AssertionError, match="loss parts"):
        learner_step(torch.optim.SGD(model.parameters(), lr=0.1), parts, scales={"a": 1.0}, where="test")
