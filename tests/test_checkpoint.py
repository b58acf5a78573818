"""Run directories: round trips exactly, loads without pickle, refuses damage clearly."""

import json
import os
import random
import shutil
import stat
from pathlib import Path

import pytest
import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from vaelab.checkpoint import (
    CHECKPOINT,
    FORMAT,
    FORMAT_1,
    Checkpoint,
    Position,
    _digest,
    atomic_write,
    load_checkpoint,
    load_run,
    read_checkpoint,
    save_checkpoint,
)
from vaelab.config import TrainConfig
from vaelab.device import restore_generator, state_origin
from vaelab.errors import VaelabError
from vaelab.model import VAE
from vaelab.models import MLPVAE, ConvVAE, args_for, build_model, named_args
from vaelab.rundir import prepare_run_dir

V1_RUN = Path(__file__).parent / "data" / "v1-run"  # written by vaelab 0.1.0; see data/README.md


def _row(epoch, reg):
    return {"epoch": epoch, "reg": reg, "loglike": -90.0, "lower_bound": reg - 90.0, "test_elbo": None,
            "test_loglike": None, "test_kl": None, "seconds": 0.5, "elapsed": 0.5 * epoch, "step": 10 * epoch}


def _checkpoint(tmp_path, *, image_shape=(28, 28), latent_size=4, hidden_size=8, steps=1, **fields):
    """A checkpoint after `steps` Adam steps; `fields` replace the Checkpoint's (config, position, data, perm, ...)."""
    config = fields.pop("config", None) or TrainConfig(latent_size=latent_size, hidden_size=hidden_size, epochs=3)
    torch.manual_seed(0)
    model = build_model(config.model, args_for(config, image_shape))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(steps):
        model(torch.ones(2, model.data_size)).elbo.sum().backward()
        optimizer.step()
    values = dict(
        config=config,
        model_args=named_args(model),
        model_state=model.state_dict(),
        optimizer_state=optimizer.state_dict(),
        rng_state=torch.Generator().manual_seed(9).get_state(),
        position=Position(epoch=2, batch=0, step=20, elapsed=1.5),
        metrics=[_row(1, -1.0), _row(2, -2.0)],
        data={"source": "test"},
    )
    ckpt = Checkpoint(**{**values, **fields})
    path = prepare_run_dir(tmp_path / "run")
    save_checkpoint(path, ckpt)
    return path, ckpt, model, optimizer


def _read(path):
    """A checkpoint file's tensors and metadata, as a forger would see them."""
    raw = (path / CHECKPOINT).read_bytes()
    header = json.loads(raw[8 : 8 + int.from_bytes(raw[:8], "little")])
    return load_safetensors(raw), header["__metadata__"]


def _forge(path, edit):
    """Change the checkpoint with `edit(tensors, metadata)`, then give it a valid checksum."""
    tensors, metadata = _read(path)
    edit(tensors, metadata)
    covered = metadata if metadata["format"] == FORMAT else None  # format 1 hashed the tensors alone
    metadata["sha256"] = _digest(tensors, covered)
    (path / CHECKPOINT).write_bytes(save_safetensors(tensors, metadata=metadata))


def test_round_trip_is_exact(tmp_path):
    path, saved, model, optimizer = _checkpoint(tmp_path)
    loaded = load_checkpoint(path)
    assert loaded.config == saved.config
    assert loaded.position == saved.position
    assert loaded.metrics == saved.metrics and loaded.data == saved.data
    assert torch.equal(loaded.rng_state, saved.rng_state)
    for k, v in saved.model_state.items():
        assert torch.equal(loaded.model_state[k], v)
    fresh = torch.optim.Adam(VAE(latent_size=4, hidden_size=8).parameters(), lr=1e-3)
    fresh.load_state_dict(loaded.optimizer_state)
    for i, entry in optimizer.state_dict()["state"].items():
        for k, v in entry.items():
            assert torch.equal(torch.as_tensor(fresh.state_dict()["state"][i][k]), torch.as_tensor(v))
    # The loaded model computes exactly what the saved one did.
    run = load_run(path)
    x = (torch.rand(5, 784) > 0.5).float()
    with torch.no_grad():
        assert torch.equal(run.model.decode(run.model.encode(x)[0]), model.decode(model.encode(x)[0]))
    assert run.epoch == 2 and not run.model.training


