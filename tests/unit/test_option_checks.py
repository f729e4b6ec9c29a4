"""Numbers: NaN, infinities and out-of-range values are refused with the option's name and range, in the shared
check and in the sampler's own validation (what the nodes and the file pipeline call)."""

from __future__ import annotations

import math

import pytest

from latentsync.option_checks import MAX_SEED, OptionError, check_number, number_problem
from latentsync.pipeline.sampler import SamplerOptions


@pytest.mark.parametrize("name,value", [("guidance", math.nan), ("guidance", math.inf), ("guidance", 0.5),
                                        ("steps", 0), ("steps", 2.5), ("steps", 10**9), ("seed", -1),
                                        ("seed", MAX_SEED + 1), ("seed", 1e23), ("fps", math.nan), ("fps", 0),
                                        ("crf", 52), ("batch_chunks", 0), ("steps", True), ("steps", "20")])
def test_refused_with_the_name_and_the_range(name, value):
    with pytest.raises(OptionError, match=rf"^{name} must be a .* from "):
        check_number(value, name)
    assert number_problem(value, name).startswith(name)


@pytest.mark.parametrize("name,value,expected", [("steps", 20, 20), ("steps", 3.0, 3), ("seed", MAX_SEED, MAX_SEED),
                                                 ("guidance", 1, 1.0), ("fps", 29.97, 29.97)])
def test_accepted_values_come_back_typed(name, value, expected):
    got = check_number(value, name)
    assert got == expected and type(got) is type(expected)


def test_linked_node_inputs_pass_until_run_time():
    assert number_problem(None, "guidance") is None


@pytest.mark.parametrize("field,value", [("guidance_scale", math.nan), ("guidance_scale", math.inf),
                                         ("steps", 0), ("seed", -5)])
def test_sampler_options_refuse_what_silently_misbehaved(field, value):
    with pytest.raises(ValueError, match="must be"):
        SamplerOptions(**{field: value}).validate()
