"""Images as the model sees them: the validation split, and dynamic test pixels drawn once and recorded."""

from dataclasses import replace

import pytest
import torch

from vaelab import prepare
from vaelab.config import TrainConfig
from vaelab.data import DataMismatchWarning
from vaelab.errors import VaelabError
from vaelab.training import train


def _config(small_mnist, **kw):
    return TrainConfig(data_dir=str(small_mnist), latent_size=8, device="cpu", **kw)


def test_validation_images_are_chosen_by_seed_and_never_trained_on():
    kept, held = prepare.split_validation(1000, 100, seed=3)
    assert len(held) == 100 and len(kept) == 900
    assert torch.equal(torch.cat([kept, held]).sort().values, torch.arange(1000))  # disjoint, and all of them
    assert torch.equal(kept, kept.sort().values)  # the training images keep their order
    again, _ = prepare.split_validation(1000, 100, seed=3)
    other, _ = prepare.split_validation(1000, 100, seed=4)
    assert torch.equal(again, kept) and not torch.equal(other, kept)
    assert prepare.split_validation(50, 0, seed=3)[1] is None
    with pytest.raises(VaelabError, match="--validation 1000 would hold out all 1000 training images"):
        prepare.split_validation(1000, 1000, seed=3)


def test_a_validation_split_is_scored_every_epoch_and_logged(small_mnist, tmp_path):
    lines = []
    run = train(_config(small_mnist, epochs=2, validation=200), tmp_path / "run", echo=lines.append)
    assert "200 held out for validation" in lines[0] and lines[1].endswith("valid ELBO")
    assert run.data["n_train"] == 800 and run.data["n_valid"] == 200
    assert run.data["validation_split"] == {"seed": 0, "held_out": 200, "from": 1000}
    for row in run.metrics:
        assert row["valid_elbo"] == pytest.approx(row["valid_loglike"] - row["valid_kl"])
        assert f"{row['valid_elbo']:10.2f}" in lines[1 + row["epoch"]]
    assert run.metrics[1]["valid_elbo"] > run.metrics[0]["valid_elbo"]
    assert run.metrics[-1]["step"] == 2 * 7  # 800 images in batches of 128
    data = prepare.load_data(run.config, torch.device("cpu"), echo=lambda s: None)
    train_images = {tuple(x.nonzero().flatten().tolist()) for x in data.train}
    assert not any(tuple(x.nonzero().flatten().tolist()) in train_images for x in data.valid if x.any())


def test_dynamic_test_pixels_are_drawn_once_from_the_runs_seed_and_scoring_draws_the_same(small_mnist, tmp_path):
    from vaelab.data import binarize, load_split
    from vaelab.evaluate import evaluate_run, test_pixels_generator

    run = train(_config(small_mnist, epochs=1, binarization="dynamic", seed=5), tmp_path / "run",
                echo=lambda s: None)
    assert run.data["test_binarization"] == {"seed": 5, "device": "cpu"}
    seen_in_training = prepare.load_data(run.config, torch.device("cpu"), echo=lambda s: None).test
    images = load_split("test", small_mnist).images
    for eval_seed in (0, 5, 9):  # the scoring seed moves the noise, never the pixels
        drawn = binarize(images, "dynamic", test_pixels_generator(run, torch.device("cpu"), eval_seed))
        assert torch.equal(drawn, seen_in_training)
    scored = evaluate_run(tmp_path / "run", iw_k=0, seed=5).elbo  # float32 means; training's are float64
    assert scored == pytest.approx(run.metrics[-1]["test_elbo"], rel=1e-7)
    assert evaluate_run(tmp_path / "run", iw_k=0, seed=9).test_pixels == "seed 5 on cpu"  # what was scored

    # drawn on a GPU in training: a GPU scores the same draw; the CPU draws again, and eval.json says so
    on_gpu = replace(run, data={**run.data, "test_binarization": {"seed": 5, "device": "cuda"}})
    assert prepare.test_pixels_words(on_gpu, torch.device("cuda"), 0) == "seed 5 on cuda"
    assert prepare.test_pixels_words(on_gpu, torch.device("cpu"), 0) == "seed 5 on cpu"
    with pytest.warns(DataMismatchWarning, match="drew its test pixels on cuda, which is not used here"):
        assert torch.equal(binarize(images, "dynamic", test_pixels_generator(on_gpu, torch.device("cpu"), 0)),
                           seen_in_training)  # the CPU's draw from the same seed
    threshold = replace(run, config=replace(run.config, binarization="threshold"))
    assert prepare.test_pixels_words(threshold, torch.device("cpu"), 0) == "threshold"
