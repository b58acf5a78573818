"""The figure commands, run on a real (small) run: the numbers behind each figure are right."""

import re
import shutil
import warnings

import numpy as np
import pytest
import torch
from matplotlib.image import imread

from conftest import write_idx
from vaelab import explore, latent
from vaelab.checkpoint import load_run
from vaelab.cli import main
from vaelab.data import DataMismatchWarning, load_split
from vaelab.errors import VaelabError


@pytest.fixture(scope="module")
def run(trained_run):
    return load_run(trained_run)


@pytest.fixture(scope="module")
def codes(run):
    return explore.encode_subset(run, n=600, seed=0)


def _png(path):
    image = imread(path)
    assert image.ndim == 3 and image.std() > 0.05, f"{path} looks blank"
    return image


def test_encode_subset_is_seeded_binarized_and_batched(run, codes):
    again = explore.encode_subset(run, n=600, seed=0)
    other = explore.encode_subset(run, n=600, seed=1)
    assert torch.equal(codes.labels, again.labels) and torch.equal(codes.mu, again.mu)
    assert not torch.equal(codes.labels, other.labels)
    assert codes.x.shape == (600, 784) and set(codes.x.unique().tolist()) <= {0.0, 1.0}
    mu, var = run.model.encode(codes.x)
    torch.testing.assert_close(codes.mu, mu)
    torch.testing.assert_close(codes.var, var)
    assert codes.stats.classes.tolist() == list(range(10))
    assert int(codes.stats.counts.sum()) == 600
    # Asking for more images than the split holds takes them all (1,000 in the small set).
    assert len(explore.encode_subset(run, n=5000, seed=0).labels) == 1000


@pytest.fixture
def decoded(monkeypatch):
    """Records the codes each figure decodes."""
    seen = {}
    real = latent.decode_images

    def spy(model, z, style="mean", shape=None):
        seen["z"] = z
        seen["shape"] = shape
        return real(model, z, style, shape)

    monkeypatch.setattr(latent, "decode_images", spy)
    return seen


def test_interpolation_endpoints_decode_the_class_means(run, codes, decoded):
    explore.figure_interpolate(run, codes, run.path / "f" / "i.png", start=1, end=4, steps=7)
    z = decoded["z"]
    assert z.shape == (7, 8) and decoded["shape"] == (28, 28)
    torch.testing.assert_close(z[0], codes.stats.means[1], rtol=0, atol=0)
    torch.testing.assert_close(z[-1], codes.stats.means[4], rtol=1e-6, atol=1e-6)


def test_mix_figure_decodes_a_symmetric_matrix_with_the_means_on_its_diagonal(run, codes, decoded):
    explore.figure_mix(run, codes, run.path / "f" / "m.png")
    z = decoded["z"]
    assert z.shape == (10, 10, 8)
    assert torch.equal(z, z.transpose(0, 1))
    assert torch.equal(z.diagonal(dim1=0, dim2=1).T, codes.stats.means)


def test_the_generate_figures_draw_each_class_from_its_own_statistics(run, codes, decoded, tmp_path):
    explore.figure_generate(run, codes, tmp_path / "g.png", label=6, n=400, seed=0)
    z, i = decoded["z"], codes.stats.index(6)
    assert z.shape == (400, 8)
    se = codes.stats.variances[i].sqrt() / np.sqrt(400)
    assert ((z.mean(0) - codes.stats.means[i]).abs() < 5 * se).all()  # around the 6s' mean, not another class's
    explore.figure_generate_all(run, codes, tmp_path / "all.png", n=100, seed=0)
    rows = decoded["z"]
    assert rows.shape == (len(codes.stats.classes), 100, 8)
    for row, c in zip(rows, codes.stats.classes.tolist(), strict=True):  # row by row, the class it is labelled
        k = codes.stats.index(c)
        assert ((row.mean(0) - codes.stats.means[k]).abs() < 5 * codes.stats.variances[k].sqrt() / np.sqrt(100)).all()


def test_generated_digits_come_from_the_stated_distribution(run, codes):
    g = torch.Generator().manual_seed(0)
    z = latent.sample_class(codes.stats, 6, 50_000, g)
    i = codes.stats.index(6)
    se = codes.stats.variances[i].sqrt() / np.sqrt(50_000)
    assert ((z.mean(0) - codes.stats.means[i]).abs() < 5 * se).all()
    torch.testing.assert_close(z.var(0), codes.stats.variances[i], rtol=0.05, atol=0)


