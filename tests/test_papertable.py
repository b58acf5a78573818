"""vaelab.papertable: a paper's table read from the runs, its rows beside the paper's numbers and its comparisons."""

import math
from dataclasses import replace

import numpy as np
import pytest

from vaelab.errors import VaelabError
from vaelab.papertable import Cell, cells_of, comparisons, duration, folder_of, markdown_table, pace, schedule


def _cell(preset, ll, se=0.25, passes=13, stages=3, paper=-86.76, machine="a laptop"):
    return Cell(preset=preset, paper=paper, log_likelihood=ll, stderr=se, iw_k=5000, passes=passes, stages=stages,
                seconds=600.0, active_units=20, machine=machine)


def test_the_iwae_cells_come_in_the_papers_order_and_by_either_name():
    assert cells_of("iwae") == [f"iwae/{layers}/{cell}" for layers in ("1-layer", "2-layer")
                                for cell in ("vae-k1", "vae-k5", "vae-k50", "iwae-k1", "iwae-k5", "iwae-k50")]
    assert cells_of("iwae", ["2-layer/iwae-k5", "iwae/1-layer/vae-k1", "2-layer/iwae-k5"]) == [
        "iwae/2-layer/iwae-k5", "iwae/1-layer/vae-k1"]
    assert folder_of("iwae/2-layer/iwae-k50") == "2-layer-iwae-k50"


def test_unknown_papers_and_cells_are_named_with_what_there_is():
    with pytest.raises(VaelabError, match="no presets for 'vae'; papers with presets: iwae"):
        cells_of("vae")
    with pytest.raises(VaelabError, match=r"iwae/3-layer/vae-k1: no such cell; iwae's cells are 1-layer/vae-k1, "):
        cells_of("iwae", ["3-layer/vae-k1"])


def test_the_comparisons_are_differences_with_their_standard_error_and_a_verdict():
    cells = [_cell("iwae/1-layer/vae-k1", -95.40), _cell("iwae/1-layer/vae-k5", -94.30),
             _cell("iwae/1-layer/iwae-k5", -94.25), _cell("iwae/1-layer/iwae-k50", -96.40, se=0.3),  # 1.0 > 2 x 0.39
             _cell("iwae/2-layer/vae-k1", -95.67, se=0.26), _cell("iwae/2-layer/iwae-k5", -94.07, se=0.26),
             _cell("iwae/2-layer/iwae-k50", -90.0, passes=40, stages=4)]  # another schedule: not compared
    assert comparisons(cells) == [
        "- 1-layer/iwae-k5 -94.25 vs 1-layer/vae-k1 -95.40 (13 passes): +1.15 ± 0.35 nats (unpaired), holds",
        "- 1-layer/iwae-k50 -96.40 vs 1-layer/vae-k1 -95.40 (13 passes): -1.00 ± 0.39 nats (unpaired), fails",
        "- 2-layer/iwae-k5 -94.07 vs 2-layer/vae-k1 -95.67 (13 passes): +1.60 ± 0.37 nats (unpaired), holds",
        "- 1-layer/iwae-k5 -94.25 vs 1-layer/vae-k5 -94.30 (13 passes): +0.05 ± 0.35 nats (unpaired), "
        "ahead within noise",
        "- 1-layer/iwae-k50 -96.40 vs 1-layer/iwae-k5 -94.25 (13 passes): -2.15 ± 0.39 nats (unpaired), fails",
        "- 2-layer/vae-k1 -95.67 vs 1-layer/vae-k1 -95.40 (13 passes): -0.27 ± 0.36 nats (unpaired), "
        "behind within noise",
        "- 2-layer/iwae-k5 -94.07 vs 1-layer/iwae-k5 -94.25 (13 passes): +0.18 ± 0.36 nats (unpaired), "
        "ahead within noise",
    ]


def test_the_iwae_k1_is_compared_with_the_vae_k1_as_the_same_model():
    cells = [_cell("iwae/1-layer/vae-k1", -91.82, se=0.24), _cell("iwae/1-layer/iwae-k1", -92.16, se=0.24),
             _cell("iwae/2-layer/vae-k1", -91.36, se=0.25), _cell("iwae/2-layer/iwae-k1", -90.36, se=0.25)]
    assert comparisons(cells) == [
        "- 2-layer/vae-k1 -91.36 vs 1-layer/vae-k1 -91.82 (13 passes): +0.46 ± 0.35 nats (unpaired), "
        "ahead within noise",
        "- 2-layer/iwae-k1 -90.36 vs 1-layer/iwae-k1 -92.16 (13 passes): +1.80 ± 0.35 nats (unpaired), holds",
        "- 1-layer/iwae-k1 -92.16 vs 1-layer/vae-k1 -91.82 (13 passes): -0.34 ± 0.34 nats (unpaired), "
        "the same within noise",
        "- 2-layer/iwae-k1 -90.36 vs 2-layer/vae-k1 -91.36 (13 passes): +1.00 ± 0.35 nats (unpaired), differ",
    ]


