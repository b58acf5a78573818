"""vaelab.presets and the IWAE schedule: Burda, Grosse & Salakhutdinov (2015), Table 1, one stochastic layer."""

from __future__ import annotations

import html
import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from vaelab.checkpoint import load_checkpoint, load_run
from vaelab.cli import main
from vaelab.config import TrainConfig, stage_epochs, stage_of
from vaelab.errors import VaelabError
from vaelab.models.init import authors_weights, initialise, output_bias
from vaelab.presets import (
    changes,
    list_presets,
    load_preset,
    other_data,
    paper_cell,
    published,
    twin,
    unlike_its_preset,
)
from vaelab.report import write_report
from vaelab.training import build_model, resume, train

CELLS = {"vae-k1": ("elbo", 1, -86.76), "vae-k5": ("elbo", 5, -86.47), "vae-k50": ("elbo", 50, -86.35),
         "iwae-k1": ("iwae", 1, -86.76), "iwae-k5": ("iwae", 5, -85.54), "iwae-k50": ("iwae", 50, -84.78)}
TWO_LAYER_CELLS = {"vae-k1": -85.33, "vae-k5": -85.01, "vae-k50": -84.78, "iwae-k1": -85.33, "iwae-k5": -83.89,
                   "iwae-k50": -82.90}
# Their code's rates, experiments.py: 1e-4 * round(10 ** (1 - (i - 1) / 7.), 1) for checkpoints i = 1..8
AUTHORS_LRS = [1e-3, 7.2e-4, 5.2e-4, 3.7e-4, 2.7e-4, 1.9e-4, 1.4e-4, 1e-4]


def test_the_schedule_runs_3_to_the_i_passes_per_stage_for_3280_in_all():
    config = TrainConfig(lr_schedule="iwae")
    assert (config.epochs, config.stages, config.schedule_note) == (3280, 8, None)
    lrs = [config.lr_at(e) for e in range(1, 3281)]
    stages = [stage_of(e) for e in range(1, 3281)]
    assert [stages.count(i) for i in range(8)] == [3**i for i in range(8)]
    assert stages == sorted(stages)
    firsts = [e for e in range(1, 3281) if e == 1 or stages[e - 1] != stages[e - 2]]
    assert firsts == [1, 2, 5, 14, 41, 122, 365, 1094]  # stages end at 1, 4, 13, 40, 121, 364, 1093, 3280
    for e, lr in enumerate(lrs, start=1):
        i = stages[e - 1]
        assert lr == 1e-3 * round(10 ** (1 - i / 7), 1) / 10
        assert lr == pytest.approx(AUTHORS_LRS[i], rel=1e-15)
    paper = TrainConfig(lr_schedule="iwae-paper")
    assert [paper.lr_at(e) for e in range(1, 3281)] == [1e-3 * 10 ** (-s / 7) for s in stages]
    assert TrainConfig().lr_at(1) == TrainConfig().lr_at(10) == 1e-3


@pytest.mark.parametrize("stages", range(1, 9))
def test_stages_n_give_the_first_n_stages_epochs(stages):
    config = TrainConfig(lr_schedule="iwae", stages=stages)
    assert config.epochs == stage_epochs(stages) == sum(3**i for i in range(stages))
    assert TrainConfig(lr_schedule="iwae", epochs=config.epochs).stages == stages
    if stages < 8:
        which = "stage 1" if stages == 1 else f"stages 1\u2013{stages}"
        assert config.schedule_note == f"Shortened schedule: {which} of 8 ({config.epochs:,} of 3,280 passes)"


