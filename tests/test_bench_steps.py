"""bench/bench_steps.py compares like with like: its plain loop's bound is vaelab's objective, cell by cell."""


import pytest
import torch

from conftest import load_bench
from vaelab.config import TrainConfig
from vaelab.data import grey_levels, load_split
from vaelab.presets import load_preset
from vaelab.training import build_model, build_objective


@pytest.fixture(scope="module")
def bench():
    return load_bench("bench_steps")


@pytest.mark.parametrize("cell", ["vae-k1", "vae-k5", "iwae-k5", "vae-k50", "iwae-k50"])
def test_the_plain_loops_bound_is_vaelabs_objective_on_the_same_weights_and_noise(bench, cell):
    config = TrainConfig.from_dict({**load_preset(f"iwae/1-layer/{cell}"), "epochs": None})
    x = torch.bernoulli(grey_levels(load_split("test").images[:20]), generator=torch.Generator().manual_seed(3))
    model = build_model(config, (28, 28), x.mean(0).double())
    enc, dec = bench.plain_networks(torch.device("cpu"))
    for plain, ours in ((enc, model.encoder), (dec, model.decoder)):
        for layer, linear in zip(plain[::2], (ours.layer1, ours.layer2, ours.layer3), strict=True):
            layer.load_state_dict(linear.state_dict())
    k, iwae = config.samples, config.objective == "iwae"
    plain = bench.plain_bound(enc, dec, x, k, iwae, torch.Generator().manual_seed(5))
    terms = build_objective(config)(model, x, torch.Generator().manual_seed(5))
    torch.testing.assert_close(plain, terms.value, rtol=1e-5, atol=1e-3)  # the same nats per image, to ~1e-5
    assert plain.shape == (20,) and bool(((plain < -100) & (plain > -400)).all())  # untrained: 140-290 nats
    plain.mean().backward()
    terms.value.mean().backward()
    # the same gradient too (the IWAE bound reaches it by another route through log q: equal up to rounding)
    torch.testing.assert_close(enc[0].weight.grad, model.encoder.layer1.weight.grad, rtol=1e-4, atol=1e-5)


def test_the_one_thread_plain_loop_runs_on_one_thread_and_gives_the_default_back(bench, monkeypatch):
    seen = []
    monkeypatch.setattr(bench, "_plain_steps", lambda *args: seen.append(torch.get_num_threads()) or 0.5)
    default = torch.get_num_threads()
    x_grey = torch.rand(40, 784)
    assert bench.plain_loop(x_grey, 1, False, 2, torch.Generator(), threads=1) == 0.5
    assert bench.plain_loop(x_grey, 1, False, 2, torch.Generator()) == 0.5
    assert seen == [1, default] and torch.get_num_threads() == default

