"""The article's training loop, its maths verbatim, as the baseline vaelab is held to.

    .venv/bin/python bench/article_loop.py --seed 0

Differences from the article's notebook, none of which change the maths: MNIST
comes from the bundled IDX files instead of torchvision (same bytes, the same
float32 ToTensor + Normalize((0.1307,), (0.3081,)) arithmetic, applied to the
whole set at once instead of per image), batches are slices of a torch.randperm
instead of a shuffling DataLoader, and it runs on the CPU. At the end it prints
the test-set ELBO (one sample per image) and the seconds per epoch, then loads
the trained weights into vaelab's VAE (the layer names match) and scores them
with `vaelab eval`'s code, so both projects are measured by the same ruler.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch import nn

from vaelab.data import load_split
from vaelab.evaluate import evaluate_model
from vaelab.model import VAE

latent_size, data_size, learning_rate, train_batch_size, max_epochs = 48, 28 * 28, 0.001, 128, 10
hidden_size = latent_size * 2


class Encode(nn.Module):
    def __init__(self):
        super().__init__()
        self.layer1 = nn.Linear(data_size, hidden_size)
        self.layer2 = nn.Linear(hidden_size, hidden_size)
        self.layer3 = nn.Linear(hidden_size, 2 * latent_size)

    def forward(self, image):
        x = self.layer3(F.relu(self.layer2(F.relu(self.layer1(image)))))
        z_mean, z_variance = x[:, 0:latent_size], x[:, latent_size : 2 * latent_size]
        return z_mean, F.softplus(z_variance)


class Decode(nn.Module):
    def __init__(self):
        super().__init__()
        self.layer1 = nn.Linear(latent_size, hidden_size)
        self.layer2 = nn.Linear(hidden_size, hidden_size)
        self.layer3 = nn.Linear(hidden_size, data_size)
        self.logBernouli = torch.nn.BCEWithLogitsLoss(reduction="none")

    def network(self, z):
        return self.layer3(F.relu(self.layer2(F.relu(self.layer1(z)))))

    def forward(self, z, image):
        return -self.logBernouli(self.network(z), image)


def normalized(split: str) -> torch.Tensor:
    images = load_split(split).images.float() / 255  # ToTensor
    return ((images - 0.1307) / 0.3081).reshape(-1, data_size)  # Normalize


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--iw-k", type=int, default=1000, help="importance samples for the score (0: skip)")
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    train_images, test_images = normalized("train"), (normalized("test") > 0.5).float()

    encode, decode = Encode(), Decode()
    optimizer = torch.optim.Adam(list(encode.parameters()) + list(decode.parameters()), lr=learning_rate)
    start_time = time.time()
    for _epoch in range(max_epochs):
        perm = torch.randperm(len(train_images))
        for i in range(0, len(train_images), train_batch_size):
            images = train_images[perm[i : i + train_batch_size]]
            encode.zero_grad()
            decode.zero_grad()
            images = (images > 0.5).float()  # convert images to binary
            z_mean, z_variance = encode(images)
            z = z_mean + torch.randn(z_mean.shape) * torch.sqrt(z_variance)
            loglike = decode(z, images)
            reg = 0.5 * (1.0 + torch.log(z_variance) - z_mean**2 - z_variance).sum(1).mean()
            loglike = loglike.sum(1).mean()
            loss = -(loglike + reg)
            loss.backward()
            optimizer.step()
    seconds = (time.time() - start_time) / max_epochs
    with torch.no_grad():
        z_mean, z_variance = encode(test_images)
        z = z_mean + torch.randn(z_mean.shape) * torch.sqrt(z_variance)
        loglike = decode(z, test_images).sum(1)
        reg = 0.5 * (1.0 + torch.log(z_variance) - z_mean**2 - z_variance).sum(1)
    print(f"seed {args.seed}: test ELBO {(loglike + reg).mean().item():.2f}, {seconds:.2f} s per epoch")
    if args.iw_k:
        model = VAE()
        model.encoder.load_state_dict(encode.state_dict())
        model.decoder.load_state_dict(decode.state_dict(), strict=False)  # its BCE module has no weights
        scores = evaluate_model(model.eval(), test_images, iw_k=args.iw_k, seed=0)
        print(f"seed {args.seed}, scored as `vaelab eval` does: ELBO {scores.elbo:.2f}, "
              f"log p(x) IW K={args.iw_k} {scores.log_likelihood:.2f}")


if __name__ == "__main__":
    main()
