"""The figure commands' files and flags: where a figure goes, what it refuses, and that it never follows a link."""

import shutil

import pytest

from vaelab.cli import main


def _status(args):
    """main's exit status, whether it returns one or argparse exits."""
    try:
        return main(args)
    except SystemExit as exc:
        return exc.code


@pytest.fixture
def run_copy(trained_run, tmp_path):
    """A copy of the trained run that a test may plant links in."""
    return shutil.copytree(trained_run, tmp_path / "run")


def test_unsupported_out_format_is_one_line_before_any_work(tmp_path, capsys):
    # The run does not even exist: the name is refused before the run is looked at.
    assert main(["kl", str(tmp_path / "no-run"), "--out", str(tmp_path / "k.txt")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "k.txt" in err and ".png, .pdf, .svg" in err
    assert not (tmp_path / "k.txt").exists()


@pytest.mark.parametrize("existing", [True, False])
def test_out_folder_gets_the_command_name(trained_run, tmp_path, capsys, existing):
    folder = tmp_path / "figs"
    if existing:
        folder.mkdir()
    out = str(folder) if existing else f"{folder}/"
    assert main(["curves", str(trained_run), "--out", out]) == 0
    assert capsys.readouterr().out == f"wrote {folder / 'curves.png'}\n"
    assert (folder / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_out_without_suffix_gets_png(trained_run, tmp_path, capsys):
    assert main(["curves", str(trained_run), "--out", str(tmp_path / "k")]) == 0
    assert capsys.readouterr().out == f"wrote {tmp_path / 'k.png'}\n"
    assert (tmp_path / "k.png").is_file() and not (tmp_path / "k").exists()


def test_out_pdf(trained_run, tmp_path, capsys):
    assert main(["kl", str(trained_run), "--n-stats", "100", "--out", str(tmp_path / "k.pdf")]) == 0
    assert (tmp_path / "k.pdf").read_bytes()[:4] == b"%PDF"


def test_a_linked_figures_folder_is_refused_and_its_target_untouched(run_copy, tmp_path, capsys):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.rmtree(run_copy / "figures", ignore_errors=True)
    (run_copy / "figures").symlink_to(elsewhere, target_is_directory=True)
    assert main(["curves", str(run_copy)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "figures is a symbolic link" in err
    assert list(elsewhere.iterdir()) == []


def test_a_link_planted_at_a_figure_is_replaced_and_its_target_untouched(run_copy, tmp_path, capsys):
    target = tmp_path / "precious"
    target.write_text("keep me")
    (run_copy / "figures").mkdir(exist_ok=True)
    (run_copy / "figures" / "mix.png").unlink(missing_ok=True)
    (run_copy / "figures" / "mix.png").symlink_to(target)
    assert main(["mix", str(run_copy), "--n-stats", "200"]) == 0
    assert capsys.readouterr().out == f"wrote {run_copy / 'figures' / 'mix.png'}\n"
    assert not (run_copy / "figures" / "mix.png").is_symlink()
    assert (run_copy / "figures" / "mix.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert target.read_text() == "keep me"


@pytest.mark.parametrize(
    "args, message",
    [
        (["reconstruct", "-n", "1001"], "argument -n: must be an integer from 1 to 1,000, got 1001"),
        (["reconstruct", "-n", "0"], "argument -n: must be an integer from 1 to 1,000, got 0"),
        (["generate", "--prior", "-n", "10000000"], "from 1 to 1,000, got 10000000"),
        (["interpolate", "--from", "1", "--to", "4", "--steps", "1"], "--steps: must be an integer from 2 to 200"),
        (["interpolate", "--from", "1", "--to", "4", "--steps", "100000"], "from 2 to 200, got 100000"),
        (["interpolate", "--from", "1", "--to", "10000000000000000000000"], "--to: must be an integer from 0 to 255"),
        (["generate", "--digit", "-1"], "--digit: must be an integer from 0 to 255"),
        (["mix", "--n-stats", "1000001"], "--n-stats: must be an integer from 1 to 1,000,000"),
        (["mix", "--n-stats", "many"], "--n-stats: must be an integer from 1 to 1,000,000, got many"),
        (["kl", "--seed", "-1"], "--seed: must be an integer from 0 to 9223372036854775807"),
        (["kl", "--seed", str(2**63)], "--seed: must be an integer from 0 to 9223372036854775807"),
        (["report", "--n-stats", "0"], "--n-stats: must be an integer from 1 to 1,000,000"),
        (["report", "--seed", str(2**64)], "--seed: must be an integer from 0 to 9223372036854775807"),
    ],
)
def test_sizes_are_bounded_up_front(tmp_path, capsys, args, message):
    # A run that does not exist: the flag is refused before anything is loaded.
    assert _status([args[0], str(tmp_path / "no-run"), *args[1:]]) == 2
    err = capsys.readouterr().err
    assert message in err and "no run at" not in err and "Traceback" not in err


def test_the_largest_seed_works_even_for_tsne(trained_run, tmp_path, one_openmp_thread):
    out = tmp_path / "e.png"
    assert main(["embed", str(trained_run), "--n-stats", "60", "--seed", str(2**63 - 1), "--out", str(out)]) == 0
    assert out.is_file()
