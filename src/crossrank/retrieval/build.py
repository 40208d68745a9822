"""Build or extend an index from a stream of records, atomically.

Records flow in batches: each batch is stored, added to the lexical index (tantivy, which
spills segments to disk within a fixed heap) and, when an encoder is given, embedded and
added to the vector index (usearch HNSW). Only one batch of texts is held at a time. The
whole build happens in a temporary directory that is published with an atomic rename at
the end (see :mod:`crossrank.retrieval.layout`).

Upserts and deletes (``mode="upsert"``, :func:`delete_documents`) write a new generation the
same way, from the previous one plus the changes: tantivy segments are hard-linked and the
replaced or deleted documents marked deleted in them, the vectors are loaded, changed and
saved whole, and the document store is copied, appended to and its dead ordinals listed.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from crossrank.encode import Encoder
from crossrank.errors import InvalidInput
from crossrank.extras import require
from crossrank.retrieval import layout
from crossrank.retrieval.docstore import DocStore, DocStoreWriter, read_deleted
from crossrank.retrieval.fields import add_schema_fields, add_to_document
from crossrank.retrieval.records import Record

log = logging.getLogger(__name__)

BuildMode = Literal["replace", "add", "upsert"]
TEXT_FIELD = "text"
ORD_FIELD = "ord"
LEXICAL_TOKENIZER = "en_stem"


@dataclass
class BuildReport:
    """What a build did."""

    path: Path
    added: int = 0
    total: int = 0
    duplicates: int = 0
    replaced: int = 0  #: upsert: documents whose id was already there (their old version is gone)
    deleted: int = 0  #: delete: documents removed
    missing: int = 0  #: delete: ids that were not in the index
    seconds: float = 0.0
    dense: bool = False
    generation: str = ""

    @property
    def docs_per_second(self) -> float:
        return self.added / self.seconds if self.seconds > 0 else 0.0


def encoder_description(encoder: Encoder, model: str | None = None) -> dict[str, Any]:
    """What the manifest records about the bi-encoder, so search can reload and check it."""
    return {
        "model": str(model) if model is not None else encoder.name,
        "dim": int(encoder.dim),
        "pooling": encoder.pooling,
        "normalize": bool(encoder.normalize),
        "metric": "cos" if encoder.normalize else "ip",
    }


def lexical_schema(store: Sequence[str] = ()) -> Any:
    """BM25 text, the ordinal (indexed, so documents can be deleted by it) and the filter fields."""
    tantivy = require("tantivy", "index", "BM25 indexing")
    builder = tantivy.SchemaBuilder()
    builder.add_text_field(TEXT_FIELD, stored=False, tokenizer_name=LEXICAL_TOKENIZER, index_option="freq")
    builder.add_unsigned_field(ORD_FIELD, stored=True, indexed=True, fast=True)
    add_schema_fields(builder, store)
    return builder.build()


def lexical_analyzer() -> Any:
    """The analyzer of tantivy's ``en_stem`` tokenizer (the lexical field's), to cut queries the same way."""
    tantivy = require("tantivy", "index", "BM25 search")
    builder = tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.simple())
    for step in (tantivy.Filter.remove_long(40), tantivy.Filter.lowercase(), tantivy.Filter.stemmer("english")):
        builder = builder.filter(step)
    return builder.build()


def new_vector_index(description: dict[str, Any]) -> Any:
    usearch = require("usearch.index", "index", "dense indexing")
    return usearch.Index(ndim=int(description["dim"]), metric=description["metric"], dtype="f32",
                         connectivity=16, expansion_add=128, expansion_search=256)


def build_index(
    path: str | Path,
    records: Iterable[Record],
    *,
    encoder: Encoder | None = None,
    encoder_model: str | None = None,
    mode: BuildMode = "replace",
    store: Sequence[str] = (),
    batch_size: int = 256,
    heap_mb: int = 256,
    progress: Callable[[int], None] | None = None,
) -> BuildReport:
    """Index ``records`` at ``path`` and publish the result atomically.

    ``mode="replace"`` builds a new index (replacing any previous one only when complete);
    ``mode="add"`` appends to the existing one, rejecting ids it already holds. When the
    existing index has vectors, ``encoder`` must produce vectors of the same dimension
    (if omitted, the encoder recorded in the index is loaded). ``encoder_model`` is the
    name or path written to the manifest so that search can reload the encoder.
    ``progress`` is called with the number of records handled in each batch.
    ``mode="upsert"`` adds new ids and replaces the documents (text, fields, vector) of ids
    already there. ``store`` names the record fields kept and filterable (``Record.fields``);
    adding to or upserting into an index keeps the fields it was built with.
    """
    if mode not in ("replace", "add", "upsert"):
        raise InvalidInput("mode must be 'replace', 'add' or 'upsert'")
    if batch_size < 1:
        raise InvalidInput("batch_size must be at least 1")

    def run(writer: _GenerationWriter) -> None:
        for batch in batched(records, batch_size):
            writer.add(batch, upsert=mode == "upsert")

    return _write_generation(path, mode, encoder, encoder_model, list(store), heap_mb, progress, run)


def delete_documents(path: str | Path, ids: Iterable[str], *, heap_mb: int = 64) -> BuildReport:
    """Remove the documents with these ids from every part of the index, publishing a new generation.

    Ids that are not in the index are counted in ``missing``.
    """
    if isinstance(ids, (str, bytes)):
        raise InvalidInput("delete takes a list of ids, not one string")
    def run(writer: _GenerationWriter) -> None:
        for batch in batched(ids, 1024):
            writer.delete(batch)

    return _write_generation(path, "delete", None, None, [], heap_mb, None, run)


def _write_generation(
    path: str | Path,
    mode: str,
    encoder: Encoder | None,
    encoder_model: str | None,
    store: list[str],
    heap_mb: int,
    progress: Callable[[int], None] | None,
    changes: Callable[[_GenerationWriter], None],
) -> BuildReport:
    require("tantivy", "index", "BM25 indexing")
    root = Path(path)
    started = time.perf_counter()
    if mode != "replace":
        layout.live_generation(root)  # refuse before the lock creates a directory where there is no index
    with layout.writer_lock(root):
        previous: Path | None = None
        previous_manifest: dict[str, Any] = {}
        if mode != "replace":
            previous = layout.live_generation(root)
            previous_manifest = layout.read_manifest(previous)
            store = _store_for_update(root, previous_manifest, store, mode)
            encoder, description = _encoder_for_add(previous_manifest, encoder, encoder_model, load=mode != "delete")
        else:
            description = encoder_description(encoder, encoder_model) if encoder is not None else None
        build = layout.new_build_dir(root)
        generation: _GenerationWriter | None = None
        try:
            generation = _GenerationWriter(build, previous, description, encoder, heap_mb, store, progress)
            changes(generation)
            total = generation.finish(created=previous_manifest.get("created"))
        except BaseException:
            if generation is not None:
                generation.abandon()  # the engine's threads write into the build until stopped
            shutil.rmtree(build, ignore_errors=True)
            raise
        report = BuildReport(path=root, added=generation.added, total=total, duplicates=generation.duplicates,
                             replaced=generation.replaced, deleted=generation.deleted, missing=generation.missing,
                             dense=description is not None)
        report.generation = layout.publish(root, build).name
    report.seconds = time.perf_counter() - started
    log.info("%s: %d added, %d replaced, %d deleted (%d in total) in %.1fs", mode, report.added, report.replaced,
             report.deleted, report.total, report.seconds)
    return report


def _store_for_update(root: Path, manifest: dict[str, Any], store: list[str], mode: str) -> list[str]:
    kept = [str(p) for p in manifest.get("store") or []]
    if store and store != kept:
        raise InvalidInput(f"{root} stores the fields {kept or 'none'}; {mode} keeps them (got --store "
                           f"{','.join(store)}). Rebuild the index to store other fields")
    if mode in ("upsert", "delete") and not manifest.get("updatable"):
        raise InvalidInput(f"{root} was built before documents could be replaced or deleted; rebuild it once "
                           "(crossrank index CORPUS INDEX) to upsert or delete")
    return kept


class _GenerationWriter:
    """Writes one complete generation into a build directory, invisible to readers until published."""

    def __init__(
        self,
        build: Path,
        previous: Path | None,
        description: dict[str, Any] | None,
        encoder: Encoder | None,
        heap_mb: int,
        fields: list[str],
        progress: Callable[[int], None] | None,
    ) -> None:
        self.tantivy = require("tantivy", "index", "BM25 indexing")
        self.build = build
        self.description = description
        self.encoder = encoder
        self.fields = fields
        self.progress = progress
        self.added = self.duplicates = self.replaced = self.deleted = self.missing = 0
        self.store = DocStoreWriter(build, start_from=previous)
        #: id -> ordinal of every live document
        self.ords: dict[str, int] = {}
        if previous is not None:
            dead = {int(x) for x in read_deleted(previous)}
            docs = DocStore(previous)
            try:
                self.ords = {doc_id: o for o, doc_id in enumerate(docs.iter_ids()) if o not in dead}
            finally:
                docs.close()
        lexical_dir = build / layout.LEXICAL_DIR
        if previous is not None:
            layout.link_or_copy_tree(previous / layout.LEXICAL_DIR, lexical_dir)
            index = self.tantivy.Index.open(str(lexical_dir))
        else:
            lexical_dir.mkdir()
            index = self.tantivy.Index(lexical_schema(fields), path=str(lexical_dir))
        self.schema = index.schema
        self.writer = index.writer(heap_size=max(heap_mb, 16) * 1_000_000, num_threads=1)
        self.vectors = None
        if description is not None:
            self.vectors = new_vector_index(description)
            if previous is not None and (previous / layout.VECTORS_FILE).is_file():
                self.vectors.load(str(previous / layout.VECTORS_FILE))

    def add(self, batch: list[Record], *, upsert: bool = False) -> None:
        """Add the records of ``batch``; an id already present is skipped, or replaced when ``upsert``."""
        fresh: dict[str, Record] = {}
        for record in batch:
            if not upsert and (record.id in self.ords or record.id in fresh):
                self.duplicates += 1
                continue
            fresh.pop(record.id, None)  # upsert: the last version of an id wins
            fresh[record.id] = record
        replaced = [doc_id for doc_id in fresh if doc_id in self.ords]
        self.replaced += len(replaced)
        self._remove([self.ords.pop(doc_id) for doc_id in replaced])
        records = list(fresh.values())
        if records:
            ords = [self.store.add(r.id, r.text, r.fields) for r in records]
            for ordinal, record in zip(ords, records):
                self.ords[record.id] = ordinal
                document = self.tantivy.Document()
                document.add_text(TEXT_FIELD, record.text)
                document.add_unsigned(ORD_FIELD, ordinal)
                add_to_document(document, record.fields, self.fields)
                self.writer.add_document(document)
            if self.vectors is not None and self.encoder is not None:
                self.vectors.add(np.asarray(ords, dtype=np.uint64), self.encoder.embed([r.text for r in records]))
            self.added += len(records) - len(replaced)
        if self.progress is not None:
            self.progress(len(batch))

    def delete(self, ids: list[str]) -> None:
        """Remove the documents of these ids (unknown ids are counted in ``missing``)."""
        unique = list(dict.fromkeys(ids))
        ords = [self.ords.pop(doc_id) for doc_id in unique if doc_id in self.ords]
        self.missing += len(unique) - len(ords)
        self.deleted += len(ords)
        self._remove(ords)

    def _remove(self, ords: list[int]) -> None:
        if not ords:
            return
        self.writer.delete_documents_by_query(self.tantivy.Query.term_set_query(self.schema, ORD_FIELD, ords))
        if self.vectors is not None:
            self.vectors.remove(np.asarray(ords, dtype=np.uint64))
        for ordinal in ords:
            self.store.delete(ordinal)

    def abandon(self) -> None:
        """Stop every writer, so that nothing creates files in the build while it is removed."""
        for stop in (self.writer.rollback, self.writer.wait_merging_threads, self.store.close):
            try:
                stop()
            except Exception:  # noqa: BLE001 - already failing; the build is removed next
                log.debug("while abandoning %s", self.build, exc_info=True)

    def finish(self, *, created: str | None) -> int:
        """Commit every part and write the manifest; returns the number of documents."""
        self.writer.commit()
        self.writer.wait_merging_threads()
        self.store.close()
        if self.vectors is not None:
            self.vectors.save(str(self.build / layout.VECTORS_FILE))
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        layout.write_manifest(
            self.build,
            {
                "files": layout.file_sizes(self.build),
                "documents": self.store.count,
                "deleted": len(self.store.deleted),
                "store": self.fields,
                "updatable": True,
                "lexical": {"engine": "tantivy", "tokenizer": LEXICAL_TOKENIZER, "version": _version(self.tantivy)},
                "dense": self.description,
                "created": created or now,
                "updated": now,
            },
        )
        return self.store.live


def _encoder_for_add(
    manifest: dict[str, Any], encoder: Encoder | None, encoder_model: str | None, *, load: bool = True
) -> tuple[Encoder | None, dict[str, Any] | None]:
    recorded = manifest.get("dense")
    if recorded is None:
        if encoder is not None:
            raise InvalidInput("this index has no vectors; dense retrieval cannot be added to it (rebuild it)")
        return None, None
    if encoder is None and not load:  # deleting needs no encoder
        return None, dict(recorded)
    if encoder is None:
        encoder = Encoder(recorded["model"])
    if int(encoder.dim) != int(recorded["dim"]):
        raise InvalidInput(
            f"encoder dimension {encoder.dim} does not match the index ({recorded['dim']}, "
            f"built with {recorded['model']})"
        )
    return encoder, dict(recorded)


def batched(records: Iterable[Any], size: int) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for record in records:
        batch.append(record)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _version(module: Any) -> str:
    return str(getattr(module, "__version__", "unknown"))
