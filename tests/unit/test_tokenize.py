import threading
from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer

from crossrank.tokenize import PairTokenizer, load_tokenizer, pad_batch, plan_batches


@pytest.fixture(scope="module")
def pair_tokenizer(minilm_dir: Path) -> PairTokenizer:
    return PairTokenizer(load_tokenizer(minilm_dir), max_length=32)


def _decode_parts(tok: PairTokenizer, ids: list[int], type_ids: list[int]) -> tuple[list[int], list[int]]:
    query = [i for i, t in zip(ids, type_ids) if t == 0]
    doc = [i for i, t in zip(ids, type_ids) if t == 1]
    return query, doc


def test_truncation_keeps_the_whole_query_and_cuts_the_document(pair_tokenizer: PairTokenizer) -> None:
    query = "where can i buy crocs clogs"
    doc = " ".join(f"word{i}" for i in range(200))
    rows = pair_tokenizer.encode([(query, doc), (query, "short doc")])
    assert rows.truncated.tolist() == [True, False]
    assert len(rows.ids[0]) == 32
    plain = Tokenizer.from_str(pair_tokenizer._json)
    plain.no_truncation()
    full = plain.encode(query, doc)
    q_full, _ = _decode_parts(pair_tokenizer, full.ids, full.type_ids)
    q_cut, d_cut = _decode_parts(pair_tokenizer, rows.ids[0], rows.type_ids[0])
    assert q_cut == q_full  # every query token (with [CLS] and [SEP]) kept
    assert 0 < len(d_cut) < len(full.ids) - len(q_full)


def test_an_over_long_query_is_cut_to_half_the_budget(pair_tokenizer: PairTokenizer) -> None:
    rows = pair_tokenizer.encode([("query " * 100, "the document")])
    assert len(rows.ids[0]) <= 32
    _, doc = _decode_parts(pair_tokenizer, rows.ids[0], rows.type_ids[0])
    assert len(doc) >= 3  # "the", "document", [SEP]


def test_very_long_documents_are_cut_before_tokenizing_with_the_same_result(minilm_dir: Path) -> None:
    tok = PairTokenizer(load_tokenizer(minilm_dir), max_length=512)
    doc = "lorem ipsum dolor sit amet " * 20_000  # 540k characters
    rows = tok.encode([("q", doc)])
    plain = Tokenizer.from_str(tok._json)
    plain.enable_truncation(512, strategy="only_second")
    assert rows.ids[0] == plain.encode("q", doc).ids
    assert rows.truncated.tolist() == [True]


def test_windows_cover_the_whole_document(pair_tokenizer: PairTokenizer) -> None:
    doc = " ".join(f"w{i}" for i in range(100))
    rows = pair_tokenizer.encode_windows([("q", doc), ("q", "short")], stride=8)
    assert rows.owner.tolist().count(1) == 1
    windows = [i for i, o in enumerate(rows.owner) if o == 0]
    assert len(windows) > 2
    assert all(len(rows.ids[i]) <= 32 for i in windows)
    limited = pair_tokenizer.encode_windows([("q", doc)], stride=8, max_windows=2)
    assert len(limited.ids) == 2 and limited.truncated.tolist() == [True]


def test_plan_batches_sorts_by_length_and_respects_the_token_budget() -> None:
    lengths = np.array([50, 3, 40, 4, 5, 41, 2])
    batches = plan_batches(lengths, batch_size=3, max_tokens=90)
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(len(lengths)))
    assert lengths[flat].tolist() == sorted(lengths.tolist())
    for b in batches:
        assert len(b) <= 3
        assert len(b) == 1 or len(b) * lengths[b].max() <= 90


def test_pad_batch_pads_to_the_longest_row(pair_tokenizer: PairTokenizer) -> None:
    rows = pair_tokenizer.encode([("q", "a b c d e f"), ("q", "a")])
    feed = pad_batch(rows, [0, 1], pad_id=0)
    assert feed["input_ids"].shape == (2, len(rows.ids[0]))
    assert feed["attention_mask"].sum(axis=1).tolist() == [len(rows.ids[0]), len(rows.ids[1])]
    assert feed["input_ids"][1, len(rows.ids[1]):].tolist() == [0] * (len(rows.ids[0]) - len(rows.ids[1]))


def test_single_texts_are_truncated_to_max_length(pair_tokenizer: PairTokenizer) -> None:
    rows = pair_tokenizer.encode_texts(["word " * 100, "short text"])
    assert len(rows.ids[0]) == 32 and rows.truncated.tolist() == [True, False]


def test_each_thread_gets_its_own_tokenizer(pair_tokenizer: PairTokenizer) -> None:
    seen: dict[int, Tokenizer] = {}
    barrier = threading.Barrier(4)

    def work(n: int) -> None:
        seen[n] = pair_tokenizer._tokenizer()
        barrier.wait()  # all four threads alive at once

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(t) for t in seen.values()}) == 4


