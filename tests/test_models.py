"""The architectures: shapes, argument round trips, the article's network to the last bit, clear refusals."""

import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vaelab.config import TrainConfig
from vaelab.models import MLPVAE, MODELS, ConvVAE, args_for, build_model, check_args, named_args, rebuild
from vaelab.models.base import posterior_variance
from vaelab.objectives import elbo

SMALL = {  # a small instance of each architecture, on 8 x 8 images
    "mlp": {"image_shape": [8, 8], "latent_size": 3, "hidden": [10, 7, 5], "activation": "tanh", "variance": "exp"},
    "conv": {"image_shape": [8, 8], "latent_size": 3, "hidden": [10], "activation": "relu", "variance": "softplus",
             "channels": [4, 6]},
    "mlp2": {"image_shape": [8, 8], "latent_size": 3, "lower_latent_size": 6, "hidden": [10, 7],
             "upper_hidden": [5], "activation": "tanh", "variance": "exp"},
}


def test_the_registry_names_every_architecture_activation_and_variance_the_config_offers():
    from vaelab.config import ACTIVATIONS, VARIANCES
    from vaelab.config import MODELS as NAMES
    from vaelab.models.base import ACTIVATIONS as FUNCTIONS
    from vaelab.models.base import VARIANCES as KINDS

    assert tuple(MODELS) == NAMES and tuple(FUNCTIONS) == ACTIVATIONS and KINDS == VARIANCES
    assert all(MODELS[name].name == name for name in MODELS)


@pytest.mark.parametrize("name", MODELS)
def test_shapes_of_encode_and_decode_with_extra_leading_dims(name):
    model = build_model(name, SMALL[name])
    assert model.image_shape == (8, 8) and model.data_size == 64 and model.latent_size == 3
    x = (torch.rand(5, 64) > 0.5).float()
    mu, var = model.encode(x)
    assert mu.shape == var.shape == (5, 3) and (var > 0).all()
    assert model.decode(mu).shape == (5, 64)
    assert model.decode(torch.zeros(4, 5, 3)).shape == (4, 5, 64)  # (K, B, L), as objectives.iwae passes
    assert model.decode(torch.zeros(2, 4, 5, 3)).shape == (2, 4, 5, 64)
    z = torch.randn(4, 5, 3)
    torch.testing.assert_close(model.decode(z)[2], model.decode(z[2]))  # leading dims are only a batch
    terms = model(x)
    assert terms.loglike.shape == terms.kl.shape == (5,)
    assert elbo(model, x, samples=4).value.shape == (5,)


@pytest.mark.parametrize("name", MODELS)
def test_args_round_trip_through_json_and_the_registry(name):
    model = build_model(name, SMALL[name])
    assert model.args == SMALL[name]
    saved = json.loads(json.dumps(named_args(model)))
    assert saved == {"name": name, **SMALL[name]}
    again = rebuild(saved)
    assert type(again) is MODELS[name]
    assert {k: v.shape for k, v in again.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}
    again.load_state_dict(model.state_dict())
    z = torch.randn(2, 3)
    assert torch.equal(again.decode(z), model.decode(z))


@pytest.mark.parametrize("name", MODELS)
def test_args_for_a_config_are_the_models_own(name):
    config = TrainConfig(model=name, latent_size=5, hidden_size=(12, 9), activation="tanh", variance="exp",
                         **({"channels": (3,)} if name == "conv" else {}))
    args = args_for(config, (8, 8))
    expected = {"image_shape": [8, 8], "latent_size": 5, "hidden": [12, 9], "activation": "tanh", "variance": "exp"}
    more = {"mlp": {}, "conv": {"channels": [3]}, "mlp2": {"lower_latent_size": 10, "upper_hidden": [10, 10]}}
    assert args == {**expected, **more[name]}
    assert build_model(name, args).args == args
    assert args_for(TrainConfig(model=name), (28, 28))["hidden"] == [96, 96]  # the article's: two of 2 x latent


# --- the article's network, to the last bit ---------------------------------------------------
class ArticleEncoder(nn.Module):  # vaelab 0.1's Encoder, verbatim
    def __init__(self, data_size, latent_size, hidden_size):
        super().__init__()
        self.latent_size = latent_size
        self.layer1 = nn.Linear(data_size, hidden_size)
        self.layer2 = nn.Linear(hidden_size, hidden_size)
        self.layer3 = nn.Linear(hidden_size, 2 * latent_size)

    def forward(self, x):
        h = F.relu(self.layer1(x))
        h = F.relu(self.layer2(h))
        mu, pre_var = self.layer3(h).split(self.latent_size, dim=-1)
        return mu, F.softplus(pre_var)


