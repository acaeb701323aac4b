"""WordPiece tokenizers: train one from scratch with ``tokenizers``, or load MiniLM's.

``train_wordpiece`` assembles BERT's pipeline from its parts -- the BERT normaliser (clean
text, lower-case, strip accents), the BERT pre-tokeniser (split on spaces and punctuation),
a WordPiece model trained on your texts, and a post-processor that adds ``[CLS]`` / ``[SEP]``
and segment ids -- and hands it back as a ``transformers.BertTokenizerFast``, so it saves and
reloads like any Hugging Face tokenizer.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["SPECIAL_TOKENS", "load_minilm_tokenizer", "train_wordpiece"]

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")  # ids 0..4, in this order


def _pipeline(lowercase: bool):
    """An untrained BERT-style tokenizer: normaliser, pre-tokeniser and decoder, no vocabulary."""
    from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers
    from tokenizers.models import WordPiece

    tok = Tokenizer(WordPiece(unk_token="[UNK]", continuing_subword_prefix="##"))
    # strip_accents=None follows `lowercase`, as in the original BERT uncased/cased models
    tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                                strip_accents=None, lowercase=lowercase)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(prefix="##")
    return tok


def _train(texts: list[str], lowercase: bool, vocab_size: int, min_frequency: int,
           special_tokens: list[str]):
    from tokenizers import trainers

    tok = _pipeline(lowercase)
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=special_tokens,
        continuing_subword_prefix="##", show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer, length=len(texts))
    return tok


def train_wordpiece(
    texts: Iterable[str],
    vocab_size: int = 8000,
    *,
    lowercase: bool = True,
    min_frequency: int = 2,
    model_max_length: int = 512,
):
    """Train a WordPiece vocabulary on ``texts`` and return a ``BertTokenizerFast``.

    Args:
        texts: the training texts (sentences or documents); read twice, so an iterator is
            materialised first.
        vocab_size: size of the vocabulary, special tokens and the alphabet included.
        lowercase: lower-case and strip accents (an "uncased" model).
        min_frequency: a merge must occur at least this often to enter the vocabulary.
        model_max_length: longest input the model accepts (BERT's position table: 512).

    Special tokens are ``[PAD] [UNK] [CLS] [SEP] [MASK]`` with ids 0 to 4. The same texts and
    settings always give the same vocabulary.
    """
    from tokenizers import AddedToken, processors
    from tokenizers.models import WordPiece
    from transformers import BertTokenizerFast

    if isinstance(texts, str):
        raise TypeError("texts must be a list (or iterable) of strings, not one string: "
                        "wrap it as [text].")
    texts = list(texts)
    if not texts or not all(isinstance(t, str) for t in texts):
        raise TypeError("texts must be a non-empty list of strings.")
    if vocab_size <= len(SPECIAL_TOKENS):
        raise ValueError(f"vocab_size must exceed the {len(SPECIAL_TOKENS)} special tokens, "
                         f"got {vocab_size}.")
    if min_frequency < 1:
        raise ValueError(f"min_frequency must be at least 1, got {min_frequency}.")

    # The trainer numbers the continuation pieces ("##a", "##b", ...) in hash-map order, which
    # differs between runs, and breaks ties between equally frequent merges by those numbers
    # (huggingface/tokenizers#1794). Numbering them ourselves, in sorted order, makes training
    # deterministic: a cheap first pass only collects them, the second pass learns the merges.
    first = _train(texts, lowercase, vocab_size=1, min_frequency=min_frequency,
                   special_tokens=list(SPECIAL_TOKENS))
    pieces = sorted(t for t in first.get_vocab(with_added_tokens=False) if t.startswith("##"))
    trained = _train(texts, lowercase, vocab_size, min_frequency, [*SPECIAL_TOKENS, *pieces])
    vocab = trained.get_vocab(with_added_tokens=False)

    # Rebuild on the learned vocabulary, so only the five real special tokens are special.
    tok = _pipeline(lowercase)
    tok.model = WordPiece(vocab, unk_token="[UNK]", continuing_subword_prefix="##")
    tok.add_special_tokens([AddedToken(t, special=True) for t in SPECIAL_TOKENS])
    cls_id, sep_id = vocab["[CLS]"], vocab["[SEP]"]
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS]:0 $A:0 [SEP]:0",
        pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    return BertTokenizerFast(
        tokenizer_object=tok, do_lower_case=lowercase, model_max_length=model_max_length,
        unk_token="[UNK]", sep_token="[SEP]", pad_token="[PAD]", cls_token="[CLS]",
        mask_token="[MASK]",
    )


def load_minilm_tokenizer():
    """The tokenizer of all-MiniLM-L6-v2 (uncased BERT WordPiece, 30,522 tokens), offline."""
    from transformers import AutoTokenizer

    from bertlab.data.sources import minilm_dir

    return AutoTokenizer.from_pretrained(minilm_dir())