@pytest.mark.parametrize("fields, message", [
    ({"lr_schedule": "iwae", "epochs": 10}, "--epochs) 10 does not end a stage of --lr-schedule iwae (stages end "
                                            "at epochs 1, 4, 13, 40, 121, 364, 1093, 3280); give --stages N instead"),
    ({"lr_schedule": "iwae", "stages": 3, "epochs": 4}, "does not match --stages 3, which is 13 epochs; give "
                                                         "--stages alone"),
    ({"lr_schedule": "iwae", "stages": 9}, "stages (--stages) must be between 1 and 8"),
    ({"stages": 2}, "shortens --lr-schedule iwae only"),
    ({"adam_beta1": 1.0}, "adam_beta1 (--adam-beta1) must be at least 0 and below 1"),
    ({"adam_eps": 0.0}, "adam_eps (--adam-eps) must be a positive finite number"),
    ({"optimizer": "rmsprop", "adam_beta1": 0.99}, "sets Adam only (the optimizer is rmsprop)"),
    ({"model": "conv", "init": "iwae"}, "init (--init) is defined for --model mlp and mlp2 only"),
    ({"model": "conv", "output_bias": "data_mean"},
     "output_bias (--output-bias) is defined for --model mlp and mlp2 only"),
    ({"validation_split": "end"}, "give --validation N too"),
])
def test_inconsistent_schedules_and_settings_are_one_line_errors_naming_the_fix(fields, message):
    with pytest.raises(VaelabError, match=message.replace("(", r"\(").replace(")", r"\)")):
        TrainConfig(**fields)


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("cell", CELLS)
def test_every_preset_is_the_papers_cell(cell, layers):
    name = f"iwae/{layers}-layer/{cell}"
    assert name in list_presets()
    config = TrainConfig.from_dict(load_preset(name))
    objective, k, published = CELLS[cell]
    assert (config.objective, config.samples) == (objective, k)
    assert paper_cell(name).test_log_likelihood == (published if layers == 1 else TWO_LAYER_CELLS[cell])
    if layers == 1:
        assert (config.model, config.latent_size, config.hidden_layers) == ("mlp", 50, (200, 200))  # 784-200-200-50
    else:  # experiments.py, --layers 2: latent [100, 50], hidden q [[200, 200], [100, 100]], p reversed
        assert (config.model, config.latent_size, config.lower_latent, config.hidden_layers,
                config.upper_hidden_layers) == ("mlp2", 50, 100, (200, 200), (100, 100))
    assert (config.activation, config.variance) == ("tanh", "exp")  # sigma = exp(linear), their Exponential layer
    assert (config.batch_size, config.binarization, config.dataset) == (20, "dynamic", "mnist")
    assert (config.validation, config.validation_split) == (400, "end")  # trained on the first 59,600
    assert (config.optimizer, config.adam_beta1, config.adam_beta2) == ("adam", 0.99, 0.999)  # optimizers.Adam
    assert config.adam_eps == 1e-4 / 20  # their 1e-4 on the batch sum's gradient, on the batch mean's
    assert (config.lr, config.lr_schedule, config.epochs, config.stages) == (1e-3, "iwae", 3280, 8)
    assert (config.init, config.output_bias, config.preset) == ("iwae", "data_mean", name)


def test_an_unknown_preset_is_one_line_listing_the_known_ones(capsys):
    with pytest.raises(VaelabError, match="no preset 'iwae/2-layer/x'; known presets: iwae/1-layer/iwae-k1, "):
        load_preset("iwae/2-layer/x")
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    assert "iwae/1-layer/iwae-k50" in out and "-84.78" in out and "IWAE, k = 50" in out


def test_the_authors_initialisation_and_output_bias():
    pixel_mean = torch.linspace(0, 1, 784, dtype=torch.float64)
    config = TrainConfig(**{k: v for k, v in load_preset("iwae/1-layer/iwae-k5").items()})
    model = build_model(config, (28, 28), pixel_mean)
    other_seed = build_model(TrainConfig(**{**load_preset("iwae/1-layer/iwae-k5"), "seed": 7}), (28, 28), pixel_mean)
    state = model.state_dict()
    for key, value in other_seed.state_dict().items():  # their arrays come from numpy seed 123, not from --seed
        assert torch.equal(state[key], value), key
    for name, (n_in, n_out) in {"encoder.layer1": (784, 200), "encoder.layer2": (200, 200),
                                "decoder.layer1": (50, 200), "decoder.layer2": (200, 200),
                                "decoder.layer3": (200, 784)}.items():
        theirs = np.random.RandomState(123).uniform(-np.sqrt(6 / (n_in + n_out)), np.sqrt(6 / (n_in + n_out)),
                                                    (n_in, n_out)).astype(np.float32)
        assert torch.equal(state[f"{name}.weight"], torch.from_numpy(theirs).T), name
    last = state["encoder.layer3.weight"]  # their mean and sigma layers, each Linear(200, 50) from seed 123
    assert torch.equal(last[:50], authors_weights(200, 50)) and torch.equal(last[50:], authors_weights(200, 50))
    for key, value in state.items():
        if key.endswith("bias") and key != "decoder.layer3.bias":
            assert not value.any(), key
    p = np.clip(pixel_mean.numpy(), 0.001, 0.999)
    assert torch.equal(state["decoder.layer3.bias"], torch.from_numpy((-np.log(1 / p - 1)).astype(np.float32)))
    assert output_bias(torch.tensor([0.0, 1.0], dtype=torch.float64)).tolist() == pytest.approx(
        [math.log(0.001 / 0.999), math.log(0.999 / 0.001)], rel=1e-6)

    glorot = build_model(TrainConfig(latent_size=50, hidden_size=200, init="glorot", seed=1), (28, 28))
    again = build_model(TrainConfig(latent_size=50, hidden_size=200, init="glorot", seed=1), (28, 28))
    assert torch.equal(glorot.encoder.layer1.weight, again.encoder.layer1.weight)
    assert glorot.encoder.layer1.weight.abs().max() <= math.sqrt(6 / 984) and not glorot.encoder.layer1.bias.any()
    untouched = build_model(TrainConfig(), (28, 28))
    before = {k: v.clone() for k, v in untouched.state_dict().items()}
    initialise(untouched, "pytorch")
    assert all(torch.equal(before[k], v) for k, v in untouched.state_dict().items())


