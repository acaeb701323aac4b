"""Next-sentence-prediction pairs, built the way BERT's ``create_pretraining_data.py`` does.

For each document, sentences are gathered into a chunk until the chunk reaches a target length
(the full ``max_seq_length - 3``, or with probability ``short_seq_prob`` a random shorter one,
so the model also sees short inputs). The chunk is cut at a random sentence boundary into
segment A and segment B:

* half of the time B is the rest of the chunk -- the text that really follows A
  (``next_sentence_label = 0``, "IsNext");
* otherwise B is a run of sentences from a random *other* document ("NotNext", label 1),
  and the chunk's unused sentences are put back to start the next chunk, so no text is wasted.

If A + B is too long, the longer segment loses one token at a time, from its front or its back
at random. The pair becomes ``[CLS] A [SEP] B [SEP]`` with ``token_type_ids`` 0 for
``[CLS] A [SEP]`` and 1 for ``B [SEP]``. Labels follow Hugging Face (0 = IsNext, 1 = NotNext).

As in the original, the target length is drawn once per document and pass. Two deliberate
changes make IsNext and NotNext exactly equally likely (the original gives 52-55% NotNext on
the State of the Union corpus, and mostly NotNext for short sequences, a length cue):

* a chunk closes at the target length only once it holds at least two sentences, so it can
  always be cut into A and B (a long first sentence is then truncated instead);
* a chunk of a single sentence (a document's last, or a one-sentence document) cannot give an
  IsNext pair; the original always makes it NotNext, here it is skipped. Its sentence can
  still be drawn as a random B. So one-sentence documents (most review snippets) give no
  pairs of their own: to train masked-LM on them, collate them without NSP.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

__all__ = ["build_nsp_pairs", "build_nsp_pairs_from_ids", "build_packed_sequences",
           "pack_sequences_from_ids"]

IS_NEXT, NOT_NEXT = 0, 1


def build_nsp_pairs(
    documents: Sequence,
    tokenizer,
    *,
    max_seq_length: int = 128,
    short_seq_prob: float = 0.1,
    dupe_factor: int = 1,
    seed: int = 0,
) -> list[dict]:
    """Tokenize documents and build shuffled NSP pairs from them.

    Args:
        documents: ``bertlab.data.corpus.Document`` objects, or lists of sentences (str).
        tokenizer: a Hugging Face tokenizer with ``[CLS]`` and ``[SEP]`` tokens.
        max_seq_length: length of ``[CLS] A [SEP] B [SEP]`` at most.
        short_seq_prob: probability of a shorter target length for a document.
        dupe_factor: passes over the corpus; each pass cuts the documents differently.
        seed: seeds the pair building (the same seed gives the same pairs).

    Returns:
        dicts with ``input_ids``, ``token_type_ids`` (lists of int) and ``next_sentence_label``
        (0 = IsNext, 1 = NotNext), in shuffled order; ready for ``MLMCollator``.
    """
    if tokenizer.cls_token_id is None or tokenizer.sep_token_id is None:
        raise ValueError("The tokenizer needs [CLS] and [SEP] tokens to build NSP pairs.")
    return build_nsp_pairs_from_ids(
        _tokenized_documents(documents, tokenizer), cls_token_id=tokenizer.cls_token_id, sep_token_id=tokenizer.sep_token_id,
        max_seq_length=max_seq_length, short_seq_prob=short_seq_prob, dupe_factor=dupe_factor,
        seed=seed,
    )


def build_nsp_pairs_from_ids(
    documents: Sequence[Sequence[Sequence[int]]],
    *,
    cls_token_id: int,
    sep_token_id: int,
    max_seq_length: int = 128,
    short_seq_prob: float = 0.1,
    dupe_factor: int = 1,
    seed: int = 0,
) -> list[dict]:
    """``build_nsp_pairs`` on documents that are already lists of tokenized sentences."""
    if max_seq_length < 5:
        raise ValueError(f"max_seq_length must be at least 5 ([CLS] A [SEP] B [SEP]), "
                         f"got {max_seq_length}.")
    if not 0 <= short_seq_prob <= 1:
        raise ValueError(f"short_seq_prob must be a probability, got {short_seq_prob}.")
    if dupe_factor < 1:
        raise ValueError(f"dupe_factor must be at least 1, got {dupe_factor}.")
    docs = [[list(s) for s in doc if len(s) > 0] for doc in documents]
    docs = [doc for doc in docs if doc]
    if len(docs) < 2:
        raise ValueError("NSP needs at least two non-empty documents (random B segments come "
                         f"from another document); got {len(docs)}.")

    rng = random.Random(seed)
    pairs = []
    for _ in range(dupe_factor):
        for index in range(len(docs)):
            pairs.extend(_pairs_from_document(docs, index, max_seq_length, short_seq_prob,
                                              cls_token_id, sep_token_id, rng))
    if not pairs:
        raise ValueError("No document has two sentences, so no NSP pair can be built: split "
                         "the texts into sentences first (bertlab.data.corpus.split_sentences).")
    rng.shuffle(pairs)
    return pairs


def _pairs_from_document(docs, index, max_seq_length, short_seq_prob, cls_id, sep_id, rng):
    document = docs[index]
    max_num_tokens = max_seq_length - 3  # room for [CLS], [SEP], [SEP]
    target_length = max_num_tokens
    if rng.random() < short_seq_prob:
        target_length = rng.randint(2, max_num_tokens)

    pairs = []
    chunk: list[list[int]] = []
    chunk_length = 0
    i = 0
    while i < len(document):
        chunk.append(document[i])
        chunk_length += len(document[i])
        at_end = i == len(document) - 1
        # close the chunk at the target length -- once it holds two sentences (see above)
        if at_end or (chunk_length >= target_length and len(chunk) >= 2):
            if len(chunk) >= 2:  # one sentence cannot make an IsNext pair: skip it (above)
                tokens_a, tokens_b, label, unused = _cut_chunk(chunk, docs, index,
                                                               target_length, rng)
                i -= unused  # NotNext: the chunk's sentences after A start the next chunk
                _truncate_pair(tokens_a, tokens_b, max_num_tokens, rng)
                pairs.append({
                    "input_ids": [cls_id, *tokens_a, sep_id, *tokens_b, sep_id],
                    "token_type_ids": [0] * (len(tokens_a) + 2) + [1] * (len(tokens_b) + 1),
                    "next_sentence_label": label,
                })  # fmt: skip
            chunk, chunk_length = [], 0
        i += 1
    return pairs


def _cut_chunk(chunk, docs, index, target_length, rng):
    """Split a chunk into A and B; return ``(tokens_a, tokens_b, label, unused_sentences)``."""
    # A takes the first a_end sentences of the chunk (it holds at least two)
    a_end = rng.randint(1, len(chunk) - 1)
    tokens_a = [t for sentence in chunk[:a_end] for t in sentence]
    if rng.random() < 0.5:
        return tokens_a, [t for sentence in chunk[a_end:] for t in sentence], IS_NEXT, 0

    # NotNext: B is a run of sentences from a uniformly chosen *other* document
    other = rng.randrange(len(docs) - 1)
    other += other >= index
    random_doc = docs[other]
    tokens_b: list[int] = []
    for sentence in random_doc[rng.randrange(len(random_doc)) :]:
        tokens_b.extend(sentence)
        if len(tokens_b) >= target_length - len(tokens_a):
            break
    return tokens_a, tokens_b, NOT_NEXT, len(chunk) - a_end


def _truncate_pair(tokens_a: list[int], tokens_b: list[int], max_num_tokens: int,
                   rng: random.Random) -> None:
    """Trim the longer segment, one token at a time from its front or back, until both fit."""
    while len(tokens_a) + len(tokens_b) > max_num_tokens:
        longer = tokens_a if len(tokens_a) > len(tokens_b) else tokens_b
        # from the front or the back at random, so neither end is always lost
        if rng.random() < 0.5:
            del longer[0]
        else:
            longer.pop()


def _tokenized_documents(documents: Sequence, tokenizer) -> list[list[list[int]]]:
    """Each document as a list of tokenized sentences (no special tokens)."""
    sentence_lists = [_sentences_of(doc) for doc in documents]
    flat = [s for sentences in sentence_lists for s in sentences]
    # one batched call to the fast tokenizer; verbose=False: long sentences are cut later
    ids = tokenizer(flat, add_special_tokens=False, verbose=False)["input_ids"] if flat else []
    tokenized, start = [], 0
    for sentences in sentence_lists:
        tokenized.append(ids[start : start + len(sentences)])
        start += len(sentences)
    return tokenized


def _sentences_of(document) -> list[str]:
    sentences = getattr(document, "sentences", document)
    if isinstance(sentences, str):
        raise TypeError("Each document must be a list of sentences (or a Document), not one "
                        "string: split it first, e.g. with bertlab.data.corpus.split_sentences.")
    return list(sentences)


# --------------------------------------------------------------------------- without NSP


def build_packed_sequences(
    documents: Sequence,
    tokenizer,
    *,
    max_seq_length: int = 128,
    seed: int = 0,
) -> list[dict]:
    """Pack whole sentences into ``[CLS] ... [SEP]`` sequences for masked-LM without NSP.

    RoBERTa's FULL-SENTENCES input (Liu et al. 2019): consecutive sentences fill each sequence
    up to ``max_seq_length``, running on into the next document after a ``[SEP]``. Unlike NSP
    pairs, one-sentence documents (most review snippets) are used in full. Documents are taken
    in a seeded random order, their sentences in order; a sentence longer than a whole sequence
    is cut. Returns shuffled dicts with ``input_ids`` and ``token_type_ids`` (all 0).
    """
    if tokenizer.cls_token_id is None or tokenizer.sep_token_id is None:
        raise ValueError("The tokenizer needs [CLS] and [SEP] tokens to pack sequences.")
    return pack_sequences_from_ids(_tokenized_documents(documents, tokenizer), cls_token_id=tokenizer.cls_token_id,
                                   sep_token_id=tokenizer.sep_token_id,
                                   max_seq_length=max_seq_length, seed=seed)


def pack_sequences_from_ids(
    documents: Sequence[Sequence[Sequence[int]]],
    *,
    cls_token_id: int,
    sep_token_id: int,
    max_seq_length: int = 128,
    seed: int = 0,
) -> list[dict]:
    """``build_packed_sequences`` on documents that are already lists of tokenized sentences."""
    if max_seq_length < 3:
        raise ValueError(f"max_seq_length must be at least 3 ([CLS] x [SEP]), got {max_seq_length}.")
    room = max_seq_length - 2  # [CLS] and the final [SEP]
    docs = [[list(s) for s in doc if len(s) > 0] for doc in documents]
    docs = [doc for doc in docs if doc]
    if not docs:
        raise ValueError("No text to pack: every document is empty.")
    rng = random.Random(seed)
    rng.shuffle(docs)

    sequences, body = [], []

    def close() -> None:
        if body and body[-1] == sep_token_id:
            body.pop()  # no document separator right before the final [SEP]
        if body:
            sequences.append([cls_token_id, *body, sep_token_id])
        body.clear()

    for doc in docs:
        if body and len(body) + 1 < room:  # a [SEP] between documents (RoBERTa's separator)
            body.append(sep_token_id)
        elif body:
            close()
        for sentence in doc:
            if len(body) + len(sentence) > room:
                close()
            body.extend(sentence[:room])  # only a sentence longer than a sequence is cut
    close()
    rng.shuffle(sequences)
    return [{"input_ids": ids, "token_type_ids": [0] * len(ids)} for ids in sequences]
