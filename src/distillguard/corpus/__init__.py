"""Real public prompts, labelled by kind and split by template family (see docs/split.md)."""

from distillguard.corpus.corpus import Corpus, load_corpus
from distillguard.corpus.items import KINDS, SPLITS, CorpusItem

__all__ = ["KINDS", "SPLITS", "Corpus", "CorpusItem", "load_corpus"]