class ArticleDecoder(nn.Module):  # vaelab 0.1's Decoder, verbatim
    def __init__(self, data_size, latent_size, hidden_size):
        super().__init__()
        self.layer1 = nn.Linear(latent_size, hidden_size)
        self.layer2 = nn.Linear(hidden_size, hidden_size)
        self.layer3 = nn.Linear(hidden_size, data_size)

    def forward(self, z):
        h = F.relu(self.layer1(z))
        h = F.relu(self.layer2(h))
        return self.layer3(h)


class ArticleVAE(nn.Module):
    def __init__(self, data_size=784, latent_size=48, hidden_size=96):
        super().__init__()
        self.encoder = ArticleEncoder(data_size, latent_size, hidden_size)
        self.decoder = ArticleDecoder(data_size, latent_size, hidden_size)


def test_mlp_with_the_articles_settings_is_the_articles_network_to_the_last_bit():
    torch.manual_seed(0)
    ours = build_model("mlp", {"image_shape": [28, 28], "latent_size": 48, "hidden": [96, 96], "activation": "relu",
                               "variance": "softplus"})
    torch.manual_seed(0)
    theirs = ArticleVAE()
    assert [(n, p.shape) for n, p in ours.named_parameters()] == [(n, p.shape) for n, p in theirs.named_parameters()]
    assert [n for n, _ in ours.named_parameters()] == [f"{part}.layer{i}.{kind}" for part in ("encoder", "decoder")
                                                       for i in (1, 2, 3) for kind in ("weight", "bias")]
    for (name, a), b in zip(ours.state_dict().items(), theirs.state_dict().values(), strict=True):
        assert torch.equal(a, b), name  # the same initial weights from the same seed
    x = (torch.rand(16, 784, generator=torch.Generator().manual_seed(1)) > 0.7).float()
    (mu, var), (mu_0, var_0) = ours.encode(x), theirs.encoder(x)
    assert torch.equal(mu, mu_0) and torch.equal(var, var_0)
    z = torch.randn(3, 16, 48)
    assert torch.equal(ours.decode(z), theirs.decoder(z))
    assert MLPVAE().args == ours.args  # the defaults are the article's


def test_exp_variance_is_exp_of_twice_the_log_standard_deviation():
    pre = torch.tensor([-3.0, -0.5, 0.0, 0.25, 2.0], dtype=torch.float64)
    torch.testing.assert_close(posterior_variance(pre, "exp"), torch.exp(pre) ** 2, rtol=1e-15, atol=0)
    assert torch.equal(posterior_variance(pre, "softplus"), torch.log1p(torch.exp(pre)))
    torch.manual_seed(0)
    model = MLPVAE(image_shape=(4, 4), latent_size=2, hidden=[5], variance="exp").double()
    x = torch.rand(3, 16, dtype=torch.float64)
    out = model.encoder.layer2(F.relu(model.encoder.layer1(x)))  # (B, 2L): mu, then log sigma
    mu, var = model.encode(x)
    assert torch.equal(mu, out[:, :2]) and torch.equal(var, torch.exp(2 * out[:, 2:]))
    with pytest.raises(ValueError, match="variance 'log' is not one of softplus, exp"):
        posterior_variance(pre, "log")


def test_the_default_conv_model_has_the_parameters_counted_by_hand():
    model = ConvVAE()  # latent 48, hidden [96, 96], channels (32, 64), 28 x 28
    conv = lambda c_in, c_out: c_in * c_out * 4 * 4 + c_out  # noqa: E731  weights 4 x 4, one bias per output
    dense = lambda n_in, n_out: n_in * n_out + n_out  # noqa: E731
    flat = 64 * 7 * 7  # 28 -> 14 -> 7
    encoder = conv(1, 32) + conv(32, 64) + dense(flat, 96) + dense(96, 96) + dense(96, 2 * 48)
    decoder = dense(48, 96) + dense(96, 96) + dense(96, flat) + conv(64, 32) + conv(32, 1)
    assert encoder + decoder == 704_673
    assert sum(p.numel() for p in model.parameters()) == 704_673
    assert sum(p.numel() for p in model.encoder.parameters()) == encoder


