"""vaelab.argtypes: impossible numbers refused while the command line is parsed, with the range allowed."""

import argparse

import pytest

from vaelab.argtypes import class_label, int_between, seed_type


def test_an_integer_in_range_is_taken_and_anything_else_names_the_range():
    parse = int_between(1, 1000)
    assert parse("1") == 1 and parse("1000") == 1000
    for text in ("0", "1001", "2.5", "ten", ""):
        with pytest.raises(argparse.ArgumentTypeError, match=f"must be an integer from 1 to 1,000, got {text}$"):
            parse(text)


def test_a_seed_is_0_to_2_to_the_63_minus_1():
    assert seed_type("0") == 0 and seed_type(str(2**63 - 1)) == 2**63 - 1
    with pytest.raises(argparse.ArgumentTypeError, match=f"from 0 to {2**63 - 1}, got {2**63}$"):
        seed_type(str(2**63))
    with pytest.raises(argparse.ArgumentTypeError, match="got -1$"):
        seed_type("-1")


def test_a_class_is_a_number_to_255_or_a_name_left_for_the_run_to_resolve():
    assert class_label(" 7 ") == 7 and class_label("+3") == 3
    assert class_label(" Trouser ") == "Trouser" and class_label("T-shirt/top") == "T-shirt/top"
    with pytest.raises(argparse.ArgumentTypeError, match="from 0 to 255, got 256"):
        class_label("256")
    with pytest.raises(argparse.ArgumentTypeError, match="got -1"):
        class_label("-1")
