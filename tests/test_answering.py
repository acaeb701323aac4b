"""Extractive question answering: the head against transformers', windows, span decoding, scores."""

import random

import numpy as np
import pytest
import torch
import transformers
from torchmetrics.functional.text import squad as reference_squad

import bertlab
from bertlab.answering import (
    answer_f1,
    answer_questions,
    best_answers,
    exact_match,
    normalize_answer,
    question_windows,
    squad_interval,
    squad_scores,
)


@pytest.fixture(scope="module")
def tokenizer():
    return bertlab.load_minilm_tokenizer()


@pytest.fixture(scope="module")
def qa():
    return bertlab.load_qa()


def tiny_config():
    return bertlab.BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2,
                              num_attention_heads=2, intermediate_size=64,
                              max_position_embeddings=128)


def test_head_equals_transformers_with_the_same_weights():
    torch.manual_seed(0)
    ours = bertlab.BertForQuestionAnswering(tiny_config()).eval()
    theirs = transformers.BertForQuestionAnswering(
        transformers.BertConfig(**tiny_config().to_dict())).eval()
    missing, unexpected = theirs.load_state_dict(ours.state_dict(), strict=False)
    assert not missing and not unexpected
    ids = torch.randint(5, 1000, (3, 20))
    types = torch.zeros_like(ids)
    types[:, 8:] = 1
    mask = torch.ones_like(ids)
    mask[0, 15:] = 0
    starts, ends = torch.tensor([9, 0, 12]), torch.tensor([11, 0, 19])
    a = ours(ids, mask, types, start_positions=starts, end_positions=ends)
    b = theirs(input_ids=ids, attention_mask=mask, token_type_ids=types,
               start_positions=starts, end_positions=ends)
    for x, y in [(a.start_logits, b.start_logits), (a.end_logits, b.end_logits), (a.loss, b.loss)]:
        assert (x - y).abs().max() < 1e-5


def test_saved_head_loads_in_transformers(tmp_path):
    torch.manual_seed(0)
    model = bertlab.BertForQuestionAnswering(tiny_config()).eval()
    model.save_pretrained(tmp_path)
    loaded = transformers.AutoModelForQuestionAnswering.from_pretrained(tmp_path).eval()
    ids = torch.randint(5, 1000, (2, 12))
    assert (model(ids).start_logits - loaded(input_ids=ids).start_logits).abs().max() < 1e-5


@pytest.mark.parametrize("start, end, message", [
    (torch.tensor([3]), None, "both"),
    (torch.tensor([30]), torch.tensor([31]), "outside the sequence"),
    (torch.tensor([5]), torch.tensor([2]), "ends before it starts"),
    (torch.tensor([1, 2]), torch.tensor([1, 2]), "one token index per sequence"),
])
def test_head_refuses_impossible_positions(start, end, message):
    model = bertlab.BertForQuestionAnswering(tiny_config())
    with pytest.raises(ValueError, match=message):
        model(torch.randint(5, 100, (1, 10)), start_positions=start, end_positions=end)


def test_every_answer_lies_whole_in_a_window_and_maps_back_to_its_text(tokenizer, qa):
    rows = qa["train"]
    windows = question_windows(tokenizer, rows["question"], rows["context"],
                               answers=rows["answers"], max_length=64, stride=16)
    assert len(windows["example"]) > 2 * len(rows)  # small windows: most paragraphs are cut
    found = set()
    for w, example in enumerate(windows["example"]):
        start, end = windows["start_positions"][w], windows["end_positions"][w]
        assert 0 <= start <= end < len(windows["input_ids"][w])
        if start:
            offsets, context = windows["offsets"][w], rows["context"][example]
            text = context[offsets[start][0]:offsets[end][1]]
            assert text == rows["answers"][example]["text"][0]
            found.add(example)
    answerable = {i for i, a in enumerate(rows["answers"]) if a["text"]}
    assert found == answerable
    # segment ids: 0 on [CLS] question [SEP], 1 on the paragraph and its [SEP]
    types, offsets = windows["token_type_ids"][0], windows["offsets"][0]
    assert all((t == 1) == (o is not None) for t, o in zip(types[:-1], offsets[:-1], strict=True))


def test_windows_refuse_bad_strides_answers_and_lengths(tokenizer):
    question, context = ["Who spoke?"], ["The President spoke to the Congress today."]
    with pytest.raises(ValueError, match="stride=40 must be smaller"):
        question_windows(tokenizer, question, context, max_length=32, stride=40)
    with pytest.raises(ValueError, match="not at character 3"):
        question_windows(tokenizer, question, context, answers=[{"text": ["Congress"],
                                                                  "answer_start": [3]}])
    with pytest.raises(ValueError, match="raise max_length"):
        question_windows(tokenizer, ["why " * 40], context, max_length=32, stride=4)
    with pytest.raises(ValueError, match="one of each"):
        question_windows(tokenizer, question * 2, context)


