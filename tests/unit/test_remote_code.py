"""Custom-code models (config.json ``auto_map``) run only with the explicit trust_remote_code opt-in."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from crossrank import Reranker
from crossrank.cli.common import add_reranker_options, reranker_kwargs
from crossrank.errors import InvalidInput, ModelError
from crossrank.models.export import cached_export
from crossrank.models.resolve import resolve_model
from crossrank.server.config import model_entry

DOCS = ["Crocs Kids' Baya Clog", "Crocs Specialist Vent Work", "lemon cake"]

CONFIGURATION = '''
from transformers import BertConfig


class CustomConfig(BertConfig):
    model_type = "crossrank-custom-bert"
'''
MODELING = '''
from transformers import BertForSequenceClassification

from .configuration_custom import CustomConfig


class CustomForSequenceClassification(BertForSequenceClassification):
    config_class = CustomConfig
'''


def _custom_code(directory: Path) -> Path:
    """Rewrite ``directory``'s config so that transformers needs the repository's own Python code."""
    (directory / "configuration_custom.py").write_text(CONFIGURATION, encoding="utf-8")
    (directory / "modeling_custom.py").write_text(MODELING, encoding="utf-8")
    config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
    config.update(
        model_type="crossrank-custom-bert",
        architectures=["CustomForSequenceClassification"],
        auto_map={
            "AutoConfig": "configuration_custom.CustomConfig",
            "AutoModelForSequenceClassification": "modeling_custom.CustomForSequenceClassification",
        },
    )
    (directory / "config.json").write_text(json.dumps(config), encoding="utf-8")
    return directory


@pytest.fixture()
def custom_dir(bert_dir: Path, tmp_path: Path, isolated_hf_home: Path) -> Path:
    """bert_dir's weights behind a custom-code config (transformers caches the module under HF_HOME)."""
    return _custom_code(Path(shutil.copytree(bert_dir, tmp_path / "custom")))


def test_custom_code_is_refused_without_the_opt_in_naming_it(custom_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelError) as caught:
        Reranker(custom_dir, cache_dir=tmp_path / "cache")
    message = str(caught.value)
    assert "auto_map" in message and "modeling_custom.CustomForSequenceClassification" in message
    assert "trust_remote_code=True" in message and "--trust-remote-code" in message
    assert "runs the Python code" in message
    assert not list((tmp_path / "cache").glob("onnx/*/model.onnx"))  # nothing was exported


def test_the_torch_runtime_refuses_it_too(custom_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="--trust-remote-code"):
        Reranker(custom_dir, cache_dir=tmp_path / "cache", runtime="torch")


def test_with_the_opt_in_the_custom_code_runs_and_scores_as_the_plain_model(
    custom_dir: Path, bert_dir: Path, model_cache: Path, tmp_path: Path
) -> None:
    custom = Reranker(custom_dir, cache_dir=tmp_path / "cache", trust_remote_code=True).score("crocs", DOCS)
    plain = Reranker(bert_dir, cache_dir=model_cache).score("crocs", DOCS)
    assert np.allclose(custom, plain, atol=1e-6)


def test_a_repository_that_ships_its_onnx_file_needs_no_opt_in(
    custom_dir: Path, bert_dir: Path, model_cache: Path, tmp_path: Path
) -> None:
    (custom_dir / "onnx").mkdir()
    exported = cached_export(resolve_model(bert_dir), task="sequence-classification", cache_dir=model_cache)
    shutil.copy(exported, custom_dir / "onnx" / "model.onnx")
    scores = Reranker(custom_dir, cache_dir=tmp_path / "cache").score("crocs", DOCS)
    assert np.allclose(scores, Reranker(bert_dir, cache_dir=model_cache).score("crocs", DOCS), atol=1e-6)


def test_cli_flag_and_server_key_carry_the_opt_in() -> None:
    import argparse

    parser = argparse.ArgumentParser()
    add_reranker_options(parser)
    assert reranker_kwargs(parser.parse_args([]))["trust_remote_code"] is False
    assert reranker_kwargs(parser.parse_args(["--trust-remote-code"]))["trust_remote_code"] is True
    assert "Python code" in parser.format_help()
    assert model_entry("m", {"model": "x", "trust_remote_code": True}).trust_remote_code is True
    assert model_entry("m", {"model": "x"}).trust_remote_code is False
    with pytest.raises(InvalidInput, match="trust_remote_code"):
        model_entry("m", {"model": "x", "trust_remote_code": "yes"})
