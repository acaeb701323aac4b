"""bertlab.batching: the order of an epoch, the loader, and what a model is fed."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tiny import classifier, pretraining_model

from bertlab.batching import (
    check_dataset,
    epoch_batches,
    example_lengths,
    forward_keywords,
    loader,
    model_inputs,
    to_device,
    token_count,
    unwrap,
)


def test_epoch_batches_are_a_deterministic_shuffle_and_group_lengths():
    a = epoch_batches(103, 10, epoch=1, seed=0)
    assert a == epoch_batches(103, 10, epoch=1, seed=0) != epoch_batches(103, 10, epoch=2, seed=0)
    assert a != epoch_batches(103, 10, epoch=1, seed=1)
    assert sorted(i for b in a for i in b) == list(range(103))
    assert [len(b) for b in a] == [10] * 10 + [3]
    lengths = np.random.default_rng(0).integers(5, 100, 1000)

    def padding(batches):
        return sum(len(b) * lengths[b].max() - lengths[b].sum() for b in batches)

    grouped = epoch_batches(1000, 16, seed=0, lengths=lengths)
    assert sorted(i for b in grouped for i in b) == list(range(1000))
    assert padding(grouped) < padding(epoch_batches(1000, 16, seed=0)) / 5
    assert grouped == epoch_batches(1000, 16, seed=0, lengths=lengths)  # seeded too


def test_epoch_batches_in_order_and_without_the_short_last_batch():
    assert epoch_batches(7, 3, shuffle=False) == [[0, 1, 2], [3, 4, 5], [6]]
    assert epoch_batches(7, 3, shuffle=False, drop_last=True) == [[0, 1, 2], [3, 4, 5]]
    assert epoch_batches(2, 3, drop_last=True) == []
    # unshuffled and grouped: longest first, so the padding is least
    assert epoch_batches(4, 2, shuffle=False, lengths=[1, 9, 5, 3]) == [[1, 2], [3, 0]]


def test_example_lengths_from_ids_or_text():
    assert example_lengths([{"input_ids": [1, 2, 3]}, {"input_ids": [4]}]) == [3, 1]
    assert example_lengths([{"text": "abcd"}, {"text": "ab"}]) == [4, 2]  # characters
    datasets = pytest.importorskip("datasets")
    table = datasets.Dataset.from_dict({"text": ["a", "abc"], "label": [0, 1]})
    assert example_lengths(table) == [1, 3]
    with pytest.raises(ValueError, match="group_by_length=True needs .*'input_ids' or 'text'"):
        example_lengths([{"label": 1}])


def test_check_dataset_explains_what_cannot_be_batched():
    data = [{"input_ids": [1]}]
    check_dataset(data, "train_data")  # a list of examples is fine
    with pytest.raises(TypeError, match="pass train_data as a dataset .*not a DataLoader"):
        check_dataset(torch.utils.data.DataLoader(data), "train_data")
    with pytest.raises(TypeError, match="eval_data must be a map-style dataset.*got generator"):
        check_dataset((x for x in data), "eval_data")
    with pytest.raises(ValueError, match="train_data is empty"):
        check_dataset([], "train_data")


def test_loader_yields_exactly_the_batches_and_leaves_the_global_rng_alone():
    data = [{"x": i} for i in range(10)]
    batches = [[3, 1], [9], [0, 2, 4]]
    state = torch.get_rng_state()
    got = [b["x"].tolist() for b in loader(data, batches, None, 0, False)]
    assert got == batches
    assert torch.equal(torch.get_rng_state(), state)
    joined = list(loader(data, batches, lambda examples: [e["x"] for e in examples], 0, False))
    assert joined == batches  # the collate_fn it is given


def test_forward_keywords_and_model_inputs():
    accepted, masked_only = forward_keywords(pretraining_model())
    assert {"input_ids", "attention_mask", "labels", "next_sentence_label"} <= accepted
    assert masked_only
    accepted_cls, masked_only_cls = forward_keywords(classifier())
    assert "labels" in accepted_cls and not masked_only_cls

    class Anything(torch.nn.Module):
        def forward(self, **batch):
            return batch

    assert forward_keywords(Anything()) == (None, False)

    batch = {"input_ids": torch.ones(2, 3), "labels": torch.zeros(2, 3), "ids": [7, 8],
             "extra": torch.ones(2)}
    assert set(model_inputs(batch, None, False)) == {"input_ids", "labels", "extra"}  # tensors
    assert set(model_inputs(batch, {"input_ids", "labels"}, False)) == {"input_ids", "labels"}
    assert model_inputs(batch, {"input_ids", "labels"}, True)["masked_only"] is True
    no_labels = model_inputs({"input_ids": torch.ones(2, 3)}, None, True)
    assert "masked_only" not in no_labels  # nothing to gather without labels


def test_to_device_token_count_and_unwrap():
    batch = {"input_ids": torch.ones(2, 3, dtype=torch.long), "note": "kept"}
    moved = to_device(batch, torch.device("meta"))
    assert moved["input_ids"].device.type == "meta" and moved["note"] == "kept"
    with pytest.raises(TypeError, match="a batch must be a dict of tensors.*got list"):
        to_device([torch.ones(2)], torch.device("cpu"))
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    assert token_count({"input_ids": torch.ones(2, 3), "attention_mask": mask}) == 3
    assert token_count({"input_ids": torch.ones(2, 3)}) == 6  # no mask: every position
    assert token_count({"labels": torch.ones(2)}) == 0
    model = torch.nn.Linear(2, 2)
    assert unwrap(model) is model

    class Compiled(torch.nn.Module):  # what torch.compile returns: the module as _orig_mod
        def __init__(self, inner):
            super().__init__()
            self._orig_mod = inner

    assert unwrap(Compiled(model)) is model
