"""``crossrank demo``: rerank the seed examples and print the rankings."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from crossrank.cli.common import DEFAULT_MODEL, add_reranker_options, reranker_kwargs
from crossrank.cli.rerank import print_ranking
from crossrank.errors import HubUnavailable
from crossrank.models.export import default_cache_dir
from crossrank.rerank import Reranker

PRODUCTS_QUERY = "crocs"
PRODUCTS = [
    "Crocs Jibbitz 5-Pack Alien Shoe Charms",
    "Crocs Specialist Vent Work",
    "Crocs Kids' Baya Clog",
]

MOVIES_QUERY = "A story about a strong historically significant female figure."
MOVIES = [
    "A young farm boy becomes a pilot and joins a rebellion against a galactic empire.",
    "In 1431, Jeanne d'Arc is put on trial for heresy; church judges try to make the young "
    "woman who led the French army deny her visions.",
    "Two detectives hunt a serial killer who chooses his victims after the seven deadly sins.",
    "A clownfish father crosses the ocean to find his son, who was taken by a diver.",
    "A retired hitman comes back to take revenge on the gangsters who killed his dog.",
    "An astronaut stranded on Mars grows potatoes to survive until a rescue mission arrives.",
    "A toy cowboy feels threatened when a new space ranger toy becomes the boy's favourite.",
    "A group of friends sets out on a road trip across the desert to a music festival.",
]

BANNER = """\
################################################################################
#  The Hugging Face hub cannot be reached, so this demo uses a LOCAL DEMO MODEL  #
#  WITH RANDOM WEIGHTS that it built itself. Its scores are MEANINGLESS: the     #
#  order below shows the pipeline working, not relevance. For real rankings,    #
#  run with network access, or pass a downloaded model: --model /path/to/model  #
################################################################################"""


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "demo",
        help="rerank the README's examples (products and movies)",
        description=(
            "Rerank two small examples: the query 'crocs' over three products, and a movie "
            "search where the Jeanne d'Arc description should come first. Uses "
            f"{DEFAULT_MODEL} from the hub; offline, it falls back to a clearly labelled "
            "random-weight demo model it builds locally (needs crossrank[export])."
        ),
    )
    add_reranker_options(parser)
    parser.set_defaults(handler=run)


def demo_model_dir() -> Path:
    """Build (once) the random-weight stand-in used when the hub is unreachable."""
    from crossrank.models.synthetic import build_random_model

    directory = default_cache_dir() / "demo-model"
    if not (directory / "model.safetensors").is_file():
        build_random_model(directory, layers=6, initializer_range=0.2)
    return directory


def run(args: argparse.Namespace) -> int:
    kwargs = reranker_kwargs(args)
    label = ""
    try:
        reranker = Reranker(args.model, **kwargs)
    except HubUnavailable as exc:
        if args.model != DEFAULT_MODEL:
            raise
        print(f"note: {exc}\n", file=sys.stderr)
        print(BANNER)
        reranker = Reranker(demo_model_dir(), **kwargs)
        label = "  [LOCAL DEMO MODEL, RANDOM WEIGHTS: scores are meaningless]"
    print(f"\nmodel: {reranker.name}{label}\n")
    for query, docs in ((PRODUCTS_QUERY, PRODUCTS), (MOVIES_QUERY, MOVIES)):
        print(f"query: {query!r}")
        print_ranking(reranker.rank(query, docs), as_json=False)
        print()
    return 0
