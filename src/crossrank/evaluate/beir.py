"""BEIR-format datasets: ``corpus.jsonl``, ``queries.jsonl``, ``qrels/{split}.tsv``.

A dataset is a local directory, or ``beir/NAME``: the public BEIR zip of NAME, downloaded once
into the cache (``$HF_HOME/crossrank/beir`` by default) and unpacked there.

The corpus is streamed (:meth:`BeirDataset.records`, the same reader ``crossrank index``
uses), never loaded whole: a document's text is its title and its text.
"""

from __future__ import annotations

import json
import logging
import shutil
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from crossrank.errors import DownloadFailed, InvalidInput
from crossrank.evaluate.lines import text_lines
from crossrank.progress import bar
from crossrank.retrieval.records import Record, read_records
from crossrank.texts import check_text

log = logging.getLogger(__name__)

BEIR_URL = "https://public.ukp.informatik.tu-darmstadt.de/thakur/BEIR/datasets"
#: datasets the BEIR authors host publicly (the others need a licence or a separate build)
PUBLIC_DATASETS = (
    "arguana", "climate-fever", "cqadupstack", "dbpedia-entity", "fever", "fiqa", "hotpotqa",
    "msmarco", "nfcorpus", "nq", "quora", "scidocs", "scifact", "trec-covid", "webis-touche2020",
)  # fmt: skip


def _read_jsonl(path: Path) -> Iterator[tuple[int, dict[str, object]]]:
    for number, line in text_lines(path):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (ValueError, RecursionError) as exc:  # RecursionError: nested deeper than Python parses
            raise InvalidInput(f"{path}:{number}: not valid JSON ({exc})") from None
        if not isinstance(record, dict) or "_id" not in record:
            raise InvalidInput(f"{path}:{number}: a BEIR record needs an '_id' field")
        yield number, record


