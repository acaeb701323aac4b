"""bertlab.files: the atomic write, weights, model folders and training checkpoints.

Every file bertlab writes goes through ``atomic_write``; weights are read from safetensors only
and training state with ``weights_only=True``. Reading a bad folder gives a ``CheckpointError``
that names the file and the fix; a crash while saving leaves the previous checkpoint intact.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import re
import stat
from pathlib import Path

import pytest
import torch

from bertlab import BertConfig, CheckpointError
from bertlab.files import (
    CONFIG_NAME,
    INDEX_NAME,
    STATE_NAME,
    WEIGHTS_NAME,
    atomic_write,
    checkpoint_folder,
    list_checkpoints,
    load_checkpoint,
    load_training_state,
    load_weights,
    read_index,
    read_json,
    read_weights,
    save_checkpoint,
    write_json,
    write_model,
    write_weights,
)
from bertlab.heads import BertForPreTraining, BertForSequenceClassification
from bertlab.model import BertModel

CONFIG = BertConfig(vocab_size=100, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                    intermediate_size=24, max_position_embeddings=20, num_labels=3)


def tiny(**overrides) -> BertConfig:
    return BertConfig.from_dict({**CONFIG.to_dict(), **overrides})


def classifier(seed: int = 0) -> BertForSequenceClassification:
    torch.manual_seed(seed)
    return BertForSequenceClassification(CONFIG)


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    theirs = b.state_dict()
    return all(torch.equal(v, theirs[k]) for k, v in a.state_dict().items())


# -- the atomic write ------------------------------------------------------------------------


@pytest.mark.parametrize("content", [b"\x00bytes", "text, é", lambda path: path.write_text("x")],
                         ids=["bytes", "text", "writer"])
def test_atomic_write_writes_bytes_text_or_through_a_writer(tmp_path, content):
    path = atomic_write(tmp_path / "sub" / "file", content)
    assert path == tmp_path / "sub" / "file"
    expected = {bytes: content, str: str(content).encode("utf-8")}.get(type(content), b"x")
    assert path.read_bytes() == expected
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert os.listdir(path.parent) == ["file"]  # no temporary left beside it


def test_atomic_write_that_fails_leaves_the_old_file_and_no_temporary(tmp_path):
    path = atomic_write(tmp_path / "notes.txt", "old")

    def half_then_crash(tmp: Path) -> None:
        tmp.write_text("half of the ne")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, half_then_crash)
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["notes.txt"]


def test_write_json_and_read_json(tmp_path):
    value = {"name": "café", "steps": [1, 2], "nested": {"a": None}}
    pretty = write_json(tmp_path / "pretty.json", value)
    assert pretty.read_text(encoding="utf-8") == (
        '{\n  "name": "café",\n  "steps": [\n    1,\n    2\n  ],\n  "nested": {\n    "a": null\n'
        '  }\n}\n')
    compact = write_json(tmp_path / "compact.json", value, indent=None)
    assert compact.read_text(encoding="utf-8") == '{"name":"café","steps":[1,2],"nested":{"a":null}}'
    assert read_json(pretty) == read_json(compact) == value
    # missing or damaged: None, so that a cache rebuilds instead of failing
    assert read_json(tmp_path / "missing.json") is None
    (tmp_path / "damaged.json").write_text('{"name": ')
    assert read_json(tmp_path / "damaged.json") is None


# -- weights and model folders ---------------------------------------------------------------


def test_weights_round_trip_and_tied_weights_are_stored_once(tmp_path):
    torch.manual_seed(0)
    model = BertForPreTraining(CONFIG)
    path = write_weights(model, tmp_path)
    assert path == tmp_path / WEIGHTS_NAME
    tensors = read_weights(path)
    state = model.state_dict()
    # the decoder *is* the word-embedding matrix: stored under the first of its two names
    assert model.tied_weights["cls.predictions.decoder.weight"] == (
        "bert.embeddings.word_embeddings.weight")
    assert set(tensors) == set(state) - set(model.tied_weights)
    for name, tensor in tensors.items():
        assert torch.equal(tensor, state[name]), name


def test_write_model_writes_a_folder_both_libraries_read(tmp_path):
    transformers = pytest.importorskip("transformers")
    model = classifier()
    folder = write_model(model, tmp_path / "model")
    assert sorted(os.listdir(folder)) == [CONFIG_NAME, WEIGHTS_NAME]
    config = json.loads((folder / CONFIG_NAME).read_text())
    assert config["architectures"] == ["BertForSequenceClassification"]
    assert same_weights(BertForSequenceClassification.from_pretrained(folder), model)
    theirs = transformers.BertForSequenceClassification.from_pretrained(folder)
    assert torch.equal(theirs.classifier.weight, model.classifier.weight)


def test_save_pretrained_then_from_pretrained_restores_the_model(tmp_path):
    model = classifier()
    folder = model.save_pretrained(tmp_path / "out")
    assert folder == tmp_path / "out"
    again, info = BertForSequenceClassification.from_pretrained(folder, output_loading_info=True)
    assert same_weights(again, model) and not again.training
    assert info == {"missing_keys": [], "unexpected_keys": []}
    # a bare encoder from a classifier's folder: the head is left out, and said so
    encoder, info = BertModel.from_pretrained(folder, output_loading_info=True)
    assert info["missing_keys"] == []
    assert sorted(info["unexpected_keys"]) == ["classifier.bias", "classifier.weight"]
    assert torch.equal(encoder.embeddings.word_embeddings.weight,
                       model.bert.embeddings.word_embeddings.weight)


# -- model folders: from_pretrained's errors --------------------------------------------------


@pytest.fixture
def saved(tmp_path) -> Path:
    torch.manual_seed(0)
    return BertForPreTraining(CONFIG).save_pretrained(tmp_path / "checkpoint")


def test_missing_folder(tmp_path):
    missing = tmp_path / "nowhere"
    where = re.escape(str(missing))
    with pytest.raises(CheckpointError, match=f"No checkpoint folder at {where}.*save_pretrained"):
        BertModel.from_pretrained(missing)
    assert issubclass(CheckpointError, ValueError)


def test_missing_config(saved):
    (saved / "config.json").unlink()
    with pytest.raises(CheckpointError, match="has no config.json.*BertConfig.save"):
        BertModel.from_pretrained(saved)


def test_missing_weights(saved):
    (saved / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="No model.safetensors in .*save_pretrained"):
        BertModel.from_pretrained(saved)


def test_corrupt_safetensors(saved):
    (saved / "model.safetensors").write_bytes(b"\x00garbage, not a safetensors file")
    with pytest.raises(CheckpointError, match=r"Could not read .*model.safetensors.*damaged"):
        BertModel.from_pretrained(saved)


def test_truncated_safetensors(saved):
    path = saved / "model.safetensors"
    path.write_bytes(path.read_bytes()[:-1000])
    with pytest.raises(CheckpointError, match=r"Could not read .*model.safetensors"):
        BertModel.from_pretrained(saved)


def test_corrupt_config(saved):
    (saved / "config.json").write_text('{"hidden_size": 16,')
    with pytest.raises(ValueError, match="config.json is not valid JSON"):
        BertModel.from_pretrained(saved)


class _Trap:
    """Unpickling this creates a file: proof that a pickle was (not) opened."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_pickle_checkpoint_is_refused_not_opened(saved, tmp_path):
    (saved / "model.safetensors").unlink()
    marker = tmp_path / "unpickled"
    (saved / "pytorch_model.bin").write_bytes(pickle.dumps(_Trap(marker)))
    refused = r"only pytorch_model.bin, a pickle.*weights_only=True"
    with pytest.raises(CheckpointError, match=refused):
        BertModel.from_pretrained(saved)
    assert not marker.exists()