def test_a_preset_trains_on_a_slice_records_lr_and_resumes_across_a_stage_boundary(small_mnist, tmp_path, capsys):
    quiet = lambda s: None  # noqa: E731
    # the command line: the preset, then flags; a bare --data-dir reads the slice as a folder
    status = main(["train", "--preset", "iwae/1-layer/iwae-k5", "--stages", "2", "--data-dir", str(small_mnist),
                   "--latent-size", "4", "--hidden-size", "16", "--batch-size", "100", "--no-test-every-epoch",
                   "--quiet", "--out", str(tmp_path / "straight")])
    assert status == 0, capsys.readouterr().err
    assert "Shortened schedule: stages 1\u20132 of 8 (4 of 3,280 passes)" in capsys.readouterr().out
    saved = json.loads((tmp_path / "straight" / "config.json").read_text())
    assert (saved["preset"], saved["stages"], saved["epochs"], saved["lr_schedule"]) == (
        "iwae/1-layer/iwae-k5", 2, 4, "iwae")
    assert (saved["batch_size"], saved["adam_beta1"], saved["init"], saved["samples"]) == (100, 0.99, "iwae", 5)
    page = write_report(tmp_path / "straight", embed_method="pca", n_stats=200, iw_k=0, echo=quiet).read_text()
    assert "Shortened schedule: stages 1\u20132 of 8 (4 of 3,280 passes): these numbers are not those of the full " \
           "schedule." in html.unescape(page)
    straight = load_run(tmp_path / "straight")
    assert [m["lr"] for m in straight.metrics] == [1e-3] + [1e-3 * 7.2 / 10] * 3
    assert straight.data["n_train"] == 600 and straight.data["validation_split"]["last"] is True

    # stage 1 alone (1 epoch), then resumed to 2 stages: across the boundary, bit for bit
    config = TrainConfig.from_dict({**saved, "stages": 1, "epochs": None})
    train(config, tmp_path / "resumed", echo=quiet)
    assert load_checkpoint(tmp_path / "resumed").optimizer_state["param_groups"][0]["lr"] == 1e-3
    run = resume(tmp_path / "resumed", stages=2, echo=quiet)
    assert (run.epoch, run.config.stages, run.config.epochs) == (4, 2, 4)
    assert [m["lr"] for m in run.metrics] == [m["lr"] for m in straight.metrics]
    assert [m["lower_bound"] for m in run.metrics] == [m["lower_bound"] for m in straight.metrics]
    assert run.weights_sha256 == straight.weights_sha256
    with pytest.raises(VaelabError, match="does not end a stage"):
        resume(tmp_path / "resumed", epochs=6, echo=quiet)


def test_the_output_bias_is_the_logit_of_the_training_slices_mean_grey_level(small_mnist, tmp_path):
    from vaelab.data import load_split

    config = TrainConfig(data_dir=str(small_mnist), latent_size=4, hidden_size=8, epochs=1, batch_size=500,
                         binarization="dynamic", output_bias="data_mean", validation=400, validation_split="end",
                         test_every_epoch=False)
    from vaelab.prepare import load_data

    data = load_data(config, torch.device("cpu"), echo=lambda s: None)
    images = load_split("train", small_mnist).images[:600].reshape(600, -1).numpy().astype(np.float64)
    assert torch.equal(data.pixel_mean, torch.from_numpy(images.sum(0) / (255 * 600)))
    model = build_model(config, (28, 28), data.pixel_mean)
    p = np.clip(images.sum(0) / (255 * 600), 0.001, 0.999)
    assert torch.equal(model.decoder.layer3.bias.detach(), torch.from_numpy((-np.log(1 / p - 1)).astype(np.float32)))