class BeirDataset:
    """A BEIR-format dataset directory.

    >>> data = BeirDataset.open("datasets/scifact")  # doctest: +SKIP
    >>> qrels = data.qrels("test"); queries = data.queries(qrels)  # doctest: +SKIP
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.corpus_path = root / "corpus.jsonl"
        self.queries_path = root / "queries.jsonl"
        self.qrels_dir = root / "qrels"

    @classmethod
    def open(cls, path: str | Path) -> BeirDataset:
        root = Path(path)
        data = cls(root)
        missing = [p.name for p in (data.corpus_path, data.queries_path, data.qrels_dir) if not p.exists()]
        if missing:
            raise InvalidInput(
                f"{root} is not a BEIR dataset: missing {', '.join(missing)} (expected corpus.jsonl, "
                "queries.jsonl and qrels/SPLIT.tsv; or pass --dataset beir/NAME to download one)"
            )
        return data

    @property
    def name(self) -> str:
        return self.root.name

    def splits(self) -> list[str]:
        return sorted(p.stem for p in self.qrels_dir.glob("*.tsv"))

    def qrels(self, split: str) -> dict[str, dict[str, int]]:
        """query id -> document id -> grade, from ``qrels/{split}.tsv`` (header line skipped)."""
        path = self.qrels_dir / f"{split}.tsv"
        if not path.is_file():
            raise InvalidInput(f"{self.root} has no split {split!r} (available: {', '.join(self.splits()) or 'none'})")
        qrels: dict[str, dict[str, int]] = {}
        for number, line in text_lines(path):
            parts = line.rstrip("\r\n").split("\t")
            if number == 1 and parts[0].strip().lower() in ("query-id", "query_id", "qid"):
                continue
            if not line.strip():
                continue
            if len(parts) < 3:
                raise InvalidInput(f"{path}:{number}: expected 'query-id<TAB>corpus-id<TAB>score'")
            try:
                qrels.setdefault(parts[0], {})[parts[1]] = int(float(parts[2]))
            except ValueError as exc:
                raise InvalidInput(f"{path}:{number}: the score must be a number") from exc
        if not qrels:
            raise InvalidInput(f"{path} has no judgements")
        return qrels

    def queries(self, only: Iterable[str] | None = None) -> dict[str, str]:
        """query id -> text; with ``only``, just those ids (an id without a query is an error)."""
        wanted = None if only is None else set(only)
        queries: dict[str, str] = {}
        for number, record in _read_jsonl(self.queries_path):
            qid = str(record["_id"])
            if wanted is None or qid in wanted:
                queries[qid] = check_text(record.get("text"), f"{self.queries_path}:{number}: the query's 'text'")
        if wanted is not None and len(queries) != len(wanted):
            absent = sorted(wanted - queries.keys())
            raise InvalidInput(f"{len(absent)} judged queries are missing from {self.queries_path}: {absent[:5]}")
        return queries

    def records(self) -> Iterator[Record]:
        """The corpus, streamed: ``id`` and ``title`` + ``text`` (the index's BEIR reader)."""
        return read_records(self.corpus_path, format="beir")

    def corpus_size(self) -> int:
        with open(self.corpus_path, "rb") as handle:
            return sum(1 for line in handle if line.strip())


# -- download -----------------------------------------------------------------------------------
def beir_cache_dir(cache_dir: str | Path | None = None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir)
    from crossrank.models.export import default_cache_dir

    return default_cache_dir() / "beir"


def resolve_dataset(
    spec: str | Path,
    *,
    cache_dir: str | Path | None = None,
    base_url: str = BEIR_URL,
    timeout: float = 30.0,
    progress: bool = True,
) -> BeirDataset:
    """A local BEIR directory, or ``beir/NAME`` downloaded (once) into the cache.

    ``beir/NAME/PART`` selects a sub-dataset of an archive that holds several, such as
    ``beir/cqadupstack/android``.
    """
    text = str(spec)
    if not text.startswith("beir/"):
        return BeirDataset.open(text)
    name, _, part = text.removeprefix("beir/").strip("/").partition("/")
    if not name or name.startswith(".") or part.startswith(".") or "/" in part or "\\" in text:
        raise InvalidInput(f"--dataset {text}: expected beir/NAME (e.g. beir/scifact) or beir/NAME/PART")
    target = beir_cache_dir(cache_dir) / name
    if not target.is_dir():
        if name not in PUBLIC_DATASETS:
            log.warning("%s is not one of the public BEIR datasets (%s); trying anyway", name, ", ".join(PUBLIC_DATASETS))
        download_beir(name, target, base_url=base_url, timeout=timeout, progress=progress)
    root = target / part if part else target
    if not (root / "corpus.jsonl").is_file():
        parts = sorted(p.parent.name for p in target.glob("*/corpus.jsonl"))
        if parts:
            raise InvalidInput(f"beir/{name} holds several datasets: pass one of "
                               + ", ".join(f"beir/{name}/{p}" for p in parts))
    return BeirDataset.open(root)


def download_beir(name: str, target: Path, *, base_url: str, timeout: float, progress: bool) -> None:
    url = f"{base_url.rstrip('/')}/{name}.zip"
    target.parent.mkdir(parents=True, exist_ok=True)
    archive = target.parent / f"{name}.zip.part"
    log.info("downloading %s", url)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - https URL
            total = int(response.headers.get("Content-Length") or 0) or None
            meter = bar(total, f"beir/{name}", unit="B", enabled=progress, unit_scale=True, unit_divisor=1024)
            with open(archive, "wb") as out, meter:
                for chunk in iter(lambda: response.read(1 << 20), b""):
                    out.write(chunk)
                    meter.update(len(chunk))
    except urllib.error.HTTPError as exc:
        archive.unlink(missing_ok=True)
        raise DownloadFailed(
            f"cannot download BEIR dataset {name!r}: {url} answered HTTP {exc.code}. The public BEIR "
            f"datasets are: {', '.join(PUBLIC_DATASETS)}. {_offline_hint(name)}"
        ) from exc
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        archive.unlink(missing_ok=True)
        reason = getattr(exc, "reason", exc)
        raise DownloadFailed(
            f"cannot download BEIR dataset {name!r} from {url}: {reason}. This needs internet access. "
            + _offline_hint(name)
        ) from exc
    _unpack(archive, name, target)


def _offline_hint(name: str) -> str:
    return (
        f"Without it (or behind a proxy), download {name}.zip elsewhere, unzip it, and pass the "
        f"directory instead: crossrank eval --data /path/to/{name}"
    )


def _unpack(archive: Path, name: str, target: Path) -> None:
    staging = target.parent / f".{name}.unpacking"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        with zipfile.ZipFile(archive) as zipped:
            zipped.extractall(staging)
    except zipfile.BadZipFile as exc:
        raise DownloadFailed(f"the download of {name!r} is not a valid zip file; delete {archive} and retry") from exc
    finally:
        archive.unlink(missing_ok=True)
    inner = staging / name if (staging / name).is_dir() else staging
    if not (inner / "corpus.jsonl").is_file() and not any(inner.glob("*/corpus.jsonl")):
        shutil.rmtree(staging, ignore_errors=True)
        raise DownloadFailed(f"the BEIR archive for {name!r} has no corpus.jsonl")
    shutil.rmtree(target, ignore_errors=True)
    inner.rename(target)
    shutil.rmtree(staging, ignore_errors=True)
