"""Planner settings of the wrong type or non-finite are refused with one clear ValueError (`check_settings`)."""

import dataclasses
import math

import numpy as np
import pytest

from wmplan import cli
from wmplan.planners import PLANNERS, CEMGDConfig, GDConfig, make_planner


@pytest.mark.parametrize("name, settings, message", [
    # NaN passes every range check (comparisons with NaN are False) and used to plan nothing
    ("gd", {"lr": math.nan}, r"GDConfig.lr must be a finite number .*got nan"),
    ("gd", {"lr": math.inf}, r"GDConfig.lr must be a finite number .*got inf"),
    ("mppi", {"temperature": math.nan}, r"MPPIConfig.temperature must be a finite number .*got nan"),
    ("cem", {"init_std": math.inf}, r"CEMConfig.init_std must be a finite number .*got inf"),
    ("icem", {"momentum": math.nan}, r"CEMConfig.momentum must be a finite number"),
    ("gd", {"betas": [0.5, math.nan]}, r"GDConfig.betas\[1\] must be a finite number"),
    ("cem-gd", {"gd": {"lr": math.nan}}, r"GDConfig.lr must be a finite number"),
])
def test_non_finite_settings_are_refused(name, settings, message):
    with pytest.raises(ValueError, match=f"^{name} planner settings: {message}"):
        make_planner(name, **settings)


@pytest.mark.parametrize("name, settings, message", [
    ("gd", {"iterations": "two"}, r"GDConfig.iterations must be a whole number \(default 50\), got 'two'"),
    ("gd", {"iterations": None}, r"GDConfig.iterations must be a whole number .*got None"),
    ("gd", {"iterations": 1.5}, r"GDConfig.iterations must be a whole number .*got 1.5"),
    ("gd", {"iterations": True}, r"GDConfig.iterations must be a whole number .*got True"),
    ("cem", {"num_samples": 10.5, "num_elites": 2}, r"CEMConfig.num_samples must be a whole number .*got 10.5"),
    ("mppi", {"temperature": "hot"}, r"MPPIConfig.temperature must be a finite number .*got 'hot'"),
    ("cem", {"carry_elites": 1}, r"CEMConfig.carry_elites must be true or false .*got 1"),
    ("gd", {"betas": [0.5]}, r"GDConfig.betas must be a list of 2 numbers"),
    ("gd", {"betas": 0.5}, r"GDConfig.betas must be a list of 2 numbers"),
    ("cem-gd", {"gd": 3}, r"CEMGDConfig.gd must be a GDConfig or a dict of its settings, got 3"),
    ("cem-gd", {"cem": {"samples": 3}}, r"unknown CEMGDConfig.cem setting\(s\) \['samples'\]"),
])
def test_wrong_types_are_refused_before_planning(name, settings, message):
    with pytest.raises(ValueError, match=f"^{name} planner settings: {message}"):
        make_planner(name, **settings)


def test_whole_floats_and_numpy_numbers_are_normalised():
    config = make_planner("gd", iterations=2.0, num_starts=np.int64(3), lr=np.float32(0.5), betas=[0.5, 0.9]).config
    assert config == GDConfig(iterations=2, num_starts=3, lr=0.5, betas=(0.5, 0.9))
    assert type(config.iterations) is int and type(config.num_starts) is int and type(config.lr) is float
    nested = CEMGDConfig(cem={"num_samples": 20.0, "num_elites": 4}, gd={"num_starts": 2})
    assert nested.cem.num_samples == 20 and nested.gd.num_starts == 2


@pytest.mark.parametrize("name", list(PLANNERS))
def test_every_default_config_passes_the_checks(name):
    assert make_planner(name).config is not None


def test_cli_prints_one_line_for_a_nan_setting(tmp_path, capsys):
    argv = ["bench", "--env", "maze", "--planner", "gd", "--episodes", "1", "--out", str(tmp_path / "run"),
            "--planner-settings", '{"lr": NaN, "iterations": 1, "num_starts": 1}']
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err == "wmplan bench: error: gd planner settings: GDConfig.lr must be a finite number (default 0.1), got nan"


def test_nested_settings_change_only_what_they_name_in_the_default_part():
    default = CEMGDConfig()
    cfg = CEMGDConfig(gd={"iterations": 3}, cem={"iterations": 2})
    assert cfg.gd == dataclasses.replace(default.gd, iterations=3)  # num_starts 4, lr 0.05 kept, not GDConfig's own
    assert cfg.cem == dataclasses.replace(default.cem, iterations=2)