def test_best_answers_picks_the_best_short_span_or_no_answer():
    context = "abcdefghij"
    windows = {"example": [0], "offsets": [[None, None, (0, 2), (2, 4), (4, 6), (6, 8), None]]}
    start = np.array([0.0, -9, 1, 5, 0, 0, -9])
    end = np.array([0.0, -9, 0, 0, 0, 6, -9])
    assert best_answers([start], [end], windows, [context])[0].text == "cdefgh"
    # at most two tokens long: tokens 4-5 (0 + 6) beat token 3 with any end (5 + 0)
    short = best_answers([start], [end], windows, [context], max_answer_tokens=2)[0]
    assert (short.text, short.start, short.score) == ("efgh", 4, 6.0)
    # an end before its start never wins, however high it scores
    reversed_ = best_answers([np.array([0.0, 0, 0, 0, 0, 9, 0])], [np.array([0.0, 0, 9, 0, 0, 0, 0])],
                             windows, [context])[0]
    assert reversed_.score == 9.0
    # [CLS] beats the best span (11) by more than the threshold: no answer
    null = best_answers([np.array([8.0, *start[1:]])], [np.array([8.0, *end[1:]])], windows, [context])
    assert null[0].text == "" and null[0].start == -1
    assert best_answers([np.array([8.0, *start[1:]])], [np.array([8.0, *end[1:]])], windows,
                        [context], null_threshold=6.0)[0].text == "cdefgh"


def test_answers_across_windows_come_from_the_best_window(tokenizer):
    model = bertlab.BertForQuestionAnswering(tiny_config())
    long_context = " ".join(["The Senate met."] * 40 + ["Congress passed the budget in June."])
    found = answer_questions(model, tokenizer, ["When?"], [long_context], max_length=48, stride=16)
    assert len(found) == 1 and (found[0].text == "" or found[0].text in long_context)


def test_scores_equal_the_official_squad_definition():
    rng = random.Random(0)
    words = "the a an Senate Congress , . passed budget in June 1950 's Treaty of Paris".split()
    predictions, answers = [], []
    for _ in range(300):
        truth = [" ".join(rng.choices(words, k=rng.randint(1, 5))) for _ in range(rng.randint(0, 2))]
        # a true answer that normalises to nothing ("the ,") counts as none in SQuAD 2.0's
        # script but not in torchmetrics' (SQuAD 1.1's); real answers never do, so skip them
        truth = [t for t in truth if normalize_answer(t)]
        guess = rng.choice([truth[0] if truth else "", " ".join(rng.choices(words, k=3)), ""])
        predictions.append(guess)
        answers.append({"text": truth, "answer_start": [0] * len(truth)})
    ours = squad_scores(predictions, answers)
    reference = reference_squad(
        [{"prediction_text": p, "id": str(i)} for i, p in enumerate(predictions)],
        [{"answers": {"text": a["text"] or [""], "answer_start": a["answer_start"] or [-1]},
          "id": str(i)} for i, a in enumerate(answers)])
    assert abs(100 * ours["exact"] - reference["exact_match"].item()) < 1e-4
    assert abs(100 * ours["f1"] - reference["f1"].item()) < 1e-4
    assert ours["has_answer_questions"] + ours["no_answer_questions"] == 300


def test_normalisation_and_single_answers():
    assert normalize_answer("The  U.S. Senate's  vote!") == "us senates vote"
    assert exact_match("the Senate", ["Senate"]) == 1.0
    assert answer_f1("the budget of June", ["budget in June"]) == pytest.approx(2 / 3)
    assert answer_f1("", []) == 1.0 and answer_f1("Senate", []) == 0.0
    with pytest.raises(TypeError, match="list of strings"):
        answer_f1("Senate", "Senate")
    with pytest.raises(ValueError, match="2 predictions but 1"):
        squad_scores(["a", "b"], [["a"]])


def test_interval_holds_the_score():
    predictions = ["Senate"] * 60 + ["x"] * 40
    score, low, high = squad_interval(predictions, [["Senate"]] * 100, metric="exact")
    assert score == pytest.approx(0.6) and low < 0.6 < high
    with pytest.raises(ValueError, match="'exact' or 'f1'"):
        squad_interval(predictions, [["Senate"]] * 100, metric="accuracy")