def test_config_does_not_fit_weights(saved):
    config = json.loads((saved / "config.json").read_text())
    (saved / "config.json").write_text(json.dumps({**config, "num_hidden_layers": 2}))
    with pytest.raises(CheckpointError, match=r"missing from the checkpoint: .*encoder.layer.1\."):
        BertForPreTraining.from_pretrained(saved)


def test_extra_layers_in_checkpoint_are_named(tmp_path):
    BertModel(BertConfig.from_dict({**CONFIG.to_dict(), "num_hidden_layers": 2})).save_pretrained(
        tmp_path
    )
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "num_hidden_layers": 1}))
    with pytest.raises(CheckpointError, match=r"in the checkpoint but not in the model: "
                                              r"encoder.layer.1\."):
        BertModel.from_pretrained(tmp_path)


def test_shape_mismatch_is_named(tmp_path):
    BertForSequenceClassification(CONFIG).save_pretrained(tmp_path)
    with pytest.raises(CheckpointError, match=r"classifier.weight: checkpoint \(3, 16\) vs "
                                              r"model \(5, 16\).*num_labels"):
        BertForSequenceClassification.from_pretrained(tmp_path, num_labels=5)


def test_unknown_override_is_named(saved):
    with pytest.raises(ValueError, match="Unknown BertConfig field.*num_label"):
        BertModel.from_pretrained(saved, num_label=2)


