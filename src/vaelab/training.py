"""Training: the article's loop, made fast, reproducible and interruptible.

The whole binarized training set lives on the device as one tensor; each epoch
slices a random permutation of it (no DataLoader, no workers). All randomness
(shuffling, reparameterisation noise, dynamic binarization) comes from one
private generator whose state is checkpointed, so a resumed run continues
bit for bit where it stopped.
"""

from __future__ import annotations

import dataclasses
import math
import signal
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from vaelab.checkpoint import Checkpoint, Position, Run, load_checkpoint, load_run, prepare_run_dir, save_checkpoint
from vaelab.config import TrainConfig
from vaelab.data import THRESHOLD_BYTE, binarize, binarize_dynamic, binarize_threshold, grey_levels, load_split, locate_files
from vaelab.device import make_generator, resolve_device
from vaelab.download import download_mnist
from vaelab.errors import TrainingInterrupted, VaelabError
from vaelab.evaluate import elbo_terms
from vaelab.model import VAE, ElboTerms

Echo = Callable[[str], Any]
HEADER = f"{'epoch':>5} {'reg':>9} {'loglike':>10} {'lowerBound':>11} {'test ELBO':>10} {'time(s)':>8}"


@dataclass
class TrainData:
    """The training and test sets, on the device, as the model sees them."""

    train: torch.Tensor  # (N, D): binary images, or grey levels for dynamic binarization
    test: torch.Tensor  # (M, D): binary images, fixed
    dynamic: bool  # redraw training pixels from the grey levels every batch
    info: dict[str, Any]  # provenance, saved in the checkpoint

    def batch(self, index: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        x = self.train.index_select(0, index)  # (B, D); faster than x[index] on CPU
        return binarize_dynamic(x, generator) if self.dynamic else x


def load_data(config: TrainConfig, device: torch.device, echo: Echo = print) -> TrainData:
    """Read (and if asked, download) MNIST, binarize it and move it to `device`."""
    if config.download:
        if config.data_dir is None:
            raise VaelabError("--download needs --data-dir: the folder to download MNIST into")
        try:
            locate_files(config.data_dir)  # a complete set, in any layout, needs no download
        except VaelabError:
            download_mnist(config.data_dir, echo=echo)
    train, test = load_split("train", config.data_dir), load_split("test", config.data_dir)
    dynamic = config.binarization == "dynamic"
    images = train.images.to(device)
    x_train = grey_levels(images) if dynamic else binarize_threshold(images)
    x_test = binarize(test.images, config.binarization, make_generator(device, config.seed))
    info = {
        "source": "bundled MNIST" if config.data_dir is None else str(Path(config.data_dir).resolve()),
        "n_train": len(x_train),
        "n_test": len(x_test),
        "binarization": config.binarization,
        "threshold_byte": THRESHOLD_BYTE,
        "sha256": {**train.files, **test.files},
    }
    return TrainData(train=x_train, test=x_test, dynamic=dynamic, info=info)


def build_model(config: TrainConfig, data_size: int) -> VAE:
    """The article's VAE, initialised from the run's seed whatever the global RNG holds."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        return VAE(data_size=data_size, latent_size=config.latent_size, hidden_size=config.hidden)


def build_optimizer(config: TrainConfig, model: VAE, device: torch.device) -> torch.optim.Optimizer:
    """Adam, or centred RMSprop, as in the article; fused kernels where PyTorch has them."""
    params = list(model.parameters())
    if config.optimizer == "adam":
        fused = device.type in ("cpu", "cuda")
        return torch.optim.Adam(params, lr=config.lr, fused=fused, foreach=None if fused else True)
    return torch.optim.RMSprop(params, lr=config.lr, centered=True, foreach=True)


def train_step(model: VAE, optimizer: torch.optim.Optimizer, x: torch.Tensor, generator: torch.Generator) -> ElboTerms:
    """One gradient step on the negative ELBO (the article's `loss = -lowerBound`)."""
    terms = model(x, generator)
    loss = -terms.elbo.mean()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return ElboTerms(terms.loglike.detach(), terms.kl.detach())


def train(config: TrainConfig, out: str | Path, *, progress: bool = False, echo: Echo = print) -> Run:
    """Train a new run into the folder `out` (which must be new or empty)."""
    run_dir = prepare_run_dir(out)
    return _fit(run_dir, config, None, progress=progress, echo=echo)


def resume(
    run_dir: str | Path,
    *,
    epochs: int,
    device: str | None = None,
    data_dir: str | None = None,
    progress: bool = False,
    echo: Echo = print,
) -> Run:
    """Continue a run until it has `epochs` epochs in total."""
    ckpt = load_checkpoint(run_dir)
    done = ckpt.position.epoch
    if epochs < done:
        raise VaelabError(
            f"{run_dir} has already trained {done} epochs; --epochs {epochs} would shorten it "
            f"(give --epochs {done + 1} or more)"
        )
    changes: dict[str, Any] = {"epochs": epochs}
    if device is not None:
        changes["device"] = device
    if data_dir is not None:
        changes["data_dir"] = data_dir
    config = dataclasses.replace(ckpt.config, **changes)
    if epochs == done and ckpt.position.batch == 0:
        echo(f"{run_dir} has already trained {done} epochs; nothing to do")
        return load_run(run_dir)
    return _fit(Path(run_dir), config, ckpt, progress=progress, echo=echo)


def _fit(run_dir: Path, config: TrainConfig, ckpt: Checkpoint | None, *, progress: bool, echo: Echo) -> Run:
    device = resolve_device(config.device)
    data = load_data(config, device, echo)
    model = build_model(config, data.train.shape[1]).to(device)
    optimizer = build_optimizer(config, model, device)
    generator = make_generator(device, config.seed)
    position, metrics, perm, sums = Position(), [], None, None
    if ckpt is not None:
        model.load_state_dict(ckpt.model_state)
        optimizer.load_state_dict(ckpt.optimizer_state)
        generator.set_state(ckpt.rng_state.to(generator.get_state().device))
        position, metrics = ckpt.position, ckpt.metrics
        if ckpt.perm is not None:
            perm, sums = ckpt.perm.to(device), ckpt.sums.to(device)
        echo(f"resuming {run_dir} at epoch {position.epoch + 1}" + (f", batch {position.batch}" if position.batch else ""))
    echo(f"training on {device}: {data.info['n_train']} images from {data.info['source']}, "
         f"{config.binarization} binarization -> {run_dir}")

    def checkpoint(**mid_epoch: torch.Tensor) -> None:
        save_checkpoint(run_dir, Checkpoint(
            config=config, model_args=model.args, model_state=model.state_dict(),
            optimizer_state=optimizer.state_dict(), rng_state=generator.get_state(),
            position=position, metrics=metrics, data=data.info, **mid_epoch))

    if ckpt is None:
        checkpoint()  # epoch 0: the untrained model, so the run directory is complete at once
    n, batch_size = len(data.train), config.batch_size
    n_batches = math.ceil(n / batch_size)
    sum_dtype = torch.float32 if device.type == "mps" else torch.float64
    echo(HEADER)
    with _interrupt_guard() as interrupted:
        while position.epoch < config.epochs:
            epoch, started = position.epoch + 1, time.perf_counter()
            if perm is None:
                perm = torch.randperm(n, generator=generator, device=device)
                sums = torch.zeros(2, dtype=sum_dtype, device=device)  # sum of reg, loglike
            bar = tqdm(total=n_batches, initial=position.batch, desc=f"epoch {epoch}/{config.epochs}",
                       unit="batch", leave=False, disable=not progress, dynamic_ncols=True)
            for b in range(position.batch, n_batches):
                x = data.batch(perm[b * batch_size:(b + 1) * batch_size], generator)
                terms = train_step(model, optimizer, x, generator)
                sums += torch.stack([-terms.kl.sum(), terms.loglike.sum()]).to(sum_dtype)
                position.batch, position.step = b + 1, position.step + 1
                bar.update()
                if b % 50 == 49 or interrupted():
                    _check_finite(sums, epoch, run_dir, position.epoch)
                    if progress:
                        bar.set_postfix(lowerBound=f"{sums.sum().item() / min(n, (b + 1) * batch_size):.2f}")
                if interrupted():
                    bar.close()
                    position.elapsed += time.perf_counter() - started
                    checkpoint(perm=perm, sums=sums)
                    raise TrainingInterrupted(
                        f"interrupted in epoch {epoch}, batch {b + 1}/{n_batches}; a consistent "
                        f"checkpoint is saved in {run_dir}: continue with "
                        f"`vaelab train --resume {run_dir} --epochs {config.epochs}`"
                    )
            bar.close()
            _check_finite(sums, epoch, run_dir, position.epoch)
            reg, loglike = (sums / n).tolist()
            test = _test_scores(model, data, config) if config.test_every_epoch else None
            seconds = time.perf_counter() - started
            position = Position(epoch=epoch, batch=0, step=position.step, elapsed=position.elapsed + seconds)
            metrics.append({
                "epoch": epoch, "reg": reg, "loglike": loglike, "lower_bound": reg + loglike,
                "test_elbo": test and test.elbo.mean().item(),
                "test_loglike": test and test.loglike.mean().item(),
                "test_kl": test and test.kl.mean().item(),
                "seconds": seconds, "elapsed": position.elapsed, "step": position.step,
            })
            perm = sums = None
            checkpoint()
            echo(format_row(metrics[-1]))
    return load_run(run_dir)


def _test_scores(model: VAE, data: TrainData, config: TrainConfig) -> ElboTerms:
    """Test-set ELBO terms with a fixed noise stream, so epochs compare like with like."""
    model.eval()
    terms = elbo_terms(model, data.test, generator=make_generator(data.test.device, config.seed))
    model.train()
    return ElboTerms(terms.loglike.double(), terms.kl.double())


def format_row(m: dict[str, Any]) -> str:
    """One line of the article's per-epoch log: per-image means in nats, plus test ELBO."""
    test = f"{m['test_elbo']:10.2f}" if m.get("test_elbo") is not None else f"{'-':>10}"
    return (f"{m['epoch']:5d} {m['reg']:9.2f} {m['loglike']:10.2f} {m['lower_bound']:11.2f} "
            f"{test} {m['elapsed']:8.1f}")


def _check_finite(sums: torch.Tensor, epoch: int, run_dir: Path, last_good: int) -> None:
    if not bool(torch.isfinite(sums).all()):
        raise VaelabError(
            f"training diverged: the loss became non-finite in epoch {epoch}; the last good "
            f"checkpoint (epoch {last_good}) is kept in {run_dir}. Train again with a lower --lr"
        )


@contextmanager
def _interrupt_guard():
    """Turn the first Ctrl-C into a request to stop after the current batch.

    A second Ctrl-C interrupts at once (the last checkpoint on disk stays intact).
    """
    requested = False

    def handler(signum, frame):
        nonlocal requested
        if requested:
            raise KeyboardInterrupt
        requested = True

    try:
        previous = signal.signal(signal.SIGINT, handler)
    except ValueError:  # not the main thread: leave Ctrl-C alone
        yield lambda: False
        return
    try:
        yield lambda: requested
    finally:
        signal.signal(signal.SIGINT, previous)
