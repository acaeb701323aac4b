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
    profile = setup(seed=1, profile="cpu")
    assert profile.name == "cpu"
    assert capsys.readouterr().out == "bertlab profile: cpu (device cpu), seed 1\n"