def test_untied_decoder_is_refused(saved):
    from safetensors.torch import load_file, save_file

    state = load_file(saved / "model.safetensors")
    state["cls.predictions.decoder.weight"] = torch.randn(CONFIG.vocab_size, CONFIG.hidden_size)
    save_file(state, saved / "model.safetensors")
    with pytest.raises(CheckpointError, match="untied decoder"):
        BertForPreTraining.from_pretrained(saved)


def test_hub_name_offline(monkeypatch):
    """A name that is not a local folder is looked up on the hub; offline, that fails clearly."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # never the network
    with pytest.raises(CheckpointError, match=r"No checkpoint folder at .*no-such-model, and "
                                              r"'bertlab-tests/no-such-model' could not be "
                                              r"fetched from the Hugging Face hub"):
        BertModel.from_pretrained("bertlab-tests/no-such-model")


# -- training checkpoints --------------------------------------------------------------------


def test_checkpoints_are_step_folders_and_the_index_names_last_and_best(tmp_path):
    model = classifier()
    first = save_checkpoint(tmp_path, model, step=100, best=True, metric=0.5, keep=2)
    assert first == tmp_path / "step-000100"  # six digits
    assert sorted(os.listdir(first)) == [CONFIG_NAME, WEIGHTS_NAME]  # no state: none written
    save_checkpoint(tmp_path, model, step=200, keep=2)
    save_checkpoint(tmp_path, model, step=1_234_567, keep=2)  # more steps: more digits
    index = read_index(tmp_path)
    assert index["last"] == "step-1234567" and index["best"] == "step-000100"
    assert index["best_metric"] == 0.5
    # keep=2 keeps the two most recent, and the best always
    assert index["saved"] == ["step-000100", "step-000200", "step-1234567"]
    save_checkpoint(tmp_path, model, step=1_234_568, keep=2)
    table = list_checkpoints(tmp_path)
    assert table["step"].tolist() == [100, 1_234_567, 1_234_568]
    assert table["last"].tolist() == [False, False, True]
    assert table["best"].tolist() == [True, False, False]
    assert table["path"].tolist() == [tmp_path / n for n in ("step-000100", "step-1234567",
                                                             "step-1234568")]
    assert sorted(os.listdir(tmp_path)) == [INDEX_NAME, "step-000100", "step-1234567",
                                            "step-1234568"]
    assert checkpoint_folder(tmp_path, "best") == tmp_path / "step-000100"
    assert checkpoint_folder(tmp_path / "step-1234567") == tmp_path / "step-1234567"


def test_load_checkpoint_restores_weights_and_says_where_from(tmp_path):
    model = classifier()
    state = {"progress": {"epoch": 2, "best_metric": 0.25}, "x": torch.arange(3)}
    save_checkpoint(tmp_path, model, step=7, training_state=state, best=True, metric=0.25)
    save_checkpoint(tmp_path, classifier(seed=1), step=8, keep=None)
    fresh = classifier(seed=2)
    info = load_checkpoint(tmp_path, fresh, which="best")
    assert info == {"path": tmp_path / "step-000007", "step": 7, "epoch": 2, "best_metric": 0.25}
    assert same_weights(fresh, model)
    assert load_checkpoint(tmp_path, fresh) == {"path": tmp_path / "step-000008", "step": 8}
    assert same_weights(fresh, classifier(seed=1))
    loaded = load_training_state(tmp_path / "step-000007")
    assert torch.equal(loaded["x"], torch.arange(3)) and loaded["progress"]["epoch"] == 2
    assert load_training_state(tmp_path / "step-000008") is None


def test_training_state_is_loaded_without_unpickling_objects(tmp_path):
    folder = save_checkpoint(tmp_path, classifier(), step=1, training_state={"x": torch.ones(1)})
    marker = tmp_path / "unpickled"
    buffer = io.BytesIO()
    torch.save({"trap": _Trap(marker)}, buffer)
    (folder / STATE_NAME).write_bytes(buffer.getvalue())
    with pytest.raises(pickle.UnpicklingError):
        load_training_state(folder)
    assert not marker.exists()


@pytest.mark.parametrize("failing", ["model.safetensors", "step-000002", "checkpoints.json"],
                         ids=["writing the weights", "renaming the folder", "updating the index"])
def test_crash_while_saving_leaves_the_previous_checkpoint(failing, tmp_path, monkeypatch):
    model = classifier()
    (tmp_path / "step-200").mkdir()  # someone else's files in the folder stay untouched,
    (tmp_path / "step-000300").mkdir()  # even a snapshot named like a checkpoint
    (tmp_path / "notes.txt").write_text("mine")
    save_checkpoint(tmp_path, model, step=1, training_state={"x": torch.ones(2)})
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)

    real_replace = os.replace

    def crashing_replace(src, dst):
        if Path(dst).name == failing:
            raise OSError("simulated crash: power lost before the rename")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", crashing_replace)
    with pytest.raises(OSError, match="simulated crash"):
        save_checkpoint(tmp_path, model, step=2, training_state={"x": torch.zeros(2)})
    monkeypatch.undo()

    fresh = BertForSequenceClassification(CONFIG)
    info = load_checkpoint(tmp_path, fresh)
    assert info["step"] == 1
    for name, tensor in fresh.state_dict().items():
        assert torch.equal(tensor, saved[name]), name
    assert torch.equal(load_training_state(info["path"])["x"], torch.ones(2))
    assert not any(p.name.endswith(".tmp") for p in tmp_path.rglob("*")), "temporary files left"
    # the next save succeeds and tidies up what the crash left
    save_checkpoint(tmp_path, model, step=2)
    assert list_checkpoints(tmp_path)["step"].tolist() == [2]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "checkpoints.json", "notes.txt", "step-000002", "step-000300", "step-200"]
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_a_model_holding_nan_is_not_saved_over_a_good_checkpoint(tmp_path):
    model = classifier()
    save_checkpoint(tmp_path, model, step=1)
    with torch.no_grad():
        model.classifier.weight[0, 0] = float("nan")
    with pytest.raises(FloatingPointError, match="step 2.*classifier.weight.*NaN or inf"):
        save_checkpoint(tmp_path, model, step=2)
    assert read_index(tmp_path)["saved"] == ["step-000001"]
    assert sorted(os.listdir(tmp_path)) == [INDEX_NAME, "step-000001"]


def test_checkpoint_of_another_model_size_is_refused_naming_both_shapes(tmp_path):
    save_checkpoint(tmp_path, BertForPreTraining(tiny(hidden_size=24, intermediate_size=48)),
                    step=1)
    with pytest.raises(ValueError, match=r"\(100, 24\) in the checkpoint but \(100, 16\)"):
        load_checkpoint(tmp_path, BertForPreTraining(CONFIG))


def test_checkpoint_of_another_model_class_is_refused(tmp_path):
    save_checkpoint(tmp_path, BertForPreTraining(CONFIG), step=1)
    with pytest.raises(ValueError, match="missing .*classifier.*saved from a different model"):
        load_weights(BertForSequenceClassification(CONFIG), tmp_path / "step-000001")


def test_what_is_not_a_run_is_explained(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a training run folder"):
        list_checkpoints(tmp_path)
    with pytest.raises(FileNotFoundError, match="expected a run folder with checkpoints.json"):
        load_checkpoint(tmp_path / "nowhere", classifier())
    assert read_index(tmp_path) is None
    save_checkpoint(tmp_path, classifier(), step=3)
    with pytest.raises(FileNotFoundError, match="no 'best' checkpoint yet"):
        checkpoint_folder(tmp_path, "best")
    with pytest.raises(ValueError, match="which must be 'last' or 'best'"):
        checkpoint_folder(tmp_path, "first")
    (tmp_path / INDEX_NAME).write_text("{")
    with pytest.raises(ValueError, match="checkpoints.json is not valid JSON"):
        read_index(tmp_path)
    (tmp_path / "step-000003" / WEIGHTS_NAME).unlink()
    with pytest.raises(FileNotFoundError, match="model.safetensors is missing"):
        load_weights(classifier(), tmp_path / "step-000003")
