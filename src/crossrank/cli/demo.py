"""``crossrank demo``: rerank the seed examples and print the rankings."""

from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
from pathlib import Path
from typing import Any

from crossrank.cli.common import DEFAULT_MODEL, add_reranker_options, reranker_kwargs
from crossrank.cli.rerank import print_ranking
from crossrank.errors import HubUnavailable, MissingExtra
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

PIPELINE_QUERY = "clogs for kids"
_BRANDS = ("Crocs", "Birkenstock", "Skechers", "Keen", "Merrell", "Teva", "Columbia", "Adidas")
_ITEMS = (
    "Kids' Classic Clog", "Unisex Adult Clog", "Women's Sandal", "Men's Hiking Boot",
    "Kids' Waterproof Rain Boot", "Slip-On Work Shoe", "Running Sneaker", "Shoe Charms 5-Pack",
    "Toddler Beach Sandal", "Insulated Winter Boot", "Flip Flop", "Leather Loafer",
)
_COLOURS = ("Black", "Navy", "Pink", "Lime", "White", "Grey")

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
    pipeline_demo(reranker)
    return 0


def demo_catalogue() -> list[tuple[str, str]]:
    """(id, title) of a small generated shoe catalogue, in the seed's ESCI style."""
    titles = [
        f"{brand} {item}, {colour}"
        for (brand, item), colour in zip(itertools.product(_BRANDS, _ITEMS), itertools.cycle(_COLOURS))
    ]
    return [(f"P{i:04d}", title) for i, title in enumerate(titles)]


def pipeline_demo(reranker: Reranker) -> None:
    """Index the catalogue (BM25 + all-MiniLM-L6-v2 vectors), retrieve hybrid, rerank, print."""
    from crossrank.cli.search import print_result
    from crossrank.encode import Encoder
    from crossrank.models.synthetic import trained_minilm_dir
    from crossrank.retrieval import Index, Pipeline
    from crossrank.retrieval.build import build_index
    from crossrank.retrieval.records import Record

    try:
        minilm = trained_minilm_dir()
        encoder = Encoder(minilm)
        records = [Record(doc_id, title) for doc_id, title in demo_catalogue()]
        with tempfile.TemporaryDirectory(prefix="crossrank-demo-") as tmp:
            report = build_index(f"{tmp}/catalogue", records, encoder=encoder, encoder_model=str(minilm))
            print(f"retrieve & re-rank: indexed {report.total} products (BM25 + all-MiniLM-L6-v2 "
                  f"vectors) in {report.seconds:.1f} s")
            retriever = Index.open(f"{tmp}/catalogue").retriever("hybrid", encoder=encoder)
            print(f"query: {PIPELINE_QUERY!r} (hybrid first stage, top 20 reranked)")
            print_result(Pipeline(retriever, reranker).search(PIPELINE_QUERY, candidates=20, top_k=5), False)
    except MissingExtra as exc:
        print(f"(skipping the retrieve & re-rank part: {exc})")