def test_published_is_none_for_a_run_of_no_preset_or_of_one_not_shipped():
    config = TrainConfig.from_dict(load_preset("iwae/1-layer/vae-k50"))
    assert published(config) == (-86.35, "Table 1, MNIST, 1 stochastic layer, VAE, k = 50", "K = 5,000, 3,280 passes")
    assert published(TrainConfig()) is None
    assert published(replace(config, preset="iwae/3-layer/vae-k1")) is None


def test_a_preset_run_given_other_flags_or_data_is_not_the_papers_cell(small_mnist):
    config = TrainConfig.from_dict(load_preset("iwae/1-layer/iwae-k50"))
    # how long, where, with which seed, and what the log shows: still the cell
    same = replace(config, stages=3, epochs=None, seed=7, device="cpu", test_every_epoch=False)
    assert changes(same) == [] and other_data(same) is None and unlike_its_preset(same) is None
    assert published(same) == published(config) != None  # noqa: E711
    assert changes(replace(config, hidden_size=200)) == []  # `--hidden-size 200`: two layers of 200, as the preset
    two = TrainConfig.from_dict(load_preset("iwae/2-layer/iwae-k5"))
    assert changes(replace(two, hidden_size=200, upper_hidden_size=100, lower_latent_size=100)) == []
    assert changes(replace(two, upper_hidden_size=50)) == ["upper_hidden_size 50, 50 instead of 100, 100"]
    changed = replace(config, samples=5, hidden_size=(100, 100))  # `--preset ... --samples 5 --hidden-size 100`
    assert changes(changed) == ["hidden_size 100, 100 instead of 200, 200", "samples 5 instead of 50"]
    assert published(changed) is None
    assert unlike_its_preset(changed) == (
        "This run started from preset iwae/1-layer/iwae-k50 but trains otherwise (hidden_size 100, 100 instead of "
        "200, 200; samples 5 instead of 50), so it is not that cell of the paper, and the paper's number is not "
        "shown beside its own")
    elsewhere = replace(config, dataset="folder", data_dir=str(small_mnist))  # --data-dir: other images
    assert changes(elsewhere) == [] and other_data(elsewhere) == "folder" and published(elsewhere) is None
    fashion = replace(config, dataset="fashion-mnist")
    assert other_data(fashion) == "fashion-mnist" and published(fashion) is None
    assert changes(TrainConfig()) == [] and other_data(TrainConfig()) is None  # no preset: nothing to differ from


def test_the_two_layer_vae_and_iwae_k1_are_one_model_and_train_bit_for_bit_alike(small_mnist, tmp_path):
    pair = ("iwae/2-layer/vae-k1", "iwae/2-layer/iwae-k1")
    assert (twin(pair[0]), twin(pair[1])) == (pair[1], pair[0])  # declared once, holds both ways
    assert [name for name in list_presets() if twin(name)] == sorted(pair)
    configs = [TrainConfig.from_dict(load_preset(name)).to_dict() for name in pair]
    assert {k for k in configs[0] if configs[0][k] != configs[1][k]} == {"objective", "preset"}
    assert paper_cell(pair[0]).test_log_likelihood == paper_cell(pair[1]).test_log_likelihood == -85.33

    def trained(name):  # the preset as it is, one pass of the slice: 30 steps of batch 20
        values = {**load_preset(name), "stages": 1, "epochs": None, "data_dir": str(small_mnist)}
        del values["dataset"]
        train(TrainConfig.from_dict(values), tmp_path / name.replace("/", "-"), echo=lambda s: None)
        return load_run(tmp_path / name.replace("/", "-"))

    vae, iwae = trained(pair[0]), trained(pair[1])
    assert vae.weights_sha256 == iwae.weights_sha256
    assert [m["lower_bound"] for m in vae.metrics] == [m["lower_bound"] for m in iwae.metrics]
    # with one stochastic layer the VAE takes the KL exactly and the IWAE k = 1 from the sample: two models
    one_layer = trained("iwae/1-layer/vae-k1"), trained("iwae/1-layer/iwae-k1")
    assert twin("iwae/1-layer/iwae-k1") is None and one_layer[0].weights_sha256 != one_layer[1].weights_sha256