def test_checkpoint_is_plain_safetensors_without_pickle(tmp_path):
    path, *_ = _checkpoint(tmp_path)
    raw = (path / CHECKPOINT).read_bytes()
    assert b"\x80\x04" not in raw[:64]  # no pickle protocol header
    from safetensors.torch import load_file

    tensors = load_file(path / CHECKPOINT)  # any safetensors reader opens it
    assert "model.decoder.layer3.weight" in tensors
    assert tensors["model.decoder.layer3.weight"].shape == (784, 8)


def test_files_are_written_atomically_with_normal_permissions(tmp_path):
    target = tmp_path / "f.json"
    atomic_write(target, b"one")
    atomic_write(target, b"two")
    assert target.read_bytes() == b"two"
    assert os.listdir(tmp_path) == ["f.json"]  # no temporary files left behind
    mode = stat.S_IMODE(target.stat().st_mode)
    assert mode & 0o044  # readable by others, as files normally are (mkstemp alone gives 0600)


def test_a_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "f"
    atomic_write(target, b"good")

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(VaelabError, match=r"cannot write .*/f: No space left on device; the previous"):
        atomic_write(target, b"bad")
    assert target.read_bytes() == b"good"
    assert os.listdir(tmp_path) == ["f"]


def test_missing_and_damaged_runs_get_clear_errors(tmp_path):
    with pytest.raises(VaelabError, match="no run at"):
        load_checkpoint(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(VaelabError, match="not a vaelab run"):
        load_checkpoint(tmp_path / "empty")
    path, *_ = _checkpoint(tmp_path)
    raw = (path / CHECKPOINT).read_bytes()
    flipped = bytearray(raw)
    flipped[-100] ^= 0xFF  # one weight byte: safetensors alone would not notice
    header = bytearray(raw)
    header[20] = ord("}")  # broken JSON header
    for damaged in (raw[: len(raw) // 2], b"garbage" * 10, bytes(flipped), bytes(header), b""):
        (path / CHECKPOINT).write_bytes(damaged)
        with pytest.raises(VaelabError, match="damaged"):
            load_checkpoint(path)


def _mid_epoch(tmp_path, latent_size=4, hidden_size=8, **kw):
    """A checkpoint saved after batch 3 of an epoch of 100 images in batches of 10."""
    perm = torch.randperm(100, generator=torch.Generator().manual_seed(0))
    sums = torch.tensor([-1.25, -80.5], dtype=torch.float64)
    config = TrainConfig(latent_size=latent_size, hidden_size=hidden_size, epochs=3, batch_size=10)
    return _checkpoint(tmp_path, latent_size=latent_size, hidden_size=hidden_size, config=config,
                       position=Position(epoch=2, batch=3, step=23, elapsed=1.5),
                       data={"source": "test", "n_train": 100}, perm=perm, sums=sums, **kw)


def test_mid_epoch_extras_round_trip(tmp_path):
    path, saved, *_ = _mid_epoch(tmp_path)
    loaded = load_checkpoint(path)
    assert torch.equal(loaded.perm, saved.perm) and torch.equal(loaded.sums, saved.sums)
    assert loaded.position == saved.position


# --- integrity: a flipped bit anywhere, or a forged field, is a clean "damaged" error ------------
def _assert_same(a: Checkpoint, b: Checkpoint) -> None:
    assert (a.config, a.model_args, a.position, a.metrics, a.data) == (b.config, b.model_args, b.position,
                                                                       b.metrics, b.data)
    assert a.optimizer_state["param_groups"] == b.optimizer_state["param_groups"]
    assert a.model_state.keys() == b.model_state.keys()
    assert all(torch.equal(v, b.model_state[k]) for k, v in a.model_state.items())
    for index, entry in a.optimizer_state["state"].items():
        other = b.optimizer_state["state"][index]
        assert entry.keys() == other.keys() and all(torch.equal(v, other[k]) for k, v in entry.items())
    assert torch.equal(a.rng_state, b.rng_state)
    for x, y in ((a.perm, b.perm), (a.sums, b.sums)):
        assert (x is None and y is None) or torch.equal(x, y)


def test_new_checkpoints_have_format_2_whose_checksum_covers_the_metadata(tmp_path):
    path, *_ = _checkpoint(tmp_path)
    tensors, metadata = _read(path)
    assert metadata["format"] == FORMAT == "vaelab-checkpoint/2"
    for key, old, new in (("optimizer", '"lr": 0.001', '"lr": 0.002'), ("position", '"epoch": 2', '"epoch": 1')):
        changed = {**metadata, key: metadata[key].replace(old, new)}
        assert changed[key] != metadata[key]
        raw = save_safetensors(tensors, metadata=changed)  # the old checksum kept
        with pytest.raises(VaelabError, match=r"damaged .*\(its contents do not match their checksum\)"):
            read_checkpoint(raw)


def test_every_flipped_header_bit_is_damage_never_another_checkpoint(tmp_path):
    """Every bit of the length and the JSON header (tensor table and metadata), and a sample of the data.

    The checkpoint is tiny and its optimizer has not stepped (no per-parameter state) to keep the
    ~17,000 flips to seconds; the forgery tests below cover the optimizer's tensors.
    """
    path, *_ = _mid_epoch(tmp_path, image_shape=(4, 4), latent_size=2, hidden_size=4, steps=0)
    raw = (path / CHECKPOINT).read_bytes()
    original = read_checkpoint(raw)
    header_bits = 8 * (8 + int.from_bytes(raw[:8], "little"))
    data_bits = random.Random(0).sample(range(header_bits, 8 * len(raw)), 300)
    for bit in [*range(header_bits), *data_bits]:
        flipped = bytearray(raw)
        flipped[bit // 8] ^= 1 << (bit % 8)
        try:
            loaded = read_checkpoint(bytes(flipped))
        except VaelabError as exc:
            assert "is damaged and cannot be read" in str(exc) and "\n" not in str(exc), bit
            continue
        _assert_same(loaded, original)  # a flip the JSON parser cannot see (none is known) loads the same


def _metadata_edit(key, change):
    def edit(tensors, metadata):
        value = json.loads(metadata[key])
        change(value)
        metadata[key] = json.dumps(value)

    return edit


def _set(key, value):
    return lambda d: d.__setitem__(key, value)


FORGERIES = {  # name: (edit, what the error says)
    "dropped tensor": (lambda t, m: t.pop("model.encoder.layer1.bias"),
                       "tensor 'model.encoder.layer1.bias' is missing"),
    "added model tensor": (lambda t, m: t.__setitem__("model.encoder.layer4.weight", torch.zeros(2)),
                           "unexpected tensor 'model.encoder.layer4.weight'"),
    "added stray tensor": (lambda t, m: t.__setitem__("notes", torch.zeros(1)), "unexpected tensor 'notes'"),
    "changed shape": (lambda t, m: t.__setitem__("model.decoder.layer3.bias", torch.zeros(783)),
                      "tensor 'model.decoder.layer3.bias' is float32 [783]; its model_args make it float32 [784]"),
    "float64 weights": (lambda t, m: t.__setitem__("model.decoder.layer3.bias", torch.zeros(784, dtype=torch.float64)),
                        "tensor 'model.decoder.layer3.bias' is float64 [784]"),
    "string epoch": (_metadata_edit("position", _set("epoch", "2")),
                     "its position epoch is '2', not a non-negative integer"),
    "negative step": (_metadata_edit("position", _set("step", -1)), "its position step is -1"),
    "missing elapsed": (_metadata_edit("position", lambda p: p.pop("elapsed")), "its position has no elapsed"),
    "NaN elapsed": (lambda t, m: m.__setitem__("position", m["position"].replace("1.5", "NaN")),
                    "its position is not valid JSON: NaN is not a number vaelab writes"),
    "zero latent size": (_metadata_edit("model_args", _set("latent_size", 0)),
                         "its model_args latent_size is 0, not a positive integer"),
    "string hidden layers": (_metadata_edit("model_args", _set("hidden", "8")),
                             "its model_args hidden is '8', not a list of at most 16 positive widths"),
    "missing latent size": (_metadata_edit("model_args", lambda a: a.pop("latent_size")),
                            "its model_args has no latent_size, which the mlp model needs"),
    "missing name": (_metadata_edit("model_args", lambda a: a.pop("name")), "its model_args has no name"),
    "extra model arg": (_metadata_edit("model_args", _set("depth", 3)),
                        "its model_args has an unexpected 'depth' for the mlp model"),
    "model args unlike config": (_metadata_edit("model_args", _set("hidden", [9, 9])),
                                 "its model_args hidden [9, 9] does not match its config's [8, 8]"),
    "activation unlike config": (_metadata_edit("model_args", _set("activation", "tanh")),
                                 "its model_args activation 'tanh' does not match its config's 'relu'"),
    "variance unlike config": (_metadata_edit("model_args", _set("variance", "exp")),
                               "its model_args variance 'exp' does not match its config's 'softplus'"),
    "architecture unlike config": (_metadata_edit("model_args", lambda a: a.update(name="conv", channels=[32, 64])),
                                   "its model_args name 'conv' does not match its config's 'mlp'"),
    "unknown architecture": (_metadata_edit("model_args", _set("name", "transformer")),
                             "its model_args name 'transformer' is not an architecture vaelab knows (mlp, conv, mlp2)"),
    "architecture not a string": (_metadata_edit("model_args", _set("name", {"mlp": 1})),
                                  "its model_args name {'mlp': 1} is not an architecture vaelab knows"),
    "huge images": (_metadata_edit("model_args", _set("image_shape", [2**30, 2**30])),
                    "model args describe a network too large to build"),
    "model args not a table": (lambda t, m: m.__setitem__("model_args", "[1, 2]"), "its model_args is not a table"),
    "old model args, other images": (
        lambda t, m: m.__setitem__("model_args", json.dumps({"data_size": 100, "latent_size": 4, "hidden_size": 8})),
        "its model_args data_size is 100, but a run written before architectures had names models 784 pixels"),
    "old model args, string hidden size": (
        lambda t, m: m.__setitem__("model_args", json.dumps({"data_size": 784, "latent_size": 4, "hidden_size": "8"})),
        "its model_args hidden_size is '8', not a positive integer"),
    "old model args, extra": (
        lambda t, m: m.__setitem__("model_args", json.dumps({"data_size": 784, "latent_size": 4, "depth": 3})),
        "its model_args has an unexpected 'depth'"),
    "old model args unlike config": (
        lambda t, m: m.__setitem__("model_args", json.dumps({"data_size": 784, "latent_size": 4, "hidden_size": 9})),
        "its model_args hidden [9, 9] does not match its config's [8, 8]"),
    "int64 rng state": (lambda t, m: t.__setitem__("rng.train", t["rng.train"].long()),
                        "tensor 'rng.train' is int64 [5056], not a generator's state (uint8, 1-D)"),
    "2-D rng state": (lambda t, m: t.__setitem__("rng.train", t["rng.train"].reshape(2, -1)),
                      "tensor 'rng.train' is uint8 [2, 2528]"),
    "dropped optimizer tensor": (lambda t, m: t.pop("optimizer.0.exp_avg"),
                                 "the optimizer state of parameter 0 has exp_avg_sq, step, not exp_avg, exp_avg_sq"),
    "optimizer shape": (lambda t, m: t.__setitem__("optimizer.3.exp_avg", torch.zeros(5)),
                        "tensor 'optimizer.3.exp_avg' is float32 [5]; its parameter is float32 [8]"),
    "optimizer index": (lambda t, m: t.__setitem__("optimizer.12.exp_avg", torch.zeros(5)),
                        "unexpected tensor 'optimizer.12.exp_avg'"),
    "string lr": (_metadata_edit("optimizer", lambda o: o["param_groups"][0].__setitem__("lr", "0.001")),
                  "its optimizer's 'lr' is '0.001'"),
    "other lr": (_metadata_edit("optimizer", lambda o: o["param_groups"][0].__setitem__("lr", 0.01)),
                 "its optimizer's lr 0.01 is not its config's lr 0.001"),
    "short betas": (_metadata_edit("optimizer", lambda o: o["param_groups"][0].__setitem__("betas", [0.9])),
                    "its optimizer's 'betas' is [0.9]"),
    "fewer params": (_metadata_edit("optimizer", lambda o: o["param_groups"][0]["params"].pop()),
                     "its optimizer's params are not the model's 12 parameters"),
    "bad config": (_metadata_edit("config", _set("lr", -1.0)), "config: lr (--lr) must be a positive finite number"),
    "unknown config key": (_metadata_edit("config", _set("colour", "red")), "config: unknown key(s) colour"),
    "metrics not a list": (lambda t, m: m.__setitem__("metrics", '{"epoch": 1}'),
                           "its metrics are not a list of tables"),
    "a metrics row missing": (lambda t, m: m.__setitem__("metrics", json.dumps(json.loads(m["metrics"])[:1])),
                              "it holds 1 rows of metrics for 2 epochs"),
    "a metrics row without its epoch": (
        lambda t, m: m.__setitem__("metrics", json.dumps([{**r, "epoch": "1"} for r in json.loads(m["metrics"])])),
        "its metrics row 1 is numbered '1'"),
    "a metric that is not a number": (
        lambda t, m: m.__setitem__("metrics", json.dumps([{**r, "loglike": "x"} for r in json.loads(m["metrics"])])),
        "its metrics row 1 has loglike 'x'"),
    "a machine that is not words": (
        lambda t, m: m.__setitem__("metrics", json.dumps([{**r, "machine": ["x"]} for r in json.loads(m["metrics"])])),
        "its metrics row 1 has machine ['x']"),
    "a machine that would break a table's line": (
        lambda t, m: m.__setitem__("metrics", json.dumps([{**r, "machine": "cpu\n| forged |"}
                                                          for r in json.loads(m["metrics"])])),
        "its metrics row 1 has machine 'cpu\\n| forged |'"),
    "data digests not a table": (_metadata_edit("data", _set("sha256", ["abc"])),
                                 "its data sha256 is not a table of file digests"),
    "extra metadata": (lambda t, m: m.__setitem__("comment", "hi"), "its metadata has an unexpected 'comment'"),
    "unknown format": (lambda t, m: m.__setitem__("format", "vaelab-checkpoint/9"),
                       "unknown format 'vaelab-checkpoint/9'"),
    "format 1, forged": (lambda t, m: (m.__setitem__("format", FORMAT_1),
                                       m.__setitem__("position", m["position"].replace('"epoch": 2', '"epoch": "2"'))),
                         "its position epoch is '2'"),
    "epoch order between epochs": (lambda t, m: t.__setitem__("epoch.perm", torch.arange(10)),
                                   "it holds an unfinished epoch's order or sums, but its position is between epochs"),
}


@pytest.mark.parametrize("name", FORGERIES)
def test_forged_checkpoints_are_damaged_for_load_checkpoint_and_load_run(tmp_path, name):
    edit, reason = FORGERIES[name]
    path, *_ = _checkpoint(tmp_path)
    _forge(path, edit)
    for load in (load_checkpoint, load_run):
        with pytest.raises(VaelabError) as caught:
            load(path)
        message = str(caught.value)
        assert message.startswith(f"{path / CHECKPOINT} is damaged and cannot be read (")
        assert reason in message and "\n" not in message


MID_EPOCH_FORGERIES = {
    "not a permutation": (lambda t: t["epoch.perm"].__setitem__(0, t["epoch.perm"][1]),
                          "tensor 'epoch.perm' is not an int64 permutation of the 100 training images"),
    "int32 permutation": (lambda t: t.__setitem__("epoch.perm", t["epoch.perm"].int()),
                          "tensor 'epoch.perm' is not an int64 permutation"),
    "short permutation": (lambda t: t.__setitem__("epoch.perm", t["epoch.perm"][:99]),
                          "tensor 'epoch.perm' is not an int64 permutation of the 100 training images"),
    "no sums": (lambda t: t.pop("epoch.sums"), "its position is batch 3 of an epoch, but the epoch's order or sums"),
    "three sums": (lambda t: t.__setitem__("epoch.sums", torch.zeros(3, dtype=torch.float64)),
                   "tensor 'epoch.sums' is float64 [3], not 2 float sums"),
}


@pytest.mark.parametrize("name", MID_EPOCH_FORGERIES)
def test_forged_mid_epoch_checkpoints_are_damaged(tmp_path, name):
    edit, reason = MID_EPOCH_FORGERIES[name]
    path, *_ = _mid_epoch(tmp_path)
    _forge(path, lambda tensors, metadata: edit(tensors))
    with pytest.raises(VaelabError, match="is damaged and cannot be read") as caught:
        load_checkpoint(path)
    assert reason in str(caught.value)


def test_a_batch_past_the_end_of_the_epoch_is_damaged(tmp_path):
    path, *_ = _mid_epoch(tmp_path)
    _forge(path, _metadata_edit("position", _set("batch", 11)))  # 100 images in batches of 10
    with pytest.raises(VaelabError, match=r"its position batch 11 is past the end of an epoch of 100 images"):
        load_checkpoint(path)


def test_new_checkpoints_name_their_architecture(tmp_path):
    path, saved, model, _ = _checkpoint(tmp_path)
    stored = json.loads(_read(path)[1]["model_args"])
    assert stored == {"name": "mlp", "image_shape": [28, 28], "latent_size": 4, "hidden": [8, 8],
                      "activation": "relu", "variance": "softplus"}
    run = load_run(path)
    assert type(run.model) is MLPVAE and run.model.image_shape == (28, 28)
    assert load_checkpoint(path).model_args == stored


def test_a_conv_run_round_trips_and_rebuilds_from_the_file_alone(tmp_path):
    config = TrainConfig(model="conv", latent_size=3, hidden_size=(5,), channels=(2, 3), activation="tanh",
                         variance="exp", epochs=3)
    path, saved, model, _ = _checkpoint(tmp_path, image_shape=(8, 8), config=config)
    assert json.loads(_read(path)[1]["model_args"]) == {
        "name": "conv", "image_shape": [8, 8], "latent_size": 3, "hidden": [5], "activation": "tanh",
        "variance": "exp", "channels": [2, 3]}
    loaded = load_checkpoint(path)
    assert loaded.config == saved.config and loaded.model_args == saved.model_args
    assert all(torch.equal(v, saved.model_state[k]) for k, v in loaded.model_state.items())
    run = load_run(path)
    assert type(run.model) is ConvVAE and run.model.image_shape == (8, 8)
    x = (torch.rand(4, 64) > 0.5).float()
    with torch.no_grad():
        assert torch.equal(run.model.decode(run.model.encode(x)[0]), model.decode(model.encode(x)[0]))


def test_a_conv_run_of_images_it_cannot_halve_is_damaged(tmp_path):
    config = TrainConfig(model="conv", latent_size=3, hidden_size=(5,), channels=(2, 3), epochs=3)
    path, *_ = _checkpoint(tmp_path, image_shape=(8, 8), config=config)
    _forge(path, _metadata_edit("model_args", _set("image_shape", [8, 10])))
    with pytest.raises(VaelabError, match=r"damaged .*\(its model_args image_shape \[8, 10\] is not square, which the "
                                          r"conv model needs\)"):
        load_run(path)


@pytest.mark.parametrize("old", [{"data_size": 784, "latent_size": 4, "hidden_size": 8},
                                 {"data_size": 784, "latent_size": 4},  # the VAE's default: 2 x 4
                                 {"data_size": 784, "latent_size": 4, "hidden_size": None}],
                         ids=["hidden size", "no hidden size", "hidden size null"])
def test_model_args_written_before_architectures_had_names_load_as_the_mlp(tmp_path, old):
    path, saved, model, _ = _checkpoint(tmp_path)
    _forge(path, lambda t, m: m.__setitem__("model_args", json.dumps(old)))
    loaded = load_checkpoint(path)
    assert loaded.model_args == saved.model_args == {"name": "mlp", "image_shape": [28, 28], "latent_size": 4,
                                                     "hidden": [8, 8], "activation": "relu", "variance": "softplus"}
    run = load_run(path)
    assert type(run.model) is MLPVAE and run.model.hidden == (8, 8)
    x = (torch.rand(5, 784) > 0.5).float()
    with torch.no_grad():
        assert torch.equal(run.model.decode(run.model.encode(x)[0]), model.decode(model.encode(x)[0]))


def test_a_checkpoint_without_the_architectures_name_is_not_written(tmp_path):
    model = VAE(latent_size=4, hidden_size=8)
    with pytest.raises(ValueError, match="model_args must name the architecture"):
        _checkpoint(tmp_path, model_args=model.args)
    assert not (tmp_path / "run" / CHECKPOINT).exists()


@pytest.fixture(scope="module")
def tiny_run(small_mnist, tmp_path_factory):
    """A real run of one epoch on the small MNIST, latent 2, hidden 4."""
    from vaelab.training import train

    path = tmp_path_factory.mktemp("tiny") / "run"
    train(TrainConfig(data_dir=str(small_mnist), latent_size=2, hidden_size=4, epochs=1), path, echo=lambda s: None)
    return path


@pytest.mark.parametrize("command", [["eval", "{run}", "--iw-k", "0"], ["kl", "{run}"],
                                     ["train", "--resume", "{run}", "--epochs", "2"]], ids=["eval", "kl", "resume"])
@pytest.mark.parametrize("name", ["dropped tensor", "string epoch", "int64 rng state"])
def test_the_cli_says_a_forged_run_is_damaged_in_one_line(tiny_run, tmp_path, capsys, command, name):
    from vaelab.cli import main

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    edit, reason = FORGERIES[name]
    _forge(run, edit)
    assert main([arg.format(run=run) for arg in command]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"vaelab: error: {run / CHECKPOINT} is damaged and cannot be read (")
    assert reason in err and err.count("\n") == 1 and "Traceback" not in err


def test_runs_of_format_1_still_load_and_score_the_same(tmp_path):
    from vaelab.evaluate import evaluate_run

    run = tmp_path / "v1-run"
    shutil.copytree(V1_RUN, run)
    assert _read(run)[1]["format"] == FORMAT_1
    result = evaluate_run(run, iw_k=10, save=False)
    # What vaelab 0.1.0 printed for this run (tests/data/README.md), to every digit.
    assert result.elbo == -220.15323177947997
    assert result.log_likelihood == -217.56784432983397
    assert result.active_units == 2
    assert json.loads(_read(run)[1]["model_args"]) == {"data_size": 784, "latent_size": 2, "hidden_size": 8}
    old = load_checkpoint(run)
    assert old.model_args == {"name": "mlp", "image_shape": [28, 28], "latent_size": 2, "hidden": [8, 8],
                              "activation": "relu", "variance": "softplus"}
    assert load_run(run).model.image_shape == (28, 28)
    save_checkpoint(run, old)  # saved again, it is format 2 and reads back the same
    assert _read(run)[1]["format"] == FORMAT
    _assert_same(load_checkpoint(run), old)


# --- a GPU run resumed on the CPU -----------------------------------------------------------
CUDA_STATE = torch.arange(16, dtype=torch.uint8)  # a CUDA generator's state: Philox seed and offset


def test_restore_generator_restores_its_own_kind_and_reseeds_from_another():
    saved = torch.Generator().manual_seed(5)
    state, expected = saved.get_state(), torch.rand(3, generator=saved)
    generator = torch.Generator()
    assert restore_generator(generator, state) is True
    assert torch.equal(torch.rand(3, generator=generator), expected)
    a, b, c = torch.Generator(), torch.Generator().manual_seed(123), torch.Generator()
    assert restore_generator(a, CUDA_STATE) is False and restore_generator(b, CUDA_STATE) is False
    restore_generator(c, CUDA_STATE.flip(0))
    draws = [torch.rand(3, generator=g) for g in (a, b, c)]
    assert torch.equal(draws[0], draws[1]) and not torch.equal(draws[0], draws[2])  # a function of the bytes alone
    assert (state_origin(CUDA_STATE), state_origin(state)) == ("cuda", "cpu")


def test_a_gpu_run_resumes_on_the_cpu_and_says_its_stream_differs(tiny_run, tmp_path):
    from vaelab.training import resume

    weights = []
    for name in ("first", "second"):
        run = tmp_path / name
        shutil.copytree(tiny_run, run)
        ckpt = load_checkpoint(run)
        ckpt.rng_state = CUDA_STATE
        save_checkpoint(run, ckpt)
        lines = []
        result = resume(run, epochs=2, device="cpu", echo=lines.append)
        assert result.epoch == 2 and load_checkpoint(run).position.epoch == 2
        assert ("continuing on cpu: the random stream differs from the one the run used on cuda, so from here on "
                "the run is not bit-for-bit reproducible") in lines
        weights.append(result.model.state_dict())
    assert all(torch.equal(v, weights[1][k]) for k, v in weights[0].items())  # the same resume, the same run


def test_a_dynamic_gpu_run_resumed_on_the_cpu_says_its_test_pixels_are_drawn_again(small_mnist, tmp_path):
    from vaelab.training import resume, train

    run = tmp_path / "dynamic"
    train(TrainConfig(data_dir=str(small_mnist), latent_size=2, hidden_size=8, epochs=1, binarization="dynamic",
                      validation=100), run, echo=lambda s: None)
    ckpt = load_checkpoint(run)
    ckpt.rng_state = CUDA_STATE  # as a GPU run's checkpoint holds it
    save_checkpoint(run, ckpt)
    lines = []
    resume(run, epochs=2, device="cpu", echo=lines.append)
    assert ("continuing on cpu: the random stream differs from the one the run used on cuda, so from here on the "
            "run is not bit-for-bit reproducible; its test and validation pixels are drawn again on cpu (dynamic "
            "binarization), so the test ELBO from here on is of other draws of the same images") in lines
