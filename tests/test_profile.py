import pytest
import torch

from bertlab.profile import get_profile, seed_everything, setup


def test_default_profile_follows_the_hardware(monkeypatch):
    monkeypatch.delenv("BERTLAB_PROFILE", raising=False)
    expected = "gpu" if torch.cuda.is_available() else "cpu"
    assert get_profile().name == expected


def test_environment_variable_and_argument(monkeypatch):
    monkeypatch.setenv("BERTLAB_PROFILE", "cpu")
    profile = get_profile()
    assert (profile.name, profile.device) == ("cpu", "cpu")
    assert profile.pick(1, 2) == 1
    assert get_profile("CPU").name == "cpu"


def test_unknown_profile_names_the_choices():
    with pytest.raises(ValueError, match="Unknown profile 'fast'.*cpu.*gpu"):
        get_profile("fast")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_gpu_profile_without_cuda_says_how_to_fix():
    with pytest.raises(ValueError, match="needs a CUDA GPU.*BERTLAB_PROFILE=cpu"):
        get_profile("gpu")


def test_seed_everything_repeats():
    seed_everything(3)
    a = torch.rand(4)
    seed_everything(3)
    assert torch.equal(a, torch.rand(4))


def test_setup_prints_one_line(capsys, monkeypatch):
    monkeypatch.delenv("BERTLAB_PROFILE", raising=False)
    monkeypatch.delenv("BERTLAB_SEED", raising=False)
    profile = setup(seed=1, profile="cpu")
    assert profile.name == "cpu"
    assert capsys.readouterr().out == "bertlab profile: cpu (device cpu), seed 1\n"


def test_seed_everything_repeats_python_numpy_and_torch():
    import random

    import numpy as np

    def draw():
        return random.random(), np.random.rand(), torch.rand(1).item()

    seed_everything(5)
    first = draw()
    seed_everything(5)
    assert draw() == first
    seed_everything(6)
    assert all(a != b for a, b in zip(draw(), first, strict=True))


def test_bertlab_seed_replaces_the_notebook_seed(capsys, monkeypatch):
    monkeypatch.setenv("BERTLAB_SEED", "7")
    profile = setup(seed=0, profile="cpu")
    assert profile.seed == 7
    assert capsys.readouterr().out.endswith("seed 7\n")
    monkeypatch.setenv("BERTLAB_SEED", "seven")
    with pytest.raises(ValueError, match="BERTLAB_SEED='seven' is not an integer"):
        setup(seed=0, profile="cpu")


def test_cpu_profile_trains_in_float32_and_the_recipe_follows_the_profile(monkeypatch):
    from bertlab.recipes import recipe_for

    monkeypatch.delenv("BERTLAB_SEED", raising=False)
    cpu = get_profile("cpu", seed=3)
    assert (cpu.precision, cpu.seed) == ("fp32", 3)
    recipe = recipe_for(cpu)
    assert (recipe.precision, recipe.seed) == ("fp32", 3)
    assert recipe_for(None).precision == "fp32"
