"""NSP pairs: segment structure, IsNext is consecutive text, NotNext comes from elsewhere."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from bertlab.data.corpus import Document
from bertlab.data.pairs import (
    build_nsp_pairs,
    build_nsp_pairs_from_ids,
    build_packed_sequences,
    pack_sequences_from_ids,
)

CLS, SEP = 1, 2
MAX_LEN = 64


def synthetic_documents(n_docs=60, seed=0, short_sentences=False):
    """Documents whose token ids are unique, so every id says where it came from."""
    rng = random.Random(seed)
    docs, where, next_id = [], {}, 10
    for d in range(n_docs):
        doc, position = [], 0
        for s in range(rng.randint(3, 40)):
            sentence = []
            length = rng.randint(2, 12) if short_sentences else \
                rng.choice([rng.randint(2, 30), rng.randint(30, 90)])
            for _ in range(length):
                where[next_id] = (d, position, s, len(sentence) == 0)
                sentence.append(next_id)
                next_id += 1
                position += 1
            doc.append(sentence)
        docs.append(doc)
    return docs, where


@pytest.fixture(scope="module")
def built():
    docs, where = synthetic_documents()
    pairs = build_nsp_pairs_from_ids(docs, cls_token_id=CLS, sep_token_id=SEP,
                                     max_seq_length=MAX_LEN, dupe_factor=5, seed=0)
    return docs, where, pairs


def segments(pair):
    ids = pair["input_ids"]
    first_sep = ids.index(SEP)
    return ids[1:first_sep], ids[first_sep + 1 : -1]


def test_layout_and_segment_ids(built):
    _, _, pairs = built
    assert len(pairs) > 3000
    for pair in pairs:
        ids, types = pair["input_ids"], pair["token_type_ids"]
        a, b = segments(pair)
        assert ids[0] == CLS and ids[-1] == SEP and ids.count(SEP) == 2
        assert a and b, "both segments hold at least one token"
        assert len(ids) == len(types) <= MAX_LEN
        assert types == [0] * (len(a) + 2) + [1] * (len(b) + 1)
        assert pair["next_sentence_label"] in (0, 1)


def test_labels_are_balanced(built):
    _, _, pairs = built
    share = sum(p["next_sentence_label"] for p in pairs) / len(pairs)
    print(f"\nNotNext share: {share:.3f} of {len(pairs)} pairs")
    assert abs(share - 0.5) <= 0.02


def test_is_next_pairs_are_consecutive_text_of_one_document(built):
    _, where, pairs = built
    checked_exact = 0
    for pair in pairs:
        if pair["next_sentence_label"] != 0:
            continue
        a, b = segments(pair)
        doc_a = {where[t][0] for t in a}
        doc_b = {where[t][0] for t in b}
        assert len(doc_a) == 1 and doc_a == doc_b, "A and B from one document"
        pos_a, pos_b = [where[t][1] for t in a], [where[t][1] for t in b]
        assert pos_a == list(range(pos_a[0], pos_a[0] + len(a))), "A is contiguous"
        assert pos_b == list(range(pos_b[0], pos_b[0] + len(b))), "B is contiguous"
        assert pos_b[0] > pos_a[-1], "B comes after A"
        if len(a) + len(b) < MAX_LEN - 3:  # nothing was truncated: B follows A directly
            assert pos_b[0] == pos_a[-1] + 1
            assert where[a[0]][3] and where[b[0]][3], "A and B start at sentence starts"
            checked_exact += 1
    assert checked_exact > 100


def test_not_next_pairs_take_b_from_another_document(built):
    _, where, pairs = built
    for pair in pairs:
        if pair["next_sentence_label"] != 1:
            continue
        a, b = segments(pair)
        doc_a = {where[t][0] for t in a}
        doc_b = {where[t][0] for t in b}
        assert len(doc_a) == 1 and len(doc_b) == 1 and doc_a != doc_b
        pos_b = [where[t][1] for t in b]
        assert pos_b == list(range(pos_b[0], pos_b[0] + len(b))), "B is contiguous"


def test_one_sentence_documents_keep_the_labels_balanced():
    docs, _ = synthetic_documents(n_docs=30)
    singles = [[[100_000 + i, 200_000 + i]] for i in range(600)]  # like short review snippets
    pairs = build_nsp_pairs_from_ids(docs + singles, cls_token_id=CLS, sep_token_id=SEP,
                                     max_seq_length=MAX_LEN, dupe_factor=3, seed=0)
    share = sum(p["next_sentence_label"] for p in pairs) / len(pairs)
    print(f"\nwith 600 one-sentence documents: NotNext share {share:.3f} of {len(pairs)}")
    assert abs(share - 0.5) <= 0.02
    a_tokens = {t for p in pairs for t in segments(p)[0]}
    b_tokens = {t for p in pairs for t in segments(p)[1]}
    assert not a_tokens & {s[0][0] for s in singles}, "a lone sentence never makes an A"
    assert b_tokens & {s[0][0] for s in singles}, "but it can be a random B"
    with pytest.raises(ValueError, match="No document has two sentences"):
        build_nsp_pairs_from_ids(singles, cls_token_id=CLS, sep_token_id=SEP)


def test_truncation_trims_the_front_and_the_back(built):
    docs, where, pairs = built
    sentence_ends = {s[-1] for doc in docs for s in doc}
    front = back = 0
    for pair in pairs:
        a, _ = segments(pair)
        if len(pair["input_ids"]) == MAX_LEN:
            front += not where[a[0]][3]  # A no longer starts a sentence
            back += a[-1] not in sentence_ends  # A no longer ends one
    assert front > 50 and back > 50


def test_short_sequences_appear_with_their_probability():
    docs, _ = synthetic_documents(seed=1, short_sentences=True)

    def lengths(prob):
        pairs = build_nsp_pairs_from_ids(docs, cls_token_id=CLS, sep_token_id=SEP,
                                         max_seq_length=128, short_seq_prob=prob, dupe_factor=5,
                                         seed=0)
        return [len(p["input_ids"]) for p in pairs]

    full, some, short = lengths(0.0), lengths(0.1), lengths(1.0)
    below = [sum(n < 64 for n in x) / len(x) for x in (full, some, short)]
    print(f"\nshare of pairs under 64 tokens: {below[0]:.3f} / {below[1]:.3f} / {below[2]:.3f}")
    # document ends make some short pairs anyway; short targets add more
    assert below[0] + 0.03 < below[1] and below[1] + 0.2 < below[2]


def test_seeded():
    docs, _ = synthetic_documents(n_docs=10)
    kwargs = {"cls_token_id": CLS, "sep_token_id": SEP, "max_seq_length": MAX_LEN}
    assert build_nsp_pairs_from_ids(docs, seed=3, **kwargs) == \
        build_nsp_pairs_from_ids(docs, seed=3, **kwargs)
    assert build_nsp_pairs_from_ids(docs, seed=3, **kwargs) != \
        build_nsp_pairs_from_ids(docs, seed=4, **kwargs)


def test_with_a_real_tokenizer_and_corpus(sotu_sample, minilm_tokenizer):
    pairs = build_nsp_pairs(sotu_sample, minilm_tokenizer, max_seq_length=128, seed=0)
    labels = Counter(p["next_sentence_label"] for p in pairs)
    share = labels[1] / len(pairs)
    lengths = [len(p["input_ids"]) for p in pairs]
    print(f"\nSOTU sample: {len(pairs)} pairs, NotNext {share:.3f}, "
          f"mean length {sum(lengths) / len(lengths):.1f}")
    assert abs(share - 0.5) <= 0.02
    assert max(lengths) == 128
    text = minilm_tokenizer.decode(pairs[0]["input_ids"])
    assert text.startswith("[CLS] ") and text.endswith(" [SEP]")
    # plain lists of sentences work the same as Documents
    few = sotu_sample[:5]
    assert build_nsp_pairs([d.sentences for d in few], minilm_tokenizer, seed=0) == \
        build_nsp_pairs(few, minilm_tokenizer, seed=0)


@pytest.fixture(scope="module")
def sotu_sample():
    from bertlab.data.corpus import load_corpus

    return load_corpus("sotu").train[-40:]


@pytest.fixture(scope="module")
def minilm_tokenizer():
    from bertlab.tokenizer import load_minilm_tokenizer

    return load_minilm_tokenizer()


def test_bad_input_is_explained(minilm_tokenizer):
    with pytest.raises(ValueError, match="at least two"):
        build_nsp_pairs([["Only one document.", "Two sentences."]], minilm_tokenizer)
    with pytest.raises(TypeError, match="list of sentences"):
        build_nsp_pairs(["one string", "another"], minilm_tokenizer)
    with pytest.raises(ValueError, match="max_seq_length"):
        build_nsp_pairs_from_ids([[[5]], [[6]]], cls_token_id=CLS, sep_token_id=SEP,
                                 max_seq_length=4)
    doc = Document(id="x", sentences=["One.", "Two."], source="test")
    assert build_nsp_pairs([doc, doc], minilm_tokenizer, seed=0)


# --------------------------------------------------------------------------- packed, no NSP


def test_packing_uses_every_sentence_once_in_order():
    docs, where = synthetic_documents(short_sentences=True)
    docs += [[[900_000 + i, 900_100 + i]] for i in range(50)]  # one-sentence documents
    packed = pack_sequences_from_ids(docs, cls_token_id=CLS, sep_token_id=SEP,
                                     max_seq_length=MAX_LEN, seed=0)
    ordinary = Counter(t for seq in packed for t in seq["input_ids"] if t not in (CLS, SEP))
    assert ordinary == Counter(t for doc in docs for sentence in doc for t in sentence)
    for seq in packed:
        ids = seq["input_ids"]
        assert ids[0] == CLS and ids[-1] == SEP and len(ids) <= MAX_LEN
        assert seq["token_type_ids"] == [0] * len(ids) and "next_sentence_label" not in seq
        assert CLS not in ids[1:] and (SEP, SEP) not in zip(ids, ids[1:], strict=False)
        # within a document the text stays in order: ids increase until a [SEP]
        for run in " ".join(map(str, ids[1:-1])).split(f" {SEP} "):
            tokens = [int(t) for t in run.split()]
            if tokens and tokens[0] < 900_000:
                assert tokens == sorted(tokens)
    # sequences are full: only the last one of a run of documents may be short
    assert sum(len(seq["input_ids"]) for seq in packed) / len(packed) > 0.85 * MAX_LEN


def test_packing_cuts_only_sentences_longer_than_a_sequence():
    long = list(range(100, 200))
    packed = pack_sequences_from_ids([[long], [[7, 8]]], cls_token_id=CLS, sep_token_id=SEP,
                                     max_seq_length=16, seed=0)
    assert sorted(map(len, (s["input_ids"] for s in packed))) == [4, 16]
    assert pack_sequences_from_ids([[[5]]], cls_token_id=CLS, sep_token_id=SEP, seed=3) == \
        pack_sequences_from_ids([[[5]]], cls_token_id=CLS, sep_token_id=SEP, seed=3)


def test_packing_real_text_and_bad_input(minilm_tokenizer):
    reviews = [Document(id=str(i), sentences=[f"Review number {i} is fine."], source="rt")
               for i in range(40)]
    packed = build_packed_sequences(reviews, minilm_tokenizer, max_seq_length=32, seed=0)
    text = " ".join(minilm_tokenizer.decode(s["input_ids"]) for s in packed)
    assert all(f"review number {i} is fine" in text for i in range(40))
    with pytest.raises(ValueError, match="every document is empty"):
        pack_sequences_from_ids([[[]]], cls_token_id=CLS, sep_token_id=SEP)
    with pytest.raises(ValueError, match="max_seq_length"):
        pack_sequences_from_ids([[[5]]], cls_token_id=CLS, sep_token_id=SEP, max_seq_length=2)
    with pytest.raises(TypeError, match="list of sentences"):
        build_packed_sequences(["one string"], minilm_tokenizer)
