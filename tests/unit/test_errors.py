"""The one error table: each exception class's HTTP status, whether its message may be shown to a
client, and the CLI exit code that follows from it."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from crossrank import errors
from crossrank.cli import main
from crossrank.errors import (
    ANSWERS,
    BadIndex,
    CrossrankError,
    IndexCorrupt,
    IndexUnusable,
    InvalidInput,
    ModelError,
    ModelLoadFailed,
    ModelNotFound,
    answer_of,
    exit_code,
)
from crossrank.retrieval import Record, build_index

CLASSES = [cls for _, cls in inspect.getmembers(errors, inspect.isclass) if issubclass(cls, CrossrankError)]


def test_no_row_of_the_table_is_shadowed_by_an_earlier_one() -> None:
    for i, (later, _) in enumerate(ANSWERS):
        for earlier, _ in ANSWERS[:i]:
            assert not issubclass(later, earlier), f"{later.__name__} is listed after its base {earlier.__name__}"


@pytest.mark.parametrize("cls", CLASSES, ids=lambda cls: cls.__name__)
def test_every_class_has_one_answer_and_5xx_are_hidden_unless_written_for_clients(cls: type[CrossrankError]) -> None:
    row = next(answer for base, answer in ANSWERS if issubclass(cls, base))
    assert 400 <= row.status < 600
    if row.status < 500:
        assert row.shown, f"{cls.__name__}: a client error must say what to fix"


def test_a_corrupt_index_is_a_hidden_server_failure_and_a_missing_one_is_the_callers() -> None:
    corrupt = IndexCorrupt("/srv/data/x.idx: docs.jsonl is unreadable; the index is corrupt")
    assert isinstance(corrupt, BadIndex) and not isinstance(corrupt, InvalidInput)
    assert answer_of(corrupt) == (500, False) and exit_code(corrupt) == 1
    missing = IndexUnusable("no index at /tmp/x.idx")
    assert isinstance(missing, BadIndex) and isinstance(missing, InvalidInput)
    assert answer_of(missing) == (422, True) and exit_code(missing) == 2


def _load_failure(cause: CrossrankError) -> ModelLoadFailed:
    try:
        raise ModelLoadFailed(f"model 'm' failed to load: {cause}") from cause
    except ModelLoadFailed as exc:
        return exc


def test_a_model_that_fails_to_load_is_answered_as_what_stopped_it() -> None:
    assert exit_code(_load_failure(ModelNotFound("/no/such/model does not exist"))) == 2
    assert exit_code(_load_failure(InvalidInput("the model takes no instruction"))) == 2
    assert answer_of(_load_failure(ModelError("the export crashed"))) == (500, False)
    assert exit_code(_load_failure(ModelError("the export crashed"))) == 1


def test_the_cli_exit_code_comes_from_the_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("tantivy")
    path = tmp_path / "docs.idx"
    assert main(["search", str(tmp_path / "missing.idx"), "clogs", "--no-rerank"]) == 2
    assert "no index at" in capsys.readouterr().err
    build_index(path, [Record("a", "clogs for kids")])
    generation = next(path.glob("gen-*"))
    (generation / "manifest.json").write_text("{not json")
    assert main(["search", str(path), "clogs", "--no-rerank"]) == 1
    err = capsys.readouterr().err
    assert "error:" in err and "corrupt" in err and str(path) in err and "Traceback" not in err