def test_cells_scored_on_the_same_images_are_compared_image_by_image():
    rng = np.random.default_rng(0)
    difficulty = rng.normal(-92.0, 25.0, 10_000)  # what each image costs any model: most of the spread
    vae = difficulty + rng.normal(0.0, 1.0, 10_000)
    iwae = difficulty + 0.3 + rng.normal(0.0, 1.0, 10_000)  # 0.3 nats ahead on average
    files = (("t10k-images-idx3-ubyte", "a" * 64), ("t10k-labels-idx1-ubyte", "b" * 64))

    def scored(preset, values, test_files=files):
        se = float(np.std(values, ddof=1) / np.sqrt(len(values)))
        return replace(_cell(preset, float(np.mean(values)), se=se), per_image=tuple(values.tolist()),
                       test_files=test_files)

    a, b = scored("iwae/1-layer/iwae-k5", iwae), scored("iwae/1-layer/vae-k1", vae)
    diff, paired = a.log_likelihood - b.log_likelihood, float(np.std(iwae - vae, ddof=1) / 100)
    assert 0.013 < paired < 0.015 and math.hypot(a.stderr, b.stderr) > 0.35  # 25 times smaller, from the same data
    assert comparisons([a, b]) == [f"- 1-layer/iwae-k5 {a.log_likelihood:.2f} vs 1-layer/vae-k1 {b.log_likelihood:.2f}"
                                   f" (13 passes): {diff:+.2f} ± {paired:.2f} nats (paired), holds"]
    unpaired = f"{diff:+.2f} ± {math.hypot(a.stderr, b.stderr):.2f} nats (unpaired), ahead within noise"
    for other in (replace(b, per_image=None), replace(b, test_files=None),
                  replace(b, per_image=b.per_image[:-1])):  # not the same images' estimates: not paired
        assert comparisons([a, other]) == [f"- 1-layer/iwae-k5 {a.log_likelihood:.2f} vs 1-layer/vae-k1 "
                                           f"{b.log_likelihood:.2f} (13 passes): {unpaired}"]
    other_files = scored("iwae/1-layer/vae-k1", vae, test_files=(("t10k-images-idx3-ubyte", "c" * 64),))
    assert comparisons([a, other_files]) == [  # other images (another dataset): no verdict at all
        "- 1-layer/iwae-k5 vs 1-layer/vae-k1: scored on different test files, not compared"]
    assert comparisons([replace(a, iw_k=500), b]) == [  # a looser bound on one side: said beside the verdict
        f"- 1-layer/iwae-k5 {a.log_likelihood:.2f} vs 1-layer/vae-k1 {b.log_likelihood:.2f} (13 passes): "
        f"{diff:+.2f} ± {paired:.2f} nats (paired), holds (scored with K = 500 and 5,000: part of the difference "
        "is the estimates')"]


def test_a_shortened_schedule_is_said_in_every_row():
    assert schedule(_cell("iwae/1-layer/vae-k1", -95.0)) == "shortened: stages 1–3 (13 of 3,280 passes)"
    assert schedule(_cell("iwae/1-layer/vae-k1", -95.0, passes=1, stages=1)) == \
        "shortened: stage 1 (1 of 3,280 passes)"
    assert schedule(_cell("iwae/1-layer/vae-k1", -92.0, passes=400, stages=8)) == \
        "the full schedule (3,280 passes), 400 passes so far"
    assert schedule(_cell("iwae/1-layer/vae-k1", -87.0, passes=3280, stages=8)) == "the full schedule (3,280 passes)"
    row = markdown_table([_cell("iwae/1-layer/vae-k1", -95.404)]).splitlines()[2]
    assert row == ("| `iwae/1-layer/vae-k1` | -86.76 | -95.40 ± 0.25 (K=5,000) | -8.64 | shortened: stages 1–3 "
                   "(13 of 3,280 passes) | 10.0 min | 20 | a laptop |")


def test_each_row_names_the_machines_its_run_recorded_unless_one_is_given():
    cells = [_cell("iwae/1-layer/vae-k1", -95.4, machine="GPU | 1"), _cell("iwae/1-layer/iwae-k5", -94.0)]
    rows = markdown_table(cells).splitlines()[2:]
    assert [row.rsplit("|", 2)[1] for row in rows] == [" GPU / 1 ", " a laptop "]  # a "|" would split the row
    assert [row.rsplit("|", 2)[1] for row in markdown_table(cells, "the lab's box").splitlines()[2:]] == \
        [" the lab's box "] * 2


def test_pace_is_the_median_seconds_of_the_last_twenty_passes_that_recorded_them():
    rows = [{"epoch": e, "seconds": 100.0} for e in range(1, 11)]  # ten slow passes, then twenty at 10-29 s
    rows += [{"epoch": 10 + e, "seconds": 10.0 + e} for e in range(20)]
    assert pace(rows) == (19.5, 20)  # the median of 10..29; the slow ones are older than the last 20
    rows[-1]["seconds"] = 4000.0  # a pass the machine's sleep or a paused process stretched moves it little
    assert pace(rows) == (19.5, 20)
    assert pace([{"epoch": 1}, {"epoch": 2, "seconds": 12}]) == (12, 1)  # rows without seconds are left out
    assert pace([{"epoch": 1}]) is None and pace([]) is None


@pytest.mark.parametrize(("seconds", "said"), [(0.4, "0 s"), (40, "40 s"), (59.4, "59 s"), (59.6, "1.0 min"),
                                               (936, "15.6 min"), (3599, "60.0 min"), (3600, "1.00 h"),
                                               (11844, "3.29 h")])
def test_duration_says_seconds_minutes_or_hours(seconds, said):
    assert duration(seconds) == said
