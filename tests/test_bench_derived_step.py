"""bench/derived_step.py times a real alternative: its hand-derived gradients are autograd's, to rounding."""

import dataclasses

import pytest
import torch

from conftest import load_bench
from vaelab.config import TrainConfig
from vaelab.data import grey_levels, load_split
from vaelab.presets import load_preset
from vaelab.training import build_model, build_objective, build_optimizer, train_step


@pytest.fixture(scope="module")
def bench():
    return load_bench("derived_step")


def _config(cell, **changes):
    return dataclasses.replace(TrainConfig.from_dict({**load_preset(f"iwae/1-layer/{cell}"), "epochs": None}),
                               **changes)


@pytest.mark.parametrize("cell, changes", [
    ("vae-k1", {}), ("vae-k5", {}), ("iwae-k5", {}), ("iwae-k1", {}), ("iwae-k50", {}),
    ("vae-k5", {"activation": "relu", "variance": "softplus", "objective": "beta", "beta": 4.0}),
    ("iwae-k5", {"activation": "relu", "variance": "softplus"}),
    ("vae-k1", {"variance": "softplus"}), ("iwae-k5", {"activation": "relu"}),
])
def test_the_derived_gradient_is_autograds_with_the_same_terms_and_draws(bench, cell, changes):
    config = _config(cell, **changes)
    x = torch.bernoulli(grey_levels(load_split("test").images[:20]), generator=torch.Generator().manual_seed(3))
    model = build_model(config, (28, 28), x.mean(0).double())
    for p in model.parameters():  # trained-looking weights: biases off zero, so every term of the chain rule counts
        p.data.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    ours, theirs = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    terms = build_objective(config)(model, x, theirs)
    model.zero_grad(set_to_none=True)
    (-terms.value.mean()).backward()
    expected = {name: p.grad.clone() for name, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    derived = bench.derived_terms(model, x, ours, config.objective, config.samples, config.beta)
    assert torch.equal(ours.get_state(), theirs.get_state())  # the same draws, so a run's random stream is kept
    for got, want in zip(derived, terms, strict=True):  # value, loglike, kl: the same ops, the same bits
        assert torch.equal(got, want.detach())
    for name, p in model.named_parameters():
        scale = expected[name].abs().max()
        assert scale > 0, name
        torch.testing.assert_close(p.grad, expected[name], rtol=0, atol=1e-4 * scale.item(), msg=name)


def test_the_derived_step_trains_as_vaelabs_does_to_rounding(bench):
    config = _config("iwae-k5")
    x = torch.bernoulli(grey_levels(load_split("test").images[:20]), generator=torch.Generator().manual_seed(3))
    runs = []
    for step in (train_step, bench.derived_step(config)):
        model = build_model(config, (28, 28), x.mean(0).double())
        optimizer = build_optimizer(config, model, torch.device("cpu"))
        generator = torch.Generator().manual_seed(0)
        values = [step(model, optimizer, x, generator, build_objective(config)).value.mean().item()
                  for _ in range(10)]
        runs.append((values, model.state_dict()))
    (values, state), (derived_values, derived_state) = runs
    assert values[-1] > values[0] + 5  # ten steps of Adam on one batch climb (6 nats), with either gradient
    assert derived_values == pytest.approx(values, abs=0.01)
    for name in state:  # Adam steps by about lr = 1e-3 whatever a gradient's size, so the rounding of the
        # tiniest gradients moves a few weights by some hundredths of a step; none by a tenth
        torch.testing.assert_close(derived_state[name], state[name], rtol=0, atol=1e-4)


def test_the_derived_step_refuses_what_it_has_no_gradients_for(bench):
    with pytest.raises(ValueError, match="mlp model with elbo, beta or iwae, not mlp2"):
        bench.derived_step(_config("vae-k1", model="mlp2"))