@pytest.mark.parametrize(
    "args, size_check",
    [
        (["reconstruct", "-n", "12"], lambda h, w: w > h),
        (["generate", "--digit", "3", "-n", "20"], lambda h, w: w > 2 * h),
        (["generate", "--prior", "-n", "8", "--style", "binary"], lambda h, w: w > 2 * h),
        (["mix"], lambda h, w: 0.8 < w / h < 1.25),
        (["interpolate", "--from", "1", "--to", "4", "--steps", "6", "--method", "slerp"], lambda h, w: w > 3 * h),
        (["embed", "--method", "pca"], lambda h, w: 0.8 < w / h < 1.6),
        (["kl"], lambda h, w: w > 1.5 * h),
        (["curves"], lambda h, w: w > 2 * h),
    ],
)
def test_each_command_writes_a_nonblank_figure(trained_run, tmp_path, capsys, args, size_check):
    out = tmp_path / f"{args[0]}.png"
    assert main([args[0], str(trained_run), *args[1:], "--out", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    h, w = _png(out).shape[:2]
    assert size_check(h, w), (h, w)


def test_default_output_is_inside_the_run(trained_run, capsys):
    assert main(["mix", str(trained_run)]) == 0
    assert (trained_run / "figures" / "mix.png").is_file()


def test_tsne_embedding_separates_the_classes(run, one_openmp_thread):
    codes = explore.encode_subset(run, n=400, seed=0)
    points = latent.embed(codes.mu.numpy(), "tsne", seed=0)
    labels = codes.labels.numpy()
    centres = np.stack([points[labels == k].mean(0) for k in range(10)])
    within = np.mean([np.linalg.norm(points[labels == k] - centres[k], axis=1).mean() for k in range(10)])
    between = np.mean([np.linalg.norm(centres[a] - centres[b]) for a in range(10) for b in range(a + 1, 10)])
    assert between > within  # even a 3-epoch model groups digits


@pytest.mark.parametrize(
    "args, message",
    [
        (["generate", "RUN", "--digit", "11"], "digit 11 is not a class"),
        (["generate", "RUN", "--class", "11"], "digit 11 is not a class"),
        (["interpolate", "RUN", "--from", "12", "--to", "4"], "digit 12 is not a class"),
        (["embed", "RUN", "--method", "umap"], "pip install umap-learn"),
        (["mix", "/no/such/run"], "no run at /no/such/run"),
    ],
)
def test_bad_input_is_one_line(trained_run, capsys, args, message):
    pytest.importorskip("sklearn")
    try:
        import umap  # noqa: F401

        if "umap" in args:
            pytest.skip("umap-learn is installed here")
    except ImportError:
        pass
    args = [str(trained_run) if a == "RUN" else a for a in args]
    if "is not a class" in message and not explore.classes_of(load_run(trained_run)).digits:
        # a folder without class names: its classes are numbered, not digits
        message = re.sub(r"digit (\d+) is not a class", r"no class '\1' in these images", message)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_curves_need_a_completed_epoch(run, tmp_path):
    empty = type(run)(path=run.path, config=run.config, model=run.model, epoch=0, metrics=[], data=run.data)
    with pytest.raises(VaelabError, match="no completed epoch"):
        explore.figure_curves(empty, tmp_path / "c.png")


def test_moved_data_is_named_and_found_again_with_data_dir(small_mnist, tmp_path, capsys):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(small_mnist, data)
    run = tmp_path / "run"
    assert main(["train", "--data-dir", str(data), "--epochs", "1", "--latent-size", "4", "--out", str(run),
                 "--quiet"]) == 0
    data.rename(tmp_path / "moved")
    capsys.readouterr()
    assert main(["mix", str(run)]) == 2
    assert f"data directory {data} does not exist" in capsys.readouterr().err
    assert main(["mix", str(run), "--data-dir", str(tmp_path / "moved")]) == 0
    assert main(["eval", str(run), "--iw-k", "2", "--data-dir", str(tmp_path / "moved")]) == 0


def test_encode_subset_warns_when_the_data_are_not_the_runs(run, small_mnist, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the run's own files: no warning at all
        assert explore.encode_subset(run, n=50, seed=0).mismatches == ()
    other = shutil.copytree(small_mnist, tmp_path / "other")
    images = load_split("train", small_mnist).images.numpy().copy()
    images[0, 0, 0] ^= 1  # one pixel of one image
    (other / "train-images-idx3-ubyte.gz").unlink()
    write_idx(other / "train-images-idx3-ubyte", images)
    with pytest.warns(DataMismatchWarning, match=r"the train files differ .* \(train-images-idx3-ubyte: recorded"):
        codes = explore.encode_subset(run, n=50, seed=0, data_dir=str(other))
    assert len(codes.mismatches) == 1 and codes.mismatches[0].startswith("train-images-idx3-ubyte")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the test files there are still the run's
        explore.encode_subset(run, n=50, seed=0, split="test", data_dir=str(other))


@pytest.mark.parametrize("split", ["end", "random"])
def test_training_statistics_leave_out_the_images_held_out_for_validation(small_mnist, tmp_path, split):
    from vaelab.config import TrainConfig
    from vaelab.data import binarize_threshold
    from vaelab.prepare import split_validation
    from vaelab.training import train

    run = train(TrainConfig(data_dir=str(small_mnist), latent_size=4, hidden_size=16, epochs=1, validation=300,
                            validation_split=split, seed=3, test_every_epoch=False),
                tmp_path / "run", echo=lambda s: None)
    images = load_split("train", small_mnist).images
    kept, held_out = split_validation(1000, 300, 3, last=split == "end")
    assert (held_out.tolist() == list(range(700, 1000))) == (split == "end")
    as_bytes = lambda x: {bytes(row) for row in x.reshape(len(x), -1).to(torch.uint8).numpy()}  # noqa: E731
    everything = explore.encode_subset(run, n=5000, seed=0)  # more than there are: every image trained on
    assert len(everything.labels) == 700
    assert as_bytes(everything.x) == as_bytes(binarize_threshold(images[kept]))
    assert not as_bytes(everything.x) & (as_bytes(binarize_threshold(images[held_out]))
                                         - as_bytes(binarize_threshold(images[kept])))
    some = explore.encode_subset(run, n=50, seed=1)
    assert len(some.labels) == 50 and as_bytes(some.x) <= as_bytes(everything.x)
    assert len(explore.encode_subset(run, n=5000, seed=0, split="test").labels) == 500  # the test split: all