def test_the_conv_model_halves_the_side_with_each_convolution():
    model = ConvVAE(image_shape=(16, 16), latent_size=2, hidden=[], channels=[3, 5, 7])
    x = torch.rand(2, 1, 16, 16)
    h = x
    for i in (1, 2, 3):
        h = F.relu(getattr(model.encoder, f"conv{i}")(h))
    assert h.shape == (2, 7, 2, 2)
    mu, var = model.encode(x.reshape(2, 256))
    out = model.encoder.layer1(h.flatten(1))
    assert torch.equal(mu, out[:, :2]) and torch.equal(var, F.softplus(out[:, 2:]))


@pytest.mark.parametrize(("args", "message"), [
    ({"image_shape": [28, 30]}, "model args image_shape [28, 30] is not square, which the conv model needs"),
    ({"image_shape": [30, 30]}, "model args image side 30 is not divisible by 4, as 2 stride-2 convolutions "
                                "(channels [32, 64]) need"),
    ({"image_shape": [28, 28], "channels": [8, 8, 8]}, "image side 28 is not divisible by 8"),
])
def test_the_conv_model_refuses_images_it_cannot_halve_in_one_line(args, message):
    full = {**ConvVAE().args, **args}
    with pytest.raises(ValueError) as caught:
        build_model("conv", full)
    assert message in str(caught.value) and "\n" not in str(caught.value)
    with pytest.raises(ValueError, match="not square|not divisible"):
        ConvVAE(**full)  # built directly, too


GOOD = MLPVAE().args
BAD_ARGS = {
    "unknown name": ("transformer", GOOD, "model args name 'transformer' is not an architecture vaelab knows "
                                          "(mlp, conv, mlp2)"),
    "name not a string": (["mlp"], GOOD, "model args name ['mlp'] is not an architecture"),
    "not a table": ("mlp", [1, 2], "model args is not a table"),
    "missing": ("mlp", {k: v for k, v in GOOD.items() if k != "hidden"}, "model args has no hidden, which the mlp"),
    "extra": ("mlp", {**GOOD, "channels": [32, 64]}, "model args has an unexpected 'channels' for the mlp model"),
    "string latent": ("mlp", {**GOOD, "latent_size": "48"}, "model args latent_size is '48', not a positive integer"),
    "bool latent": ("mlp", {**GOOD, "latent_size": True}, "model args latent_size is True, not a positive integer"),
    "zero width": ("mlp", {**GOOD, "hidden": [96, 0]}, "model args hidden is [96, 0], not a list of at most 16"),
    "float width": ("mlp", {**GOOD, "hidden": [96.0]}, "model args hidden is [96.0]"),
    "three sides": ("mlp", {**GOOD, "image_shape": [28, 28, 1]}, "model args image_shape is [28, 28, 1], not a "
                                                                 "[height, width]"),
    "activation": ("mlp", {**GOOD, "activation": "gelu"}, "model args activation is 'gelu', not one of relu, tanh"),
    "unhashable variance": ("mlp", {**GOOD, "variance": []}, "model args variance is [], not one of softplus, exp"),
    "no channels": ("conv", {**GOOD, "channels": []}, "model args channels is [], not a list of 1 to 4"),
    "huge": ("mlp", {**GOOD, "latent_size": 2**40}, "model args latent_size is 1099511627776"),
}


@pytest.mark.parametrize("case", BAD_ARGS)
def test_bad_args_are_one_line_value_errors_naming_the_problem(case):
    name, args, message = BAD_ARGS[case]
    with pytest.raises(ValueError) as caught:
        build_model(name, args)
    assert str(caught.value).startswith(message) and "\n" not in str(caught.value)
    with pytest.raises(ValueError, match=r"^its model_args "):
        check_args(name, args, "its model_args")


@pytest.mark.parametrize("name", MODELS)
def test_sizes_too_large_to_build_are_a_one_line_value_error(name):
    args = {**SMALL[name], "image_shape": [2**30, 2**30], "hidden": [2**31 - 1]}
    with torch.device("meta"), pytest.raises(ValueError) as caught:
        build_model(name, args)
    assert str(caught.value).startswith("model args describe a network too large to build (")
    assert "\n" not in str(caught.value)


def test_tuples_are_accepted_and_stored_as_lists():
    args = check_args("conv", {**ConvVAE().args, "image_shape": (28, 28), "hidden": (96,), "channels": (32,)})
    assert args["image_shape"] == [28, 28] and args["hidden"] == [96] and args["channels"] == [32]
    assert math.prod(build_model("conv", args).image_shape) == 784
