"""bertlab.profiles: the cpu/gpu profile, and setup(), the first cell of every notebook."""

from __future__ import annotations

import matplotlib
import pytest
import torch

from bertlab.profiles import PROFILES, get_profile, setup
from bertlab.viz.style import PALETTE, STYLE


@pytest.fixture(autouse=True)
def own_settings(monkeypatch):
    """No test sees the caller's BERTLAB_* variables, and setup()'s plot style is undone."""
    monkeypatch.delenv("BERTLAB_PROFILE", raising=False)
    monkeypatch.delenv("BERTLAB_SEED", raising=False)
    with matplotlib.rc_context():
        yield


@pytest.mark.parametrize("cuda, expected", [(True, "gpu"), (False, "cpu")])
def test_default_profile_follows_the_hardware(monkeypatch, cuda, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    assert get_profile().name == expected
    assert get_profile("auto").name == expected


def test_environment_variable_and_argument(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # would pick gpu
    monkeypatch.setenv("BERTLAB_PROFILE", "cpu")
    profile = get_profile()
    assert (profile.name, profile.device) == ("cpu", "cpu")
    assert profile.pick(1, 2) == 1
    assert get_profile("CPU").name == "cpu"
    assert get_profile(" gpu ").name == "gpu"  # the argument wins over the variable


def test_unknown_profile_names_the_choices():
    assert PROFILES == ("cpu", "gpu")
    with pytest.raises(ValueError, match="Unknown profile 'fast'.*cpu.*gpu"):
        get_profile("fast")


def test_gpu_profile_without_cuda_says_how_to_fix(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="needs a CUDA GPU.*BERTLAB_PROFILE=cpu"):
        get_profile("gpu")


def test_profiles_pick_their_scale_device_and_precision(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    gpu, cpu = get_profile("gpu", seed=4), get_profile("cpu")
    assert (gpu.device, gpu.precision, gpu.is_gpu, gpu.seed) == ("cuda", "auto", True, 4)
    assert (cpu.device, cpu.precision, cpu.is_gpu, cpu.seed) == ("cpu", "fp32", False, 0)
    assert gpu.pick(600, 20_000) == 20_000 and cpu.pick(600, 20_000) == 600


def test_setup_prints_one_line(capsys):
    profile = setup(seed=1, profile="cpu")
    assert profile.name == "cpu"
    assert capsys.readouterr().out == "bertlab profile: cpu (device cpu), seed 1\n"


def test_setup_applies_the_course_plot_style():
    matplotlib.rcParams["font.size"] = 17
    matplotlib.rcParams["axes.spines.top"] = True
    setup(profile="cpu")
    assert matplotlib.rcParams["font.size"] == STYLE["font.size"]
    assert matplotlib.rcParams["axes.spines.top"] is False
    assert [c["color"] for c in matplotlib.rcParams["axes.prop_cycle"]] == PALETTE


def test_setup_seeds_every_run_alike():
    setup(seed=3, profile="cpu")
    first = torch.rand(3)
    setup(seed=3, profile="cpu")
    assert torch.equal(torch.rand(3), first)


def test_bertlab_seed_replaces_the_notebook_seed(capsys, monkeypatch):
    monkeypatch.setenv("BERTLAB_SEED", "7")
    profile = setup(seed=0, profile="cpu")
    assert profile.seed == 7
    assert capsys.readouterr().out.endswith("seed 7\n")
    monkeypatch.setenv("BERTLAB_SEED", "seven")
    with pytest.raises(ValueError, match="BERTLAB_SEED='seven' is not an integer"):
        setup(seed=0, profile="cpu")


def test_cpu_profile_trains_in_float32_and_the_recipe_follows_the_profile():
    from bertlab.pretraining import recipe_for

    cpu = get_profile("cpu", seed=3)
    assert (cpu.precision, cpu.seed) == ("fp32", 3)
    recipe = recipe_for(cpu)
    assert (recipe.precision, recipe.seed) == ("fp32", 3)
    assert recipe_for(None).precision == "fp32"
