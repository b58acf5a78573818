"""bench/bench_products.py times the products a real step runs: the 17 of the one-layer model, at its shapes."""

from collections import Counter

import pytest

from conftest import load_bench


@pytest.fixture(scope="module")
def bench():
    return load_bench("bench_products")


def one_layer_products(k: int, batch: int = 20) -> Counter:
    """By hand: each layer's forward product (rows, in, out), weight gradient (out, rows, in) and, but for the
    encoder's first layer, input gradient (rows, out, in); the encoder runs on the batch, the decoder on K x batch."""
    layers = [(batch, 784, 200, False), (batch, 200, 200, True), (batch, 200, 100, True),
              (k * batch, 50, 200, True), (k * batch, 200, 200, True), (k * batch, 200, 784, True)]
    products = Counter()
    for rows, n_in, n_out, input_gradient in layers:
        products[(rows, n_in, n_out)] += 1
        products[(n_out, rows, n_in)] += 1
        if input_gradient:
            products[(rows, n_out, n_in)] += 1
    return products


@pytest.mark.parametrize("cell", ["vae-k1", "vae-k5", "iwae-k5", "vae-k50", "iwae-k50"])
def test_a_steps_recorded_products_are_the_one_layer_models_seventeen(bench, cell):
    config = bench.preset_config(cell)
    products = bench.step_products(config)
    assert products == one_layer_products(config.samples)
    assert sum(products.values()) == 17


def test_flops_counts_a_multiply_and_an_add_per_term(bench):
    assert bench.flops(Counter({(2, 3, 4): 1, (1, 1, 1): 5})) == 2 * 24 + 2 * 5
    # K = 50: 211,136,000 multiply-adds forward (20 x (784*200 + 200*200 + 200*100) + 1000 x (50*200 + 200*200
    # + 200*784)), as many for the weight gradients, 20 x 784*200 fewer for the input gradients
    assert bench.flops(one_layer_products(50)) == 2 * (211_136_000 * 2 + 211_136_000 - 3_136_000) == 1_260_544_000
