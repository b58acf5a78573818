"""The network is exactly the article's, and its ELBO terms are the article's formulas (vaelab.model's old API)."""

import torch
import torch.nn.functional as F

from vaelab.model import VAE
from vaelab.models import MLPVAE, MODELS


def test_architecture_is_the_articles():
    model = VAE()
    shapes = {name: tuple(p.shape) for name, p in model.named_parameters()}
    assert shapes == {
        "encoder.layer1.weight": (96, 784), "encoder.layer1.bias": (96,),
        "encoder.layer2.weight": (96, 96), "encoder.layer2.bias": (96,),
        "encoder.layer3.weight": (96, 96), "encoder.layer3.bias": (96,),
        "decoder.layer1.weight": (96, 48), "decoder.layer1.bias": (96,),
        "decoder.layer2.weight": (96, 96), "decoder.layer2.bias": (96,),
        "decoder.layer3.weight": (784, 96), "decoder.layer3.bias": (784,),
    }
    assert VAE(latent_size=10).hidden == (20, 20)


def test_the_old_constructor_builds_the_mlp_model():
    """`VAE(data_size, latent_size, hidden_size)` is the mlp architecture, rebuilt from its args by the registry."""
    model = VAE(latent_size=10, hidden_size=7)
    assert model.name == "mlp" and model.image_shape == (28, 28) and model.data_size == 784
    assert model.args == {"image_shape": [28, 28], "latent_size": 10, "hidden": [7, 7], "activation": "relu",
                          "variance": "softplus"}
    again = MODELS["mlp"](**model.args)
    assert type(again) is MLPVAE
    assert {k: v.shape for k, v in again.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}
    assert VAE(data_size=12).image_shape == (1, 12)  # not a square number of pixels: one row
    assert VAE(data_size=16).image_shape == (4, 4)


def test_shapes_and_positive_variance():
    model = VAE(latent_size=8)
    x = (torch.rand(5, 784) > 0.5).float()
    mu, var = model.encode(x)
    assert mu.shape == var.shape == (5, 8)
    assert (var > 0).all()
    assert model.decode(mu).shape == (5, 784)
    assert model.decode(torch.zeros(3, 2, 8)).shape == (3, 2, 784)
    terms = model(x)
    assert terms.loglike.shape == terms.kl.shape == terms.elbo.shape == (5,)


def test_elbo_terms_are_the_articles_formulas():
    """Same weights, same noise: our terms equal the article's code line by line."""
    torch.manual_seed(0)
    model = VAE(latent_size=48)
    images = (torch.rand(16, 784) > 0.7).float()
    terms = model(images, torch.Generator().manual_seed(3))

    # The article's code, verbatim in its maths.
    latent_size = 48
    enc, dec = model.encoder, model.decoder
    x = enc.layer3(F.relu(enc.layer2(F.relu(enc.layer1(images)))))
    z_mean, z_variance = x[:, 0:latent_size], F.softplus(x[:, latent_size:2 * latent_size])
    noise = torch.randn(z_mean.shape, generator=torch.Generator().manual_seed(3))
    z = z_mean + noise * torch.sqrt(z_variance)
    logits = dec.layer3(F.relu(dec.layer2(F.relu(dec.layer1(z)))))
    loglike = -torch.nn.BCEWithLogitsLoss(reduction="none")(logits, images)
    reg = 0.5 * (1.0 + torch.log(z_variance) - z_mean**2 - z_variance).sum(1)

    torch.testing.assert_close(terms.loglike, loglike.sum(1), rtol=1e-6, atol=1e-4)
    torch.testing.assert_close(-terms.kl, reg, rtol=1e-6, atol=1e-5)
    # lowerBound = loglike + reg, loss = -lowerBound
    torch.testing.assert_close(terms.elbo.mean(), (loglike.sum(1) + reg).mean(), rtol=1e-6, atol=1e-4)


def test_same_generator_state_same_sample():
    model = VAE(latent_size=4)
    x = (torch.rand(3, 784) > 0.5).float()
    a = model(x, torch.Generator().manual_seed(1))
    b = model(x, torch.Generator().manual_seed(1))
    c = model(x, torch.Generator().manual_seed(2))
    assert torch.equal(a.loglike, b.loglike)
    assert not torch.equal(a.loglike, c.loglike)
    assert torch.equal(a.kl, c.kl)  # analytic KL needs no noise
