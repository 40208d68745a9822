"""First stages that live in the engines users already run, behind :class:`~crossrank.retrieval.Retriever`.

Each module imports its client only when used; a missing client raises
:class:`~crossrank.errors.MissingExtra` naming the pip extra (``qdrant``, ``postgres``,
``elasticsearch``).
"""
