"""Training: the article's loop, made fast, reproducible and interruptible.

The whole binarized training set lives on the device as one tensor; each epoch
slices a random permutation of it (no DataLoader, no workers). All randomness
(shuffling, reparameterisation noise, dynamic binarization) comes from one
private generator whose state is checkpointed, so a resumed run continues
bit for bit where it stopped.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from vaelab.checkpoint import Checkpoint, Position, Run, load_checkpoint, load_run, save_checkpoint
from vaelab.compiling import check_compile, compile_caveat, compiled, compiled_update, compiles_adam
from vaelab.config import IWAE_STAGES, TrainConfig, stage_of
from vaelab.data import (
    absolute_data_dir,
    data_mismatches,
)
from vaelab.device import describe, make_generator, resolve_device, restore_generator, state_origin
from vaelab.errors import Diverged, TrainingInterrupted, VaelabError
from vaelab.evaluate import elbo_terms
from vaelab.files import display
from vaelab.models import VAEModel, args_for, named_args
from vaelab.models import build_model as build_architecture
from vaelab.models.init import initialise, set_output_bias
from vaelab.objectives import OBJECTIVES, ElboTerms, Objective, Terms, elbo
from vaelab.prepare import VALIDATION_STREAM, TrainData, load_data
from vaelab.resources import ThreadTuner, check_fits, pinned_threads
from vaelab.rundir import RunDir
from vaelab.signals import stop_after_batch, stopped_by
from vaelab.steps import Step, Stepper, graphs_wanted
from vaelab.trainlog import describe_objective, format_row, log_header

Echo = Callable[[str], Any]



def build_model(config: TrainConfig, image_shape: tuple[int, ...], pixel_mean: torch.Tensor | None = None) -> VAEModel:
    """The config's architecture for images of `image_shape`, initialised from the run's seed whatever the
    global RNG holds (the article's VAE by default), then as --init and --output-bias say; `pixel_mean` (D,),
    the training images' mean pixel, is needed for --output-bias data_mean."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = _architecture(config, image_shape)
        initialise(model, config.init)
    if config.output_bias == "data_mean":
        if pixel_mean is None:
            raise ValueError("--output-bias data_mean needs the training images' mean pixel")
        set_output_bias(model, pixel_mean)
    return model


def _architecture(config: TrainConfig, image_shape: tuple[int, ...]) -> VAEModel:
    try:
        return build_architecture(config.model, args_for(config, image_shape))
    except ValueError as exc:  # e.g. a conv model on images it cannot halve
        raise VaelabError(f"--model {config.model} cannot model these {'x'.join(map(str, image_shape))} "
                          f"images: {str(exc).removeprefix('model args ')}; --model mlp takes images of any "
                          "shape") from None


def build_optimizer(config: TrainConfig, model: VAEModel, device: torch.device) -> torch.optim.Optimizer:
    """Adam with the config's betas and epsilon, or centred RMSprop, as in the article; fused kernels where
    PyTorch has them, or for --compile on a GPU a foreach Adam that torch.compile fuses (compiling.compiles_adam).
    The learning rate is the first epoch's; training sets each epoch's (TrainConfig.lr_at)."""
    params = list(model.parameters())
    lr = config.lr_at(1)
    if compiles_adam(device, config.optimizer, config.compile):  # its step compiled: compiling.compiled_update
        return torch.optim.Adam(params, lr=lr, betas=(config.adam_beta1, config.adam_beta2), eps=config.adam_eps,
                                foreach=True, capturable=device.type == "cuda")
    if config.optimizer == "adam":
        fused = device.type in ("cpu", "cuda")
        return torch.optim.Adam(params, lr=lr, betas=(config.adam_beta1, config.adam_beta2), eps=config.adam_eps,
                                fused=fused, foreach=None if fused else True, capturable=device.type == "cuda")
    return torch.optim.RMSprop(params, lr=lr, centered=True, foreach=True)


def set_epoch_lr(s: _Session) -> None:
    """The learning rate of the epoch under way, from the schedule, on every param group (a resumed run too)."""
    lr = s.config.lr_at(s.position.epoch + 1)
    for group in s.optimizer.param_groups:
        group["lr"] = lr


def build_objective(config: TrainConfig) -> Objective:
    """The config's objective with its options: objective(model, x, generator) -> Terms."""
    return functools.partial(OBJECTIVES[config.objective], samples=config.samples, beta=config.beta)


def train_step(model: VAEModel, optimizer: torch.optim.Optimizer, x: torch.Tensor, generator: torch.Generator,
               objective: Objective = elbo, *, update: Callable[[], object] | None = None) -> Terms:
    """One gradient step on the negative objective (for the ELBO, the article's `loss = -lowerBound`);
    `update` in place of `optimizer.step` (a compiled one, compiling.compiled_update)."""
    terms = objective(model, x, generator)
    loss = -terms.value.mean()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    (update or optimizer.step)()
    return Terms(*(t.detach() for t in terms))


def train(config: TrainConfig, out: str | Path | None = None, *, progress: bool = False, echo: Echo = print) -> Run:
    """Train a new run into the folder `out` (new or empty; None: a new folder under runs/).

    The folder is locked while training writes it; if the start fails before the
    first checkpoint, nothing is left behind.
    """
    config = dataclasses.replace(config, data_dir=absolute_data_dir(config.data_dir),
                                 class_names=absolute_data_dir(config.class_names))  # found from any folder later
    device = resolve_device(config.device)  # no GPU, or a bad VAELAB_THREADS: refused before any folder is made
    if config.compile:
        check_compile(device)
    pinned_threads()
    with RunDir.new(out) as run_dir:
        return _fit(run_dir.path, config, None, progress=progress, echo=echo)


def resume(
    run_dir: str | Path,
    *,
    epochs: int | None = None,
    stages: int | None = None,
    device: str | None = None,
    data_dir: str | None = None,
    compile: bool | None = None,
    progress: bool = False,
    echo: Echo = print,
) -> Run:
    """Continue a run until it has `epochs` epochs in total, or with a schedule its first `stages` stages
    (neither: the run's own target); the run is locked meanwhile. `compile` True or False changes how the
    rest is computed (TrainConfig.compile); None keeps the run's way."""
    load_checkpoint(run_dir)  # a missing or damaged run is refused before anything is locked
    with RunDir.existing(run_dir):
        ckpt = load_checkpoint(run_dir)
        asked = f"--stages {stages}" if stages is not None else None
        epochs = _target_epochs(ckpt.config, epochs, stages)
        return _resume(Path(run_dir), ckpt, epochs=epochs, device=device, data_dir=data_dir, compile=compile,
                       progress=progress, echo=echo, asked=asked)


def epochs_words(n: int) -> str:
    """"1 epoch", "3 epochs"."""
    return f"{n:,} epoch{'' if n == 1 else 's'}"


def further(config: TrainConfig, done: int) -> str | None:
    """The least flag that trains a run past `done` epochs: --epochs, or for a schedule of stages the
    --stages that ends after it; None once the schedule's last stage is done."""
    if config.lr_schedule == "constant":
        return f"--epochs {done + 1}"
    stages = stage_of(done + 1) + 1
    return f"--stages {stages}" if stages <= IWAE_STAGES else None


def _target_epochs(config: TrainConfig, epochs: int | None, stages: int | None) -> int:
    """The epochs a resumed run trains to: given, or those of `stages` (a config with a schedule checks them)."""
    if stages is None:
        return config.epochs if epochs is None else epochs
    if config.lr_schedule == "constant":
        raise VaelabError("--stages shortens or extends --lr-schedule iwae only; this run's schedule is constant "
                          "(give --epochs)")
    target = dataclasses.replace(config, epochs=None, stages=stages).epochs
    if epochs is not None and epochs != target:
        raise VaelabError(f"--epochs {epochs} does not match --stages {stages}, which is {epochs_words(target)}; "
                          "give --stages alone")
    return target


def _resume(run_dir: Path, ckpt: Checkpoint, *, epochs: int, device: str | None, data_dir: str | None,
            progress: bool, echo: Echo, asked: str | None = None, compile: bool | None = None) -> Run:
    """Continue the run to `epochs`; `asked` says how the user asked for them (e.g. "--stages 4"), if not
    by --epochs."""
    done = ckpt.position.epoch
    by_stages = asked is not None and asked.startswith("--stages")
    more = f"--stages {stage_of(done + 1) + 1}" if by_stages else f"--epochs {done + 1}"  # the first that ends past
    asked = f"{asked} ({epochs_words(epochs)})" if by_stages else f"--epochs {epochs}"
    if epochs < done:
        raise VaelabError(
            f"{run_dir} has already trained {epochs_words(done)}; {asked} would shorten it "
            f"(give {more} or more)"
        )
    if epochs == done and ckpt.position.batch > 0:  # its checkpoint is partway through the next epoch
        raise VaelabError(
            f"{run_dir} has trained {epochs_words(done)} and {ckpt.position.batch:,} batches of epoch {done + 1}; "
            f"{asked} would end it before where it is (give {more} or more)"
        )
    changes: dict[str, Any] = {"epochs": epochs}
    if ckpt.config.lr_schedule != "constant":  # the stages follow from the epochs, which must end one
        changes["stages"] = None
    if device is not None:
        changes["device"] = device
    else:
        _check_device_available(run_dir, ckpt.config.device)
    if data_dir is not None:
        changes["data_dir"] = absolute_data_dir(data_dir)
    if compile is not None:
        changes["compile"] = compile
    config = dataclasses.replace(ckpt.config, **changes)
    if epochs == done and ckpt.position.batch == 0:
        next_flag = further(config, done)
        echo(f"{run_dir} has already trained {epochs_words(done)}; nothing to do"
             + (f" (to train it further: {next_flag} or more)" if next_flag else " (its schedule is done)"))
        return load_run(run_dir)
    if config.compile:
        check_compile(resolve_device(config.device), run_dir)
    if config.compile != ckpt.config.compile:
        echo(f"continuing {'with' if config.compile else 'without'} torch.compile: its kernels round otherwise, so "
             "from here on the run is not bit for bit what it would have been (each epoch's machine says how "
             "it was computed)")
    return _fit(run_dir, config, ckpt, progress=progress, echo=echo)


def _check_device_available(run_dir: Path, device: str) -> None:
    try:
        resolve_device(device)
    except VaelabError:
        raise VaelabError(
            f"{display(run_dir)} was trained with --device {device}, which is not available here; continue "
            f"it on this machine with `vaelab train --resume {display(run_dir)} --device cpu`"
        ) from None


@dataclass
class _Session:
    """What changes as training runs, and how to save it."""

    run_dir: Path
    config: TrainConfig
    data: TrainData
    model: VAEModel
    optimizer: torch.optim.Optimizer
    generator: torch.Generator
    position: Position
    metrics: list[dict[str, Any]]
    perm: torch.Tensor | None = None  # the epoch under way's order of images
    sums: torch.Tensor | None = None  # its running sums of reg and loglike over images
    saved: Position | None = None  # where the checkpoint on disk stands
    threads: ThreadTuner | None = None  # CPU threads, adapted to the machine's load
    stepper: Stepper | None = None  # runs the steps, eagerly or as CUDA graphs

    def save(self) -> None:
        """Write a checkpoint; mid-epoch, the permutation and sums go with it. Never a diverged one."""
        if not all(bool(torch.isfinite(p).all()) for p in self.model.parameters()):
            _diverged(self, "the weights")
        mid_epoch = self.position.batch > 0
        save_checkpoint(self.run_dir, Checkpoint(
            config=self.config, model_args=named_args(self.model), model_state=self.model.state_dict(),
            optimizer_state=self.optimizer.state_dict(), rng_state=self.generator.get_state(),
            position=self.position, metrics=self.metrics, data=self.data.info,
            perm=self.perm if mid_epoch else None, sums=self.sums if mid_epoch else None))
        self.saved = dataclasses.replace(self.position)


def _start(run_dir: Path, config: TrainConfig, ckpt: Checkpoint | None, echo: Echo) -> _Session:
    """Load the data and build the model, optimizer and generator, fresh or from `ckpt`."""
    device = resolve_device(config.device)
    data = load_data(config, device, echo)
    image_shape = tuple(data.info["image_shape"])
    check_fits(training_memory(config, image_shape, len(data.train)), device,
               f"training --model {config.model} with --latent-size {config.latent_size}, hidden layers "
               f"{', '.join(map(str, config.hidden_layers))} and --batch-size {config.batch_size}")
    model = build_model(config, image_shape, data.pixel_mean).to(device)
    session = _Session(run_dir, config, data, model, build_optimizer(config, model, device),
                       make_generator(device, config.seed), Position(), [])
    if ckpt is None:
        set_epoch_lr(session)
        session.save()  # epoch 0, the untrained model: the run directory is complete at once
        return session
    if tuple(ckpt.model_args["image_shape"]) != image_shape:
        raise VaelabError(f"{display(run_dir)} models images of {_shape(ckpt.model_args['image_shape'])} pixels, "
                          f"but {display(data.info['source'])} holds images of {_shape(image_shape)}")
    differences = data_mismatches(ckpt.data.get("sha256", {}), data.info["sha256"])
    if differences:
        raise VaelabError(
            f"{display(run_dir)} was trained on other data than {display(data.info['source'])} holds "
            f"({'; '.join(differences)}); resuming would mix two datasets in one run. Point --data-dir at the "
            "run's own data, or start a new run"
        )
    model.load_state_dict(ckpt.model_state)
    _load_optimizer_state(session.optimizer, ckpt, config, echo)
    if not restore_generator(session.generator, ckpt.rng_state):  # a GPU run resumed on the CPU, or back
        redrawn = (f"; its test{' and validation' if data.valid is not None else ''} pixels are drawn again "
                   f"on {device.type} (dynamic binarization), so the test ELBO from here on is of other draws of "
                   "the same images" if data.dynamic else "")
        echo(f"continuing on {device}: the random stream differs from the one the run used on "
             f"{state_origin(ckpt.rng_state)}, so from here on the run is not bit-for-bit reproducible{redrawn}")
    session.position, session.metrics = ckpt.position, ckpt.metrics
    session.saved = dataclasses.replace(ckpt.position)
    if ckpt.perm is not None:
        session.perm, session.sums = ckpt.perm.to(device), ckpt.sums.to(device)
    where = f", batch {ckpt.position.batch}" if ckpt.position.batch else ""
    echo(f"resuming {run_dir} at epoch {ckpt.position.epoch + 1}{where}")
    return session


def _load_optimizer_state(optimizer: torch.optim.Optimizer, ckpt: Checkpoint, config: TrainConfig,
                          echo: Echo) -> None:
    """The checkpoint's optimizer state, run with the kernels build_optimizer chose on this machine (fused,
    foreach, capturable), whatever ran before: given before loading, so that PyTorch puts each step count
    where those kernels want it. A change of kernels that no other message reports (a compiled run
    resumed on another kind of device, or begun before --compile compiled Adam on a GPU) is said."""
    fresh = optimizer.param_groups[0]
    kernels = {key: fresh[key] for key in ("fused", "foreach", "capturable") if key in fresh}
    saved = ckpt.optimizer_state["param_groups"]
    optimizer.load_state_dict({**ckpt.optimizer_state, "param_groups": [{**group, **kernels} for group in saved]})
    if (config.optimizer == "adam" and config.compile == ckpt.config.compile
            and _adam_kind(saved[0]) != _adam_kind(kernels)):
        echo(f"continuing with {_adam_kind(kernels)} where the run so far used {_adam_kind(saved[0])}: they round "
             "otherwise, so from here on the run is not bit for bit what it would have been")


def _adam_kind(group: dict[str, Any]) -> str:
    return ("PyTorch's fused Adam" if group.get("fused") else "a foreach Adam" if group.get("foreach")
            else "a per-tensor Adam")


def _fit(run_dir: Path, config: TrainConfig, ckpt: Checkpoint | None, *, progress: bool, echo: Echo) -> Run:
    s = _start(run_dir, config, ckpt, echo)
    params = sum(p.numel() for p in s.model.parameters())
    held_out = f", {s.data.info['n_valid']} held out for validation" if s.data.valid is not None else ""
    echo(f"training {config.model} ({params:,} parameters, {describe_objective(config)}) on {s.data.train.device}: "
         f"{s.data.info['n_train']} images from {s.data.info['source']}{held_out}, {config.binarization} "
         f"binarization -> {run_dir}")
    if config.schedule_note:
        echo(config.schedule_note)
    device = s.data.train.device
    objective = build_objective(config)
    step: Step = train_step
    if config.compile:  # check_compile'd by train and _resume
        objective = compiled(objective, device)
        adam = compiles_adam(device, config.optimizer, config.compile)
        if adam:
            step = functools.partial(train_step, update=compiled_update(s.optimizer))
        echo(f"compiling the objective{' and Adam' if adam else ''} with torch.compile: the first step takes a "
             f"while{', and the first at each new learning rate' if adam else ''}")
        if caveat := compile_caveat(device):
            echo(caveat)
    echo(log_header(config))
    s.stepper = Stepper(step, s.data.batch, s.model, s.optimizer, objective, s.generator,
                        sums_size(config), graphs=graphs_wanted(device, config.model, config.optimizer),
                        batch_size=config.batch_size)
    s.threads = ThreadTuner(device)
    with stop_after_batch() as stop, _restoring(s.threads), _stopped_at_once(stop, run_dir, config):
        while s.position.epoch < config.epochs:
            started = time.perf_counter()
            set_epoch_lr(s)
            if not _train_epoch(s, stop, progress):
                s.position.elapsed += time.perf_counter() - started
                s.save()
                raise TrainingInterrupted(
                    f"{stopped_by(stop())} in epoch {s.position.epoch + 1}, batch {s.position.batch}; a consistent "
                    f"checkpoint is saved in {display(run_dir)}: continue with "
                    f"`vaelab train --resume {display(run_dir)} --epochs {config.epochs}`",
                    exit_code=128 + stop(),
                )
            row = _epoch_metrics(s, started)
            if row["test_elbo"] is not None and not math.isfinite(row["test_elbo"]):
                _diverged(s, "the test ELBO")
            s.metrics.append(row)
            s.position = Position(epoch=s.position.epoch + 1, step=s.position.step,
                                  elapsed=s.metrics[-1]["elapsed"])
            s.perm = s.sums = None
            s.save()
            echo(format_row(s.metrics[-1]))
    return load_run(run_dir)


@contextmanager
def _stopped_at_once(stop: Callable[[], int], run_dir: Path, config: TrainConfig) -> Iterator[None]:
    """A second stop signal (`signals.stop_after_batch`) said as such: what was kept, and how to go on."""
    try:
        yield
    except KeyboardInterrupt:
        if not stop():
            raise
        raise TrainingInterrupted(
            f"{stopped_by(stop())}, then again: stopped at once; {display(run_dir)} keeps its last checkpoint "
            f"(the batches since are lost): continue with `vaelab train --resume {display(run_dir)} --epochs "
            f"{config.epochs}`", exit_code=128 + stop()) from None


def _train_epoch(s: _Session, stop: Callable[[], int], progress: bool) -> bool:
    """Run the rest of the epoch under way; False if a signal (Ctrl-C, SIGTERM, SIGHUP) stopped it early."""
    n, batch_size = len(s.data.train), s.config.batch_size
    n_batches, epoch = math.ceil(n / batch_size), s.position.epoch + 1
    if s.perm is None:
        s.perm = torch.randperm(n, generator=s.generator, device=s.data.train.device)
        dtype = torch.float32 if s.data.train.device.type == "mps" else torch.float64  # mps has no float64
        s.sums = torch.zeros(sums_size(s.config), dtype=dtype, device=s.data.train.device)
    bar = tqdm(total=n_batches, initial=s.position.batch, desc=f"epoch {epoch}/{s.config.epochs}",
               unit="batch", leave=False, disable=not progress, dynamic_ncols=True)
    with bar:
        for b in range(s.position.batch, n_batches):
            s.sums += s.stepper(s.perm[b * batch_size:(b + 1) * batch_size]).to(s.sums.dtype)
            s.position.batch, s.position.step = b + 1, s.position.step + 1
            bar.update()
            s.threads.adjust()  # looks at the machine's load a few times a second
            if b % 50 == 49 or stop():  # .item() syncs a GPU: only now and then
                _check_finite(s)
                if progress:
                    bar.set_postfix(lowerBound=f"{s.sums[:2].sum().item() / min(n, (b + 1) * batch_size):.2f}")
            if stop():
                return False
    _check_finite(s)
    return True


def _epoch_metrics(s: _Session, started: float) -> dict[str, Any]:
    """The epoch's row of the log: per-image means in nats, and the test-set ELBO."""
    reg, loglike, *value = (s.sums / len(s.data.train)).tolist()
    row = {"epoch": s.position.epoch + 1, "reg": reg, "loglike": loglike, "lower_bound": reg + loglike,
           "test_elbo": None, "test_loglike": None, "test_kl": None, "lr": s.optimizer.param_groups[0]["lr"]}
    if value:  # the objective's own value, when it is not the article's ELBO
        row["objective"] = value[0]
    if s.config.test_every_epoch:
        test = _test_scores(s.model, s.data.test, s.config.seed)
        row.update(test_elbo=test.elbo.mean().item(), test_loglike=test.loglike.mean().item(),
                   test_kl=test.kl.mean().item())
    if s.data.valid is not None:
        valid = _test_scores(s.model, s.data.valid, s.config.seed + VALIDATION_STREAM)
        row.update(valid_elbo=valid.elbo.mean().item(), valid_loglike=valid.loglike.mean().item(),
                   valid_kl=valid.kl.mean().item())
    seconds = time.perf_counter() - started  # this session's share of the epoch, test included
    return {**row, "seconds": seconds, "elapsed": s.position.elapsed + seconds, "step": s.position.step,
            "machine": describe(s.data.train.device) + (", torch.compile" if s.config.compile else "")}


def _test_scores(model: VAEModel, x: torch.Tensor, seed: int) -> ElboTerms:
    """ELBO terms of held-out images with a fixed noise stream, so epochs compare like with like."""
    model.eval()
    terms = elbo_terms(model, x, generator=make_generator(x.device, seed))
    model.train()
    return ElboTerms(terms.loglike.cpu().double(), terms.kl.cpu().double())  # MPS has no float64


def sums_size(config: TrainConfig) -> int:
    """Running sums of an epoch: -KL and log-likelihood, and the objective's value unless it is the ELBO."""
    return 3 if config.logs_objective else 2


def _shape(shape) -> str:
    return " x ".join(map(str, shape))


def training_memory(config: TrainConfig, image_shape: tuple[int, ...], n_train: int) -> int:
    """Bytes that training a model of `config` needs beyond the data, roughly, built on no device.

    Weights, gradients and two optimizer moments per parameter, and the activations
    of a training batch (or of a 2,000-image test batch) kept for the backward pass:
    each hidden layer's and feature map's, in the encoder and the decoder.
    """
    with torch.device("meta"):
        model = _architecture(config, image_shape)
    params = sum(p.numel() for p in model.parameters())
    data_size = math.prod(image_shape)
    maps = 0
    if config.model == "conv":  # feature maps of side H/2, H/4, …
        maps = sum(c * (image_shape[0] // 2 ** (i + 1)) ** 2 for i, c in enumerate(config.channels))
    if config.model == "mlp2":  # the upper perceptrons, both ways, and h1's mean, variance and samples
        maps = sum(config.upper_hidden_layers) + 3 * config.lower_latent
    per_image = (2 * (sum(config.hidden_layers) + maps) + 6 * config.latent_size + 4 * data_size) * config.samples
    batch = max(min(config.batch_size, n_train), 2000)
    return 4 * (4 * params + 3 * batch * per_image)


@contextmanager
def _restoring(threads: ThreadTuner):
    try:
        yield
    finally:
        threads.restore()


def _check_finite(s: _Session) -> None:
    if not bool(torch.isfinite(s.sums).all()):
        _diverged(s, "the loss")


def _diverged(s: _Session, what: str) -> None:
    """Stop: `what` became NaN or infinite. The checkpoint on disk predates it and stays."""
    kept = s.saved or Position()
    where = f"epoch {kept.epoch}" + (f", batch {kept.batch}" if kept.batch else "")
    raise Diverged(
        f"training diverged: {what} became NaN or infinite in epoch {s.position.epoch + 1}; the last "
        f"checkpoint with finite numbers ({where}) is kept in {display(s.run_dir)}. Train again with a lower --lr"
    )
