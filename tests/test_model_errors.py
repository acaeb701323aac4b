"""Bad input gets a ValueError/TypeError that names the problem and the fix, never a deep
IndexError or ATen error. One test per case."""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path

import pytest
import torch

from bertlab import BertConfig, CheckpointError
from bertlab.model import (
    BertForMaskedLM,
    BertForPreTraining,
    BertForSequenceClassification,
    BertForTokenClassification,
    BertModel,
)

CONFIG = BertConfig(vocab_size=100, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                    intermediate_size=24, max_position_embeddings=20, num_labels=3)


@pytest.fixture(scope="module")
def model() -> BertModel:
    torch.manual_seed(0)
    return BertModel(CONFIG).eval()


IDS = torch.tensor([[2, 5, 7, 9], [3, 4, 0, 0]])


# -- input ids -------------------------------------------------------------------------------


def test_id_above_vocabulary(model):
    with pytest.raises(ValueError, match=r"input_ids holds 100, outside \[0, 100\).*vocab_size"):
        model(torch.tensor([[1, 2, 100]]))


def test_negative_id(model):
    with pytest.raises(ValueError, match=r"input_ids holds -1, outside \[0, 100\)"):
        model(torch.tensor([[1, -1, 3]]))


def test_sequence_longer_than_positions(model):
    with pytest.raises(ValueError, match=r"21 tokens long.*20 \(max_position_embeddings\).*trunc"):
        model(torch.ones(1, 21, dtype=torch.long))


def test_float_ids(model):
    with pytest.raises(TypeError, match=r"input_ids must hold integer ids.*float32.*\.long\(\)"):
        model(IDS.float())


def test_ids_not_a_tensor(model):
    with pytest.raises(TypeError, match=r"input_ids must be a torch.Tensor.*got list"):
        model([[1, 2, 3]])


def test_one_dimensional_ids(model):
    with pytest.raises(ValueError, match=r"must be 2-D \(batch, sequence\).*\(4,\).*unsqueeze"):
        model(IDS[0])


def test_three_dimensional_ids(model):
    with pytest.raises(ValueError, match=r"must be 2-D \(batch, sequence\), got shape \(1, 2, 4\)"):
        model(IDS[None])


def test_empty_ids(model):
    with pytest.raises(ValueError, match="input_ids is empty"):
        model(torch.zeros(1, 0, dtype=torch.long))


# -- attention mask, segments, positions -----------------------------------------------------


def test_attention_mask_shape(model):
    with pytest.raises(ValueError, match=r"attention_mask has shape \(2, 3\) but input_ids has "
                                         r"shape \(2, 4\)"):
        model(IDS, attention_mask=torch.ones(2, 3, dtype=torch.long))


def test_token_type_ids_shape(model):
    with pytest.raises(ValueError, match=r"token_type_ids has shape \(4,\) but input_ids"):
        model(IDS, token_type_ids=torch.zeros(4, dtype=torch.long))


def test_token_type_ids_out_of_range(model):
    with pytest.raises(ValueError, match=r"token_type_ids holds 2, outside \[0, 2\) "
                                         r"\(type_vocab_size=2\).*sentence B"):
        model(IDS, token_type_ids=torch.full_like(IDS, 2))


def test_float_token_type_ids(model):
    with pytest.raises(TypeError, match="token_type_ids must hold integer ids"):
        model(IDS, token_type_ids=torch.zeros(2, 4))


def test_position_ids_out_of_range(model):
    with pytest.raises(ValueError, match=r"position_ids holds 20, outside \[0, 20\)"):
        model(IDS, position_ids=torch.tensor([[17, 18, 19, 20]]))


def test_position_ids_shape(model):
    with pytest.raises(ValueError, match=r"position_ids has shape \(1, 3\)"):
        model(IDS, position_ids=torch.tensor([[0, 1, 2]]))


# -- configuration ---------------------------------------------------------------------------


def test_hidden_size_not_divisible_by_heads():
    with pytest.raises(ValueError, match="hidden_size=100 is not divisible by "
                                         "num_attention_heads=12.*Choose a head count"):
        BertConfig(hidden_size=100, num_attention_heads=12)


def test_model_needs_a_bertlab_config():
    with pytest.raises(TypeError, match=r"bertlab.BertConfig.*BertConfig.from_hf"):
        BertModel(CONFIG.to_hf())


# -- labels ----------------------------------------------------------------------------------


def test_class_label_outside_num_labels():
    classifier = BertForSequenceClassification(CONFIG)
    with pytest.raises(ValueError, match=r"labels holds 3, outside \[0, 3\).*3 classes"):
        classifier(IDS, labels=torch.tensor([0, 3]))


def test_class_labels_shape():
    classifier = BertForSequenceClassification(CONFIG)
    with pytest.raises(ValueError, match=r"one label per sequence, shape \(2,\)"):
        classifier(IDS, labels=torch.tensor([0, 1, 2]))


def test_float_class_labels():
    classifier = BertForSequenceClassification(CONFIG)
    with pytest.raises(TypeError, match="labels must hold integer ids"):
        classifier(IDS, labels=torch.tensor([0.0, 1.0]))


def test_token_label_outside_num_labels():
    tagger = BertForTokenClassification(CONFIG)
    with pytest.raises(ValueError, match=r"labels holds 7, outside \[0, 3\)"):
        tagger(IDS, labels=torch.tensor([[0, 1, 7, 2], [1, 1, -100, -100]]))


def test_mlm_label_outside_vocabulary():
    mlm = BertForMaskedLM(CONFIG)
    with pytest.raises(ValueError, match=r"labels holds 100, outside \[0, 100\).*not -100"):
        mlm(IDS, labels=torch.tensor([[-100, 100, -100, -100], [-100] * 4]))


def test_mlm_labels_negative_but_not_ignore_index():
    mlm = BertForMaskedLM(CONFIG)
    with pytest.raises(ValueError, match=r"labels holds -1, outside \[0, 100\)"):
        mlm(IDS, labels=torch.tensor([[-1, 5, -100, -100], [-100] * 4]))


def test_next_sentence_label_outside_two_classes():
    pretraining = BertForPreTraining(CONFIG)
    with pytest.raises(ValueError, match=r"next_sentence_label holds 2, outside \[0, 2\)"):
        pretraining(IDS, next_sentence_label=torch.tensor([0, 2]))


def test_masked_only_needs_labels():
    pretraining = BertForPreTraining(CONFIG)
    with pytest.raises(ValueError, match="masked_only=True .* needs labels"):
        pretraining(IDS, masked_only=True)


# -- checkpoints -----------------------------------------------------------------------------


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


def test_inputs_on_another_device(model):
    with pytest.raises(ValueError, match=r"input_ids is on meta but the model is on cpu.*\.to\("):
        model(IDS.to("meta"))
    assert model.device == torch.device("cpu")


def test_hub_name_offline(monkeypatch):
    """A name that is not a local folder is looked up on the hub; offline, that fails clearly."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # never the network
    with pytest.raises(CheckpointError, match=r"No checkpoint folder at .*no-such-model, and "
                                              r"'bertlab-tests/no-such-model' could not be "
                                              r"fetched from the Hugging Face hub"):
        BertModel.from_pretrained("bertlab-tests/no-such-model")
