"""vaelab.reproduce: a paper's table from its presets, trained, scored and compared in one command."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace

import pytest
import torch

from conftest import stop_after_steps
from vaelab import presets, reproduce
from vaelab.checkpoint import CHECKPOINT, METRICS, load_checkpoint
from vaelab.cli import main
from vaelab.device import describe
from vaelab.errors import TrainingInterrupted
from vaelab.files import exclusive_lock
from vaelab.papertable import CLAIMS, duration, folder_of
from vaelab.reproduce import train_cell
from vaelab.rundir import LOCK
from vaelab.training import resume


def test_one_command_trains_scores_and_tabulates_and_again_goes_on_where_it_was(small_mnist, tmp_path, capsys):
    out = tmp_path / "table"
    args = ["reproduce", "iwae", "1-layer/vae-k1", "2-layer/vae-k1", "--stages", "1", "--iw-k", "5",
            "--data-dir", str(small_mnist), "--out", str(out), "--machine", "test machine", "--quiet"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    table = (out / "table.md").read_text()
    assert printed.endswith("\n\n" + table) and table.startswith("| preset | paper | vaelab | gap |")
    assert printed.startswith(f"[1/2] iwae/1-layer/vae-k1: stage 1 (1 of 3,280 passes) -> {out / '1-layer-vae-k1'}")
    assert re.search(r"^.*2-layer-vae-k1: scored, log p\(x\) with IW K=5: -\d+\.\d\d ± \d\.\d\d nats$", printed, re.M)
    for name in ("1-layer-vae-k1", "2-layer-vae-k1"):
        scores = json.loads((out / name / "eval.json").read_text())
        assert scores["iw_k"] == 5 and scores["epoch"] == 1 and scores["judge"] is None
        assert f"| `iwae/{name[:7]}/vae-k1` |" in printed and f"{scores['log_likelihood']:.2f} ± " in printed
    assert printed.count("shortened: stage 1 (1 of 3,280 passes)") == 2
    assert printed.count(": scoring log p(x) with IW K=5\n") == 2  # said before it scores (no minutes for a small K)
    assert re.search(r"^- 2-layer/vae-k1 -\d+\.\d\d vs 1-layer/vae-k1 -\d+\.\d\d \(1 pass\): ", printed, re.M)
    assert "Not trained and scored yet" not in printed  # only the cells asked for

    stamps = {p: p.stat().st_mtime_ns for name in ("1-layer-vae-k1", "2-layer-vae-k1")
              for p in (out / name / CHECKPOINT, out / name / "eval.json")}
    assert main(args) == 0  # all done: nothing is trained or scored again
    again = capsys.readouterr().out
    assert again.count("has already trained 1 epoch; nothing to do (to train it further: --stages 2 or more)") == 2
    assert again.count(": already scored,") == 2
    assert ": scoring log p(x)" not in again
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps

    assert main([*args[:4], "--stages", "2", *args[6:]]) == 0  # a longer schedule extends the runs
    printed = capsys.readouterr().out
    assert printed.count("shortened: stages 1–2 (4 of 3,280 passes)") == 2
    assert json.loads((out / "1-layer-vae-k1" / "eval.json").read_text())["epoch"] == 4

    table = (out / "table.md").read_text()
    assert main(["reproduce", "iwae", "--table-only", "--out", str(out), "--machine", "m"]) == 0  # every cell
    printed = capsys.readouterr().out
    assert printed.count(" | m |") == 3  # the two-layer IWAE k = 1's row is the VAE k = 1's run
    assert printed.count("| `iwae/") == 3 and printed.startswith("| preset |")
    assert "| `iwae/2-layer/iwae-k1` (2-layer/vae-k1's run) | -85.33 |" in printed
    assert printed.rstrip().endswith("Not trained and scored yet:\n" + "\n".join(
        f"- iwae/{cell}: not started" for cell in ("1-layer/vae-k5", "1-layer/vae-k50", "1-layer/iwae-k1",
                                                   "1-layer/iwae-k5", "1-layer/iwae-k50", "2-layer/vae-k5",
                                                   "2-layer/vae-k50", "2-layer/iwae-k5", "2-layer/iwae-k50")))
    assert (out / "table.md").read_text() == table  # --table-only writes nothing
    assert main(["reproduce", "iwae", "--table-only", "--out", str(out)]) == 0  # the machine the runs recorded
    printed = capsys.readouterr().out
    assert printed.count(f" | {describe(torch.device('cpu'))} |") == 3
    assert re.search(r"^- 2-layer/vae-k1 .*\(4 passes\): [+-]\d+\.\d\d ± \d+\.\d\d nats \(paired\), ", printed,
                     re.M), printed
    from vaelab.compare import compare_runs

    c = compare_runs(out / "1-layer-vae-k1", out / "2-layer-vae-k1")  # the same difference, from `vaelab compare`
    assert f"(4 passes): {c.difference:+.2f} ± {c.paired_stderr:.2f} nats (paired), " in printed
    assert "Unpaired" not in printed

    scores = json.loads((out / "1-layer-vae-k1" / "eval.json").read_text())
    del scores["log_likelihood_per_image"]  # as vaelab wrote it before it kept them
    (out / "1-layer-vae-k1" / "eval.json").write_text(json.dumps(scores))
    assert main(["reproduce", "iwae", "--table-only", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert re.search(r"^- 2-layer/vae-k1 .*\(4 passes\): .* nats \(unpaired\), ", printed, re.M)
    assert f"(4 passes): {c.difference:+.2f} ± {c.unpaired_stderr:.2f} nats (unpaired), " in printed
    assert (f"\n\nUnpaired errors overstate the uncertainty: a cell scored before eval.json kept each test image's "
            f"estimate pairs its comparisons once scored again (`vaelab eval {out}/CELL --iw-k 5000`, the same "
            "estimate with its images).\n\nNot trained and scored yet:") in printed


def test_the_two_layer_k1_pair_is_trained_once_and_its_run_fills_both_rows(small_mnist, tmp_path, capsys):
    out, vae, iwae = tmp_path / "table", "iwae/2-layer/vae-k1", "iwae/2-layer/iwae-k1"
    args = ["--iw-k", "5", "--data-dir", str(small_mnist), "--out", str(out), "--quiet"]
    out.mkdir()
    assert main(["reproduce", "iwae", "2-layer/vae-k1", "2-layer/iwae-k1", "--table-only", "--out", str(out)]) == 0
    assert capsys.readouterr().out.rstrip().endswith(
        f"- {vae}: not started\n- {iwae}: not started (the run of {vae} will stand for it: one model)")
    train_cell(vae, out, 1, data_dir=str(small_mnist), echo=lambda s: None)  # trained, not scored yet
    assert main(["reproduce", "iwae", "2-layer/iwae-k1", "--table-only", "--out", str(out)]) == 0
    assert capsys.readouterr().out.rstrip().endswith(
        f"- {iwae}: the run of {vae} (one model with it): trained (1 pass), not scored yet")

    assert main(["reproduce", "iwae", "2-layer/vae-k1", "2-layer/iwae-k1", "--stages", "1", *args]) == 0
    printed = capsys.readouterr().out
    assert f"\n[2/2] {iwae}: one model with {vae}, whose run stands for both\n" in printed
    assert not (out / "2-layer-iwae-k1").exists() and printed.count(": scored, log p(x)") == 1
    ll = json.loads((out / "2-layer-vae-k1" / "eval.json").read_text())["log_likelihood"]
    rows = [line for line in printed.splitlines() if line.startswith("| `iwae/")]
    assert [row.split(" | ")[:3] for row in rows] == [
        ["| `iwae/2-layer/vae-k1`", "-85.33", rows[0].split(" | ")[2]],
        ["| `iwae/2-layer/iwae-k1` (2-layer/vae-k1's run)", "-85.33", rows[0].split(" | ")[2]]]
    assert rows[0].split(" | ")[2].startswith(f"{ll:.2f} ± ") and rows[0].split(" | ")[3:] == rows[1].split(" | ")[3:]
    assert ("2-layer/iwae-k1 shows 2-layer/vae-k1's run: one model under two names (with one sample the IWAE bound "
            "is the ELBO, and both estimate its KL from the sample), so vaelab trains it once; the paper, too, "
            "reports one number for both (-85.33).") in printed
    assert "- 2-layer/iwae-k1 and 2-layer/vae-k1: one run (one model, trained once), as in the paper" in printed

    assert main(["reproduce", "iwae", "2-layer/iwae-k1", "--stages", "2", *args]) == 0  # alone: extends that run
    printed = capsys.readouterr().out
    assert printed.startswith(f"[1/1] {iwae}: stages 1–2 (4 of 3,280 passes) -> {out / '2-layer-vae-k1'} "
                              f"(the run of {vae}, one model with it)\n")
    assert json.loads((out / "2-layer-vae-k1" / "eval.json").read_text())["epoch"] == 4
    assert not (out / "2-layer-iwae-k1").exists() and "(2-layer/vae-k1's run)" in printed

    # another command training the VAE k = 1 (it holds the cell's claim): this one leaves the pair to it
    busy = tmp_path / "busy"
    (busy / CLAIMS).mkdir(parents=True)
    with exclusive_lock(busy / CLAIMS / "2-layer-vae-k1") as held:
        assert held
        assert main(["reproduce", "iwae", "2-layer/iwae-k1", "--stages", "1", *args[:-3], "--out", str(busy),
                     "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith(f"[1/1] {iwae}: stage 1 (1 of 3,280 passes) -> {busy / '2-layer-vae-k1'} (the run "
                              f"of {vae}, one model with it)\nskipped: another `vaelab reproduce` is training")
    assert not (busy / "2-layer-iwae-k1").exists() and not (busy / "2-layer-vae-k1").exists()

    # an IWAE k = 1 trained alone first keeps its own run, and stands for the VAE k = 1 when both are asked for
    other = tmp_path / "other"
    assert main(["reproduce", "iwae", "2-layer/iwae-k1", "--stages", "1", *args[:-3], "--out", str(other),
                 "--quiet"]) == 0
    assert (other / "2-layer-iwae-k1" / "eval.json").is_file()
    capsys.readouterr()
    assert main(["reproduce", "iwae", "2-layer/vae-k1", "2-layer/iwae-k1", "--stages", "1", *args[:-3],
                 "--out", str(other), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith(f"[1/2] {vae}: one model with {iwae}, whose run stands for both\n")
    assert not (other / "2-layer-vae-k1").exists()
    assert "| `iwae/2-layer/vae-k1` (2-layer/iwae-k1's run) | -85.33 |" in printed


def test_table_only_trains_nothing_and_a_wrong_out_is_named(small_mnist, tmp_path, capsys):
    assert main(["reproduce", "iwae", "--table-only", "--out", str(tmp_path / "none")]) == 2
    assert "none does not exist; give --out the folder of the cells' runs" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["reproduce", "iwae", "--table-only", "--out", str(tmp_path / "empty")]) == 0
    assert "No scored cells in" in capsys.readouterr().out and list((tmp_path / "empty").iterdir()) == []
    (tmp_path / "file").write_text("mine")
    assert main(["reproduce", "iwae", "1-layer/vae-k1", "--stages", "1", "--out", str(tmp_path / "file")]) == 2
    assert "file is not a folder; give --out a folder" in capsys.readouterr().err
    assert (tmp_path / "file").read_text() == "mine"
    assert main(["reproduce", "iwae", "--stages", "9", "--out", str(tmp_path / "x")]) == 2
    assert "--stages must be between 1 and 8, got 9" in capsys.readouterr().err and not (tmp_path / "x").exists()


def test_a_cell_another_process_holds_is_skipped_so_several_commands_can_share_the_cells(small_mnist, tmp_path,
                                                                                        capsys):
    out = tmp_path / "table"
    (out / "1-layer-vae-k1").mkdir(parents=True)
    with exclusive_lock(out / "1-layer-vae-k1" / LOCK) as held:  # as `vaelab train` holds a run it writes
        assert held
        assert main(["reproduce", "iwae", "1-layer/vae-k1", "1-layer/iwae-k5", "--stages", "1", "--iw-k", "5",
                     "--data-dir", str(small_mnist), "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert re.search(r"^skipped: .*1-layer-vae-k1 is being written by another vaelab process", printed, re.M)
    assert printed.count("| `iwae/") == 1 and "| `iwae/1-layer/iwae-k5` |" in printed
    assert printed.rstrip().endswith("Not trained and scored yet:\n- iwae/1-layer/vae-k1: started, no checkpoint yet")
    assert os.listdir(out / "1-layer-vae-k1") == [LOCK]  # nothing of the other process's was touched


def test_jobs_share_the_cells_so_that_each_is_trained_and_scored_once(small_mnist, tmp_path, capsys, monkeypatch):
    out = tmp_path / "table"
    cells = ["1-layer/vae-k1", "1-layer/iwae-k5", "2-layer/vae-k1"]
    train_cell = reproduce.train_cell

    def after_the_helper_has_a_cell(preset, *args, **kwargs):  # else a slow helper start may find all done
        deadline = time.monotonic() + 600  # a busy 2-core machine: minutes
        while not any((out / folder_of(f"iwae/{c}")).exists() for c in cells[1:]):
            assert time.monotonic() < deadline, (out / "helper-2.log").read_text()
            time.sleep(0.1)
        return train_cell(preset, *args, **kwargs)

    monkeypatch.setattr(reproduce, "train_cell", after_the_helper_has_a_cell)
    assert main(["reproduce", "iwae", *cells, "--stages", "1", "--iw-k", "5", "--jobs", "2",
                 "--data-dir", str(small_mnist), "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    log = (out / "helper-2.log").read_text()
    assert re.search(rf"^helper 2: pid \d+, its output in {re.escape(str(out / 'helper-2.log'))}$", printed, re.M)
    assert log.startswith("--- ") and "reproduce iwae iwae/1-layer/vae-k1 " in log.splitlines()[0]
    scored = re.findall(r"^.*/(\S+): scored, log p\(x\)", printed + log, re.M)
    assert sorted(scored) == sorted(folder_of(f"iwae/{c}") for c in cells)  # each once, by one of the two
    assert 0 < len(re.findall(": scored, ", log)) < 3  # the helper took some, not all
    assert re.search(r"^\[1/3\] iwae/1-layer/vae-k1: .*\nskipped: another `vaelab reproduce` is training or "
                     r"scoring it$", log, re.M)  # the cell the command held
    assert printed.count("| `iwae/") == 3 and (out / "table.md").read_text() in printed
    for cell in cells:
        assert json.loads((out / folder_of(f"iwae/{cell}") / "eval.json").read_text())["epoch"] == 1


def test_a_cell_another_reproduce_has_claimed_is_left_to_it(small_mnist, tmp_path, capsys):
    out = tmp_path / "table"
    (out / CLAIMS).mkdir(parents=True)
    with exclusive_lock(out / CLAIMS / "1-layer-vae-k1") as held:
        assert held
        assert main(["reproduce", "iwae", "1-layer/vae-k1", "1-layer/iwae-k5", "--stages", "1", "--iw-k", "5",
                     "--data-dir", str(small_mnist), "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "skipped: another `vaelab reproduce` is training or scoring it" in printed
    assert not (out / "1-layer-vae-k1").exists() and (out / "1-layer-iwae-k5" / "eval.json").is_file()


def test_bad_jobs_are_refused(tmp_path, capsys):
    assert main(["reproduce", "iwae", "--jobs", "0", "--out", str(tmp_path / "x")]) == 2
    assert "--jobs must be between 1 and 64, got 0" in capsys.readouterr().err and not (tmp_path / "x").exists()


def test_a_signal_stops_the_command_and_its_helpers_and_the_cells_go_on_after(small_mnist, tmp_path,
                                                                                monkeypatch):
    out = tmp_path / "table"
    args = [sys.executable, "-m", "vaelab", "reproduce", "iwae", "1-layer/vae-k1", "2-layer/vae-k1",
            "--stages", "6", "--iw-k", "5", "--jobs", "2", "--data-dir", str(small_mnist), "--out", str(out)]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    metrics = [out / cell / "metrics.jsonl" for cell in ("1-layer-vae-k1", "2-layer-vae-k1")]
    try:
        deadline = time.monotonic() + 600  # a busy 2-core machine: minutes
        while not all(m.exists() and len(m.read_text().splitlines()) >= 2 for m in metrics):  # both cells training
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.2)
        helper = int(re.search(r"^helper 2: pid (\d+)", proc.stdout.readline(), re.M).group(1))
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 143 and "stopped by SIGTERM" in err and "Traceback" not in err
    with pytest.raises(ProcessLookupError):
        os.kill(helper, 0)  # the helper ended before the command did
    log = (out / "helper-2.log").read_text()
    assert "stopped by SIGTERM" in log and "checkpoint is saved" in log
    steps = stop_after_steps(monkeypatch, 5)
    for m in metrics:  # each saved a consistent checkpoint mid-schedule, and goes on from it (5 steps here)
        done, saved = len(m.read_text().splitlines()), load_checkpoint(m.parent)
        assert 2 <= done < 364 and saved.position.epoch == done  # 364 passes: long enough for a slow helper start
        steps["n"] = 0
        with pytest.raises(TrainingInterrupted, match="interrupted"):
            resume(m.parent, stages=6, echo=lambda line: None)
        assert load_checkpoint(m.parent).position.step == saved.position.step + 5


def test_a_first_start_that_fails_leaves_no_out_behind(tmp_path, capsys):
    out = tmp_path / "table"
    assert main(["reproduce", "iwae", "1-layer/vae-k1", "--stages", "1", "--data-dir", str(tmp_path / "none"),
                 "--out", str(out), "--quiet"]) == 2
    assert "none does not exist; point --data-dir at the folder holding the four IDX files" in \
        capsys.readouterr().err
    assert not out.exists()
    out.mkdir()  # a folder the user made is theirs: the data are checked before anything goes into it
    (out / "notes.txt").write_text("mine")
    assert main(["reproduce", "iwae", "1-layer/vae-k1", "--stages", "1", "--data-dir", str(tmp_path / "none"),
                 "--out", str(out), "--quiet"]) == 2
    assert (out / "notes.txt").read_text() == "mine" and os.listdir(out) == ["notes.txt"]


def test_a_helper_log_planted_as_a_link_stops_the_command_before_it_trains(small_mnist, tmp_path, capsys):
    out = tmp_path / "table"
    out.mkdir()
    (tmp_path / "elsewhere").write_text("mine")
    (out / "helper-2.log").symlink_to(tmp_path / "elsewhere")
    assert main(["reproduce", "iwae", "1-layer/vae-k1", "2-layer/vae-k1", "--stages", "1", "--jobs", "2",
                 "--data-dir", str(small_mnist), "--out", str(out), "--quiet"]) == 2
    assert "helper-2.log is not a plain file" in capsys.readouterr().err
    assert (tmp_path / "elsewhere").read_text() == "mine" and sorted(os.listdir(out)) == [CLAIMS, "helper-2.log"]


def test_eval_of_a_preset_run_prints_the_papers_number_beside_its_own(small_mnist, trained_run, tmp_path, capsys,
                                                                     monkeypatch):
    path = train_cell("iwae/2-layer/iwae-k5", tmp_path / "table", 1, data_dir=str(small_mnist),
                      echo=lambda line: None)
    assert main(["eval", str(path), "--iw-k", "3", "--no-judge", "--data-dir", str(small_mnist), "--quiet"]) == 0
    lines = capsys.readouterr().out.splitlines()  # --quiet: no line first to say what is scored
    assert lines[2].startswith("  log p(x), IW K=3 ")
    assert lines[3] == ("  the paper              not shown: this run started from preset iwae/2-layer/iwae-k5 but "
                        "on folder data, not the paper's mnist, so it is not that cell of the paper, and the paper's "
                        "number is not shown beside its own")  # a slice of MNIST, through --data-dir
    monkeypatch.setattr(presets, "other_data", lambda config: None)  # as if on the bundled MNIST
    assert main(["eval", str(path), "--iw-k", "3", "--no-judge", "--data-dir", str(small_mnist), "--quiet"]) == 0
    assert capsys.readouterr().out.splitlines()[3] == (
        "  the paper                 -83.89          (Table 1, MNIST, 2 stochastic layers, IWAE, k = 5: K = 5,000, "
        "3,280 passes; this run: 1)")
    assert main(["eval", str(trained_run), "--iw-k", "3", "--no-judge"]) == 0  # the article's run: no paper line
    assert "the paper" not in capsys.readouterr().out


def test_a_run_given_as_out_is_refused_before_anything_is_written_into_it(trained_run, tmp_path, capsys):
    run = shutil.copytree(trained_run, tmp_path / "run")
    before = sorted(os.listdir(run))
    for table_only in ([], ["--table-only"]):
        assert main(["reproduce", "iwae", "1-layer/vae-k1", "--stages", "1", "--out", str(run), *table_only]) == 2
        assert capsys.readouterr().err == (f"vaelab: error: {run} is a vaelab run, not a folder of runs; give --out "
                                           "a new folder, or one that `vaelab reproduce` made, for the cells' runs\n")
        assert sorted(os.listdir(run)) == before


def test_a_cells_folder_holding_another_run_is_refused_and_left_as_it_was_and_the_next_cell_goes_on(
        trained_run, small_mnist, tmp_path, capsys):
    out = tmp_path / "table"
    held = shutil.copytree(trained_run, out / "1-layer-vae-k1")  # the article's run, no preset
    before = {f: (held / f).read_bytes() for f in os.listdir(held) if (held / f).is_file()}
    assert main(["reproduce", "iwae", "1-layer/vae-k1", "1-layer/iwae-k5", "--stages", "1", "--iw-k", "5",
                 "--data-dir", str(small_mnist), "--out", str(out), "--quiet"]) == 2
    printed, err = capsys.readouterr()
    refusal = (f"{held} holds a run of no preset, not iwae/1-layer/vae-k1; move it away (`mv {held} {held}.old`) "
               "and run this again")
    assert f"[1/2] iwae/1-layer/vae-k1 failed: {refusal}; the other cells go on" in printed
    assert err.strip().endswith(f"iwae/1-layer/vae-k1: {refusal}; the table of the cells done is in "
                                f"{out / 'table.md'}")
    assert {f: (held / f).read_bytes() for f in os.listdir(held) if (held / f).is_file()} == before
    assert json.loads((out / "1-layer-iwae-k5" / "eval.json").read_text())["iw_k"] == 5  # trained and scored
    assert "| `iwae/1-layer/iwae-k5` | -85.54 |" in (out / "table.md").read_text()


def test_no_gpu_or_no_data_stops_the_command_before_any_cell(tmp_path, capsys):
    out = tmp_path / "table"
    assert main(["reproduce", "iwae", "--stages", "1", "--data-dir", str(tmp_path / "nowhere"), "--out",
                 str(out), "--quiet"]) == 2
    assert "nowhere" in capsys.readouterr().err and not out.exists()
    if not torch.cuda.is_available():
        assert main(["reproduce", "iwae", "--stages", "1", "--device", "cuda", "--out", str(out), "--quiet"]) == 2
        assert "cuda" in capsys.readouterr().err.lower() and not out.exists()


def test_a_claims_folder_or_claim_planted_as_a_link_is_refused_before_anything_trains(small_mnist, tmp_path, capsys):
    (tmp_path / "elsewhere").mkdir()
    for planted_at in (".claims", ".claims/1-layer-vae-k1"):
        out = tmp_path / planted_at.replace("/", "-")
        (out / planted_at).parent.mkdir(parents=True, exist_ok=True)
        (out / planted_at).symlink_to(tmp_path / "elsewhere")
        assert main(["reproduce", "iwae", "1-layer/vae-k1", "--stages", "1", "--data-dir", str(small_mnist),
                     "--out", str(out), "--quiet"]) == 2
        assert f"{planted_at} is a symbolic link; vaelab writes only into its own files" in capsys.readouterr().err
        assert not (out / "1-layer-vae-k1").exists() and os.listdir(tmp_path / "elsewhere") == []


def test_the_table_says_how_far_each_cell_not_yet_in_it_has_got(small_mnist, tmp_path, capsys, monkeypatch):
    out = tmp_path / "table"
    train_cell("iwae/1-layer/vae-k1", out, 1, data_dir=str(small_mnist), echo=lambda line: None)
    stop_after_steps(monkeypatch, 60)  # one pass of the 1,000 images is 50 steps: stopped in the second
    with pytest.raises(TrainingInterrupted):
        train_cell("iwae/1-layer/iwae-k5", out, 2, data_dir=str(small_mnist), echo=lambda line: None)
    (out / "2-layer-vae-k1").mkdir()  # another process has just started it
    assert main(["reproduce", "iwae", "1-layer/vae-k1", "1-layer/iwae-k5", "2-layer/vae-k1", "2-layer/iwae-k5",
                 "--table-only", "--out", str(out)]) == 0
    (row,) = map(json.loads, (out / "1-layer-iwae-k5" / METRICS).read_text().splitlines())  # its one pass
    seconds = row["seconds"]
    assert capsys.readouterr().out == (
        f"No scored cells in {out} yet.\n\nNot trained and scored yet:\n"
        "- iwae/1-layer/vae-k1: trained (1 pass), not scored yet\n"
        f"- iwae/1-layer/iwae-k5: 1 of 4 passes trained (test ELBO {row['test_elbo']:.2f} after the last), about "
        f"{duration(3 * seconds)} to go at the median pace "
        "of the last pass\n"
        "- iwae/2-layer/vae-k1: started, no checkpoint yet\n"
        "- iwae/2-layer/iwae-k5: not started\n")


def test_compile_reaches_new_runs_and_helpers_and_a_run_started_eagerly_goes_on_so(small_mnist, tmp_path, capsys,
                                                                                   monkeypatch):
    out, configs, helper_argvs = tmp_path / "table", [], []
    real_train = reproduce.train

    def recording_train(config, path, **kwargs):  # the compiled step itself: tests/test_steps.py
        configs.append(config)
        return real_train(replace(config, compile=False), path, **kwargs)

    monkeypatch.setattr(reproduce, "train", recording_train)
    monkeypatch.setattr(reproduce.workers, "start", lambda argvs, logs: helper_argvs.extend(argvs) or [])
    assert main(["reproduce", "iwae", "1-layer/vae-k1", "1-layer/iwae-k5", "--stages", "1", "--iw-k", "5",
                 "--jobs", "2", "--compile", "--data-dir", str(small_mnist), "--out", str(out), "--quiet"]) == 0
    assert [c.compile for c in configs] == [True, True]
    assert len(helper_argvs) == 1 and helper_argvs[0][-1] == "--compile"
    lines = []
    train_cell("iwae/1-layer/vae-k1", out, 2, data_dir=str(small_mnist), compile=True, echo=lines.append)
    assert f"{out / '1-layer-vae-k1'} was started without --compile and goes on so" in lines[0]
    held = load_checkpoint(out / "1-layer-vae-k1")
    assert held.position.epoch == 4 and not held.config.compile and len(configs) == 2  # stages 1-2: 1 + 3 passes
