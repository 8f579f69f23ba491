"""The builtin text encoder: tags, synonyms, plurals, the empty prompt and one warning per unknown word."""

from __future__ import annotations

import warnings

import pytest
import torch

from pipeline.builtin_content import FAMILIES, PALETTES
from pipeline.builtin_text import BUILTIN_TAGS, SYNONYMS, TagEncoder, builtin_encoder


def test_synonyms_and_plurals_name_the_same_tag() -> None:
    enc = builtin_encoder()
    torch.testing.assert_close(enc.encode("crimson circles"), enc.encode("red rings"))
    torch.testing.assert_close(enc.encode("Scarlet, RING!"), enc.encode("red rings"))
    assert enc.tags_of("azure bubbles and a starfield") == ["blue", "blobs", "stars"]
    assert enc.lookup("spirals") == "spiral" and enc.lookup("ring") == "rings" and enc.lookup("teal") == "cyan"


def test_embeddings_are_unit_vectors_and_empty_is_zero() -> None:
    enc = builtin_encoder()
    assert enc.encode("").abs().sum() == 0
    red = enc.encode("red")
    assert red.shape == (len(BUILTIN_TAGS),) and float(red.norm()) == pytest.approx(1.0)
    both = enc.encode("red rings")
    assert float(both[enc.index["red"]]) == pytest.approx(2**-0.5)


def test_unknown_words_warn_once_each_and_list_known_words() -> None:
    enc = builtin_encoder()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert enc.tags_of("red zorblax") == ["red"]
        enc.tags_of("zorblax rings zorblax")
        enc.tags_of("a beautiful image of the quux")  # filler words are silent
    messages = [str(w.message) for w in caught]
    assert len(messages) == 2, messages
    assert "'zorblax'" in messages[0]
    listed = messages[0].split("known words include: ")[1].split(", ...")[0].split(", ")
    assert len(listed) >= 8 and set(listed) <= set(BUILTIN_TAGS), listed
    assert "'quux'" in messages[1]


def test_every_content_and_synonym_tag_is_in_the_vocabulary() -> None:
    used = {t for _, tags, _ in FAMILIES.values() for t in tags} | {t for p in PALETTES for t in p.tags}
    used |= {p.name for p in PALETTES}
    assert used <= set(BUILTIN_TAGS), used - set(BUILTIN_TAGS)
    assert set(SYNONYMS.values()) <= set(BUILTIN_TAGS)


def test_bad_vocabularies_are_rejected() -> None:
    with pytest.raises(ValueError, match="distinct"):
        TagEncoder(("red", "red"))
    with pytest.raises(ValueError, match="not a tag"):
        builtin_encoder().multi_hot(["zorblax"])


def test_a_misspelt_word_is_reported_with_the_nearest_known_words() -> None:
    enc = builtin_encoder()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        enc.tags_of("neon riings")
    assert len(caught) == 1 and "did you mean rings" in str(caught[0].message), caught[0].message


def test_unknown_word_warnings_are_rate_limited_and_their_table_is_capped() -> None:
    from pipeline import builtin_text

    now = [0.0]
    enc = TagEncoder(BUILTIN_TAGS, clock=lambda: now[0])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for i in range(3000):  # random-word prompts at 80 per second for 37.5 s
            now[0] = i / 80
            enc.tags_of("qx" + "".join(chr(97 + (i // 26**k) % 26) for k in range(3)))  # qxaaa, qxbaa, ...
    # at most WARNINGS_PER_WINDOW per window, never a flood; the held-back count is summed up in the next warning
    windows = 3000 / 80 / builtin_text.WARNING_WINDOW_S
    assert len(caught) <= builtin_text.WARNINGS_PER_WINDOW * (int(windows) + 1), len(caught)
    assert any("more unknown words were not reported" in str(w.message) for w in caught)
    assert len(enc._warned) == builtin_text.WARNED_WORDS_CAP
