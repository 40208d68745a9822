"""Exact-mode scores of every scoring head against golden values (see tests/golden_models.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from golden_models import GOLDEN, MODELS, build, compare, logits, read_golden

HOW_TO_UPDATE = ("If the change of scores is intended, regenerate the golden file and say why in the commit:\n"
                 "    PYTHONPATH=src python -m tests.golden_models --update")


def test_the_golden_file_covers_every_model() -> None:
    assert sorted(read_golden()) == sorted(MODELS), f"{GOLDEN} and MODELS differ.\n{HOW_TO_UPDATE}"


@pytest.mark.parametrize("name", list(MODELS))
def test_exact_scores_match_the_golden_file(name: str, tmp_path_factory: pytest.TempPathFactory,
                                            model_cache: Path) -> None:
    got = logits(name, build(name, tmp_path_factory.mktemp(f"golden-{name}")), model_cache)
    problem = compare(read_golden()[name], got)
    assert problem is None, f"{name}: exact-mode logits differ from {GOLDEN}:\n{problem}\n{HOW_TO_UPDATE}"


def test_two_builds_from_the_same_seed_are_identical(tmp_path: Path) -> None:
    first, second = build("bert-two-labels", tmp_path / "a"), build("bert-two-labels", tmp_path / "b")
    for name in ("config.json", "model.safetensors"):
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
