"""Turning examples into batches: dynamic padding and MLM masking.

* ``MLMCollator`` pads a batch to its longest sequence and masks it for masked-LM training:
  15% of the real tokens are chosen (never ``[CLS]``, ``[SEP]``, ``[PAD]`` ...); of those 80%
  become ``[MASK]``, 10% a random ordinary token and 10% stay as they are. ``labels`` hold the
  original ids at the chosen positions and -100 (ignored by the loss) everywhere else.
* ``PaddingCollator`` pads already tokenized examples (fine-tuning);
  ``TextClassificationCollator`` tokenizes raw text per batch and pads it.

Batches of similar length (less padding) come from ``train(..., group_by_length=True)``: the
order of an epoch is ``bertlab.batching.epoch_batches``.

Everything that runs per batch is vectorised torch: no Python loop over tokens.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from bertlab.checks import IGNORE_INDEX

__all__ = [
    "MLMCollator",
    "PaddingCollator",
    "TextClassificationCollator",
    "mask_tokens",
    "pad_sequences",
]



def pad_sequences(
    sequences: Sequence[Sequence[int] | torch.Tensor],
    padding_value: int,
    pad_to_multiple_of: int | None = None,
) -> torch.Tensor:
    """Right-pad 1-D sequences to the longest one (rounded up to a multiple); a long tensor."""
    if len(sequences) == 0:
        raise ValueError("Cannot pad an empty batch.")
    length = max(len(s) for s in sequences)
    if pad_to_multiple_of:
        length = -(-length // pad_to_multiple_of) * pad_to_multiple_of
    if all(isinstance(s, list) for s in sequences):  # the usual case: one tensor call, fast
        return torch.tensor([s + [padding_value] * (length - len(s)) for s in sequences],
                            dtype=torch.long)
    out = torch.full((len(sequences), length), padding_value, dtype=torch.long)
    for row, s in enumerate(sequences):
        s = torch.as_tensor(s, dtype=torch.long)
        if s.dim() != 1:
            raise ValueError("Each sequence must be one-dimensional (a list of token ids).")
        out[row, : len(s)] = s
    return out


def _pad_features(features: Sequence[Mapping], pad_token_id: int,
                  pad_to_multiple_of: int | None) -> dict[str, torch.Tensor]:
    """Pad input_ids (and token_type_ids); build the attention mask; stack scalar labels."""
    if not features:
        raise ValueError("Cannot collate an empty batch.")
    if "input_ids" not in features[0]:
        raise KeyError(f"Each example needs 'input_ids'; got keys {sorted(features[0])}. "
                       "Tokenize the text first, or use TextClassificationCollator.")
    ids = [f["input_ids"] for f in features]
    batch = {"input_ids": pad_sequences(ids, pad_token_id, pad_to_multiple_of)}
    lengths = torch.tensor([len(s) for s in ids])
    width = batch["input_ids"].shape[1]
    batch["attention_mask"] = (torch.arange(width) < lengths[:, None]).long()
    if "token_type_ids" in features[0]:
        batch["token_type_ids"] = pad_sequences([f["token_type_ids"] for f in features], 0,
                                                pad_to_multiple_of)
    else:
        batch["token_type_ids"] = torch.zeros_like(batch["input_ids"])
    for key in ("label", "labels", "next_sentence_label"):
        if key in features[0]:
            name = "labels" if key == "label" else key
            batch[name] = torch.tensor([f[key] for f in features], dtype=torch.long)
    return batch


class PaddingCollator:
    """Pad tokenized examples to the longest in the batch (dynamic padding).

    Each example needs ``input_ids``; ``token_type_ids`` and a ``label``/``labels`` are used
    when present (``label`` comes out as ``labels``, the name the models expect).
    """

    def __init__(self, tokenizer=None, *, pad_token_id: int | None = None,
                 pad_to_multiple_of: int | None = None):
        if pad_token_id is None:
            pad_token_id = getattr(tokenizer, "pad_token_id", None)
        if pad_token_id is None:
            raise ValueError("Give a tokenizer with a pad token, or pad_token_id=.")
        self.pad_token_id = pad_token_id
        self.pad_to_multiple_of = pad_to_multiple_of

    def __call__(self, features: Sequence[Mapping]) -> dict[str, torch.Tensor]:
        return _pad_features(features, self.pad_token_id, self.pad_to_multiple_of)


class TextClassificationCollator:
    """Tokenize raw ``text`` per batch, pad to the longest, return tensors with ``labels``.

    ``DataLoader(load_sentiment()["train"], batch_size=32, collate_fn=collator)`` needs no
    ``.map`` step first; a fast tokenizer does a batch of short reviews in about a millisecond.
    """

    def __init__(self, tokenizer, *, max_length: int = 128, text_column: str = "text",
                 label_column: str = "label"):
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.text_column = text_column
        self.label_column = label_column

    def __call__(self, features: Sequence[Mapping]) -> dict[str, torch.Tensor]:
        texts = [f[self.text_column] for f in features]
        batch = dict(self.tokenizer(texts, padding=True, truncation=True,
                                    max_length=self.max_length, return_tensors="pt"))
        if self.label_column in features[0]:
            batch["labels"] = torch.tensor([f[self.label_column] for f in features])
        return batch


def _lookup(table: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """``table[ids]`` via index_select: on a busy CPU, ``table[ids]`` / ``take`` can be 1000x
    slower here, as they start threads for a few thousand lookups."""
    return table.index_select(0, ids.reshape(-1)).view(ids.shape)


def _check_probabilities(mlm_probability: float, mask_replace_prob: float,
                         random_replace_prob: float) -> None:
    if not 0 <= mlm_probability <= 1:
        raise ValueError(f"mlm_probability must be in [0, 1], got {mlm_probability}.")
    if mask_replace_prob < 0 or random_replace_prob < 0 or \
            mask_replace_prob + random_replace_prob > 1:
        raise ValueError("mask_replace_prob and random_replace_prob must be non-negative and "
                         f"sum to at most 1, got {mask_replace_prob} and {random_replace_prob}.")


def mask_tokens(
    input_ids: torch.Tensor,
    maskable: torch.Tensor,
    *,
    mask_token_id: int,
    random_token_ids: torch.Tensor,
    mlm_probability: float = 0.15,
    mask_replace_prob: float = 0.8,
    random_replace_prob: float = 0.1,
    word_starts: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's masking of a padded batch; returns ``(masked_input_ids, labels)``.

    Args:
        input_ids: (batch, length) token ids.
        maskable: bool, same shape: True at real, ordinary tokens (the candidates).
        mask_token_id: id of ``[MASK]``.
        random_token_ids: 1-D ids that a random replacement draws from (no special tokens).
        mlm_probability: chance that a candidate (or a whole word) is chosen.
        mask_replace_prob / random_replace_prob: shares of the chosen tokens that become
            ``[MASK]`` / a random token; the rest keep their id.
        word_starts: bool, True where a word begins. When given, whole words are chosen: a
            continuation piece follows the choice made at its word's start.
        generator: a seeded ``torch.Generator`` for repeatable masks; None uses torch's global
            random state.
    """
    _check_probabilities(mlm_probability, mask_replace_prob, random_replace_prob)
    draw = torch.rand(input_ids.shape, generator=generator, device=input_ids.device)
    if word_starts is not None:
        # every token reads the draw at the start of its word: the word is chosen as one
        positions = torch.arange(input_ids.shape[1], device=input_ids.device).expand_as(input_ids)
        start_of_word = torch.where(word_starts, positions, 0).cummax(dim=1).values
        draw = draw.gather(1, start_of_word)
    chosen = maskable & (draw < mlm_probability)

    labels = torch.where(chosen, input_ids, IGNORE_INDEX)
    # one more uniform number per token splits the chosen into [MASK] / random / unchanged
    action = torch.rand(input_ids.shape, generator=generator, device=input_ids.device)
    to_mask = chosen & (action < mask_replace_prob)
    to_random = chosen & (action >= mask_replace_prob) & \
        (action < mask_replace_prob + random_replace_prob)
    picks = torch.randint(len(random_token_ids), input_ids.shape, generator=generator,
                          device=input_ids.device)
    masked = torch.where(to_mask, mask_token_id, input_ids)
    masked = torch.where(to_random, _lookup(random_token_ids.to(input_ids.device), picks), masked)
    return masked, labels