def test_cut_texts_keeps_exactly_the_first_tokens(pair_tokenizer: PairTokenizer) -> None:
    raw = Tokenizer.from_str(pair_tokenizer._json)
    raw.no_truncation()
    raw.no_padding()
    texts = ["crocs clog " * 20, "short", "Crocs Jibbitz 5-Pack Alien Shoe Charms", ""]
    for text, cut in zip(texts, pair_tokenizer.cut_texts(texts, 4)):
        full = raw.encode(text, add_special_tokens=False).ids
        assert raw.encode(cut, add_special_tokens=False).ids == full[:4]
    with pytest.raises(Exception, match="at least 1"):
        pair_tokenizer.cut_texts(["x"], 0)


# -- reading only the head of a long text ---------------------------------------------------------
_MIXED = ("crocs clog sandal, boot. leather-kids unaffable classic's naïve 字字 \U0001f40a x123 comfort "
          "Schuhgröße ÉTÉ  tab\there").split(" ")


@pytest.mark.parametrize("fixture", ["minilm_dir", "xlmr_dir"])
def test_reading_the_head_of_a_text_gives_the_whole_texts_tokens(fixture: str, request: pytest.FixtureRequest) -> None:
    """Pairs, windows, single texts and cuts read only a head of each text; every result equals
    the one from the whole text (WordPiece and Unigram tokenizers, many scripts, texts from a few
    words to far past the heads)."""
    tok = PairTokenizer(load_tokenizer(request.getfixturevalue(fixture)), max_length=32)

    def plain(**truncation: object) -> Tokenizer:
        t = Tokenizer.from_str(tok._json)
        t.no_padding()
        t.enable_truncation(**truncation) if truncation else t.no_truncation()  # type: ignore[arg-type]
        return t

    pair, window = plain(max_length=32, strategy="only_second"), plain(max_length=32, strategy="only_second", stride=8)
    raw, single = plain(), plain(max_length=32)
    rng = np.random.default_rng(3)
    for n in (3, 40, 300, 2000):
        for _ in range(4):
            doc = " ".join(rng.choice(_MIXED, n))
            query = " ".join(rng.choice(_MIXED, int(rng.choice([2, 40]))))
            fitted = tok.fit_queries([query])[0][0]
            whole = pair.encode(fitted, doc)
            rows = tok.encode([(query, doc)])
            assert rows.ids[0] == whole.ids
            assert rows.truncated[0] == (bool(whole.overflowing) or fitted != query)
            windows = int(rng.choice([1, 2, 5]))
            whole = window.encode(fitted, doc)
            rows = tok.encode_windows([(query, doc)], 8, windows)
            assert rows.ids == [w.ids for w in [whole, *whole.overflowing][:windows]]
            k = int(rng.choice([1, 7, 40]))
            full = raw.encode(doc, add_special_tokens=False)
            assert tok.cut_texts([doc], k) == [doc if len(full.ids) <= k else doc[: full.offsets[k - 1][1]]]
            whole = single.encode(doc)
            rows = tok.encode_texts([doc])
            assert rows.ids[0] == whole.ids and rows.truncated[0] == bool(whole.overflowing)


def test_a_text_of_few_tokens_in_many_characters_is_read_up_to_a_bound_and_flagged(pair_tokenizer: PairTokenizer) -> None:
    """A run of hundreds of characters per token (one 'word' of 1 MB) is read up to a bound, and
    the pair is flagged as cut, since what follows was not read."""
    doc = "a" * 1_000_000 + " crocs"
    rows = pair_tokenizer.encode([("q", doc)])
    assert rows.truncated.tolist() == [True]
    assert pair_tokenizer.encode_texts([doc]).truncated.tolist() == [True]


def test_a_cut_query_is_flagged_like_a_cut_document(pair_tokenizer: PairTokenizer) -> None:
    long_query = "where can i buy " + "crocs clogs " * 40
    rows = pair_tokenizer.encode([(long_query, "short doc"), ("crocs", "short doc")])
    assert rows.truncated.tolist() == [True, False]
    windows = pair_tokenizer.encode_windows([(long_query, "short doc"), ("crocs", "short doc")], stride=4)
    assert windows.truncated.tolist() == [True, False]
    assert pair_tokenizer.fit_queries([long_query, "crocs"])[1] == ("crocs", False)


def test_windows_per_document_are_capped(minilm_dir: Path) -> None:
    tok = PairTokenizer(load_tokenizer(minilm_dir), max_length=512)
    assert tok.max_windows == 128
    doc = "crocs clog sandal boot leather " * 200_000  # 1 M words: thousands of windows
    rows = tok.encode_windows([("q", doc)], stride=128)
    assert len(rows.ids) == tok.max_windows and rows.truncated.tolist() == [True]
    assert len(tok.encode_windows([("q", doc)], stride=128, max_windows=500).ids) == tok.max_windows
