"""bertlab.checks: bad input gets a ValueError/TypeError that names the problem and the fix,
never a deep IndexError or ATen error. One test per case, through the models that call the
checks, and on the functions themselves."""

from __future__ import annotations

import pytest
import torch

from bertlab import BertConfig
from bertlab.checks import IGNORE_INDEX, check_inputs, check_labels, check_regression_targets
from bertlab.heads import (
    BertForMaskedLM,
    BertForPreTraining,
    BertForSequenceClassification,
    BertForTokenClassification,
)
from bertlab.model import BertModel

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


# -- the model's own argument ----------------------------------------------------------------


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


def test_inputs_on_another_device(model):
    with pytest.raises(ValueError, match=r"input_ids is on meta but the model is on cpu.*\.to\("):
        model(IDS.to("meta"))
    assert model.device == torch.device("cpu")


# -- regression targets (num_labels=1) -------------------------------------------------------


def test_regression_needs_one_target_per_sequence():
    regressor = BertForSequenceClassification(BertConfig.from_dict({**CONFIG.to_dict(),
                                                                    "num_labels": 1}))
    with pytest.raises(ValueError, match=r"labels has shape \(3,\); a regression "
                                         r"\(num_labels=1\) needs one target per sequence, "
                                         r"shape \(2,\)"):
        regressor(IDS, labels=torch.tensor([0.5, 1.0, 2.0]))
    with pytest.raises(TypeError, match="labels must be a torch.Tensor, got list"):
        regressor(IDS, labels=[0.5, 1.0])
    # float targets (not class ids) are what a regression takes
    out = regressor(IDS, labels=torch.tensor([0.5, 1.0]))
    assert out.loss.ndim == 0 and torch.isfinite(out.loss)


# -- the functions themselves ----------------------------------------------------------------


def test_checks_accept_what_the_models_read():
    """Valid input passes silently: each check is a guard, not a transformation."""
    check_inputs(CONFIG, IDS, torch.ones_like(IDS), torch.zeros_like(IDS),
                 torch.arange(4)[None], device=torch.device("cpu"))
    check_labels(torch.tensor([[0, IGNORE_INDEX, 2, 1], [IGNORE_INDEX] * 4]), 3, IDS, "labels",
                 per_token=True)
    check_labels(None, 3, IDS, "labels", per_token=False)  # no labels: nothing to check
    check_regression_targets(torch.tensor([0.1, -2.0]), IDS)
    assert IGNORE_INDEX == -100  # PyTorch's cross_entropy default: the losses skip it


def test_check_labels_names_the_argument():
    with pytest.raises(ValueError, match=r"next_sentence_label holds 5, outside \[0, 2\)"):
        check_labels(torch.tensor([0, 5]), 2, IDS, "next_sentence_label", per_token=False)
    with pytest.raises(ValueError, match=r"tags has shape \(2, 3\) but input_ids has shape "
                                         r"\(2, 4\)"):
        check_labels(torch.zeros(2, 3, dtype=torch.long), 3, IDS, "tags", per_token=True)
    with pytest.raises(ValueError, match="tags is on meta but input_ids on cpu"):
        check_labels(torch.zeros(2, 4, dtype=torch.long, device="meta"), 3, IDS, "tags",
                     per_token=True)


# -- output positions (the states the caller reads; sparse MLM) ------------------------------


def test_output_positions_outside_the_sequence(model):
    with pytest.raises(ValueError, match=r"output_positions holds 4, outside \[0, 4\).*own seq"):
        model(IDS, output_positions=torch.tensor([[0, 4], [0, 1]]))


def test_output_positions_need_one_row_per_sequence(model):
    with pytest.raises(ValueError, match=r"output_positions has shape \(2,\).*shape \(2, n\)"):
        model(IDS, output_positions=torch.tensor([0, 1]))
    with pytest.raises(TypeError, match=r"output_positions must hold integer ids"):
        model(IDS, output_positions=torch.tensor([[0.0], [1.0]]))


def test_output_positions_keep_those_states(model):
    with torch.no_grad():
        full = model(IDS).last_hidden_state
        kept = model(IDS, output_positions=torch.tensor([[0, 2], [1, 0]])).last_hidden_state
    torch.testing.assert_close(kept, torch.stack([full[0, [0, 2]], full[1, [1, 0]]]))