class MLMCollator:
    """Pad a batch and mask it for masked-language-model training.

    Args:
        tokenizer: the model's tokenizer (for the pad, mask and special token ids and, with
            whole-word masking, to know which pieces continue a word: ``##...``).
        mlm_probability: share of real tokens chosen for prediction (BERT: 0.15).
        mask_replace_prob / random_replace_prob: of the chosen, the share replaced by
            ``[MASK]`` (0.8) and by a random ordinary token (0.1); the rest stay unchanged.
        whole_word_masking: choose whole words, never a lone ``##`` piece of one.
        seed: None (default) draws fresh masks from torch's global random state; an int gives
            the collator its own generator, so a run repeats exactly (masks still differ from
            batch to batch). In DataLoader workers it is reseeded from each worker's seed.
        pad_to_multiple_of: round the padded length up (e.g. 8 for tensor cores).

    Examples need ``input_ids``; ``token_type_ids`` and ``next_sentence_label`` are passed
    through when present. Returns ``input_ids``, ``token_type_ids``, ``attention_mask``,
    ``labels`` and, for NSP pairs, ``next_sentence_label``.
    """

    def __init__(
        self,
        tokenizer,
        *,
        mlm_probability: float = 0.15,
        mask_replace_prob: float = 0.8,
        random_replace_prob: float = 0.1,
        whole_word_masking: bool = False,
        seed: int | None = None,
        pad_to_multiple_of: int | None = None,
    ):
        if tokenizer.mask_token_id is None or tokenizer.pad_token_id is None:
            raise ValueError("The tokenizer needs [MASK] and [PAD] tokens for MLM.")
        _check_probabilities(mlm_probability, mask_replace_prob, random_replace_prob)
        self.tokenizer = tokenizer
        self.mlm_probability = mlm_probability
        self.mask_replace_prob = mask_replace_prob
        self.random_replace_prob = random_replace_prob
        self.whole_word_masking = whole_word_masking
        self.pad_to_multiple_of = pad_to_multiple_of
        self.seed = seed
        self.generator = None if seed is None else torch.Generator().manual_seed(seed)
        self._worker_seed: int | None = None

        vocab_size = len(tokenizer)
        special = sorted({i for i in tokenizer.all_special_ids if i is not None})
        is_special = torch.zeros(vocab_size, dtype=torch.bool)
        is_special[special] = True
        self.is_special = is_special  # lookup table: id -> special?
        self.random_token_ids = torch.nonzero(~is_special).flatten()
        if whole_word_masking:
            pieces = tokenizer.convert_ids_to_tokens(list(range(vocab_size)))
            self.is_continuation = torch.tensor([p.startswith("##") for p in pieces])

    def __call__(self, features: Sequence[Mapping]) -> dict[str, torch.Tensor]:
        batch = _pad_features(features, self.tokenizer.pad_token_id, self.pad_to_multiple_of)
        batch.pop("labels", None)  # MLM labels are made here
        input_ids = batch["input_ids"]
        if int(input_ids.max()) >= len(self.is_special) or int(input_ids.min()) < 0:
            raise ValueError(f"Token ids must lie in [0, {len(self.is_special)}) for this "
                             "tokenizer; were the examples made with another tokenizer?")
        maskable = batch["attention_mask"].bool() & ~_lookup(self.is_special, input_ids)
        word_starts = None
        if self.whole_word_masking:
            word_starts = maskable & ~_lookup(self.is_continuation, input_ids)
        batch["input_ids"], batch["labels"] = mask_tokens(
            input_ids, maskable, mask_token_id=self.tokenizer.mask_token_id,
            random_token_ids=self.random_token_ids, mlm_probability=self.mlm_probability,
            mask_replace_prob=self.mask_replace_prob,
            random_replace_prob=self.random_replace_prob, word_starts=word_starts,
            generator=self._generator(),
        )
        return batch

    def _generator(self) -> torch.Generator | None:
        """Our generator; inside a DataLoader worker it is reseeded from the worker's seed.

        Every worker holds a copy of the collator; without this they would all draw the same
        masks. The worker seed differs per worker and per epoch and follows torch.manual_seed.
        """
        if self.generator is not None:
            info = torch.utils.data.get_worker_info()
            if info is not None and info.seed != self._worker_seed:
                self.generator.manual_seed(info.seed)
                self._worker_seed = info.seed
        return self.generator
