"""Rerankers for the RAG frameworks, each in its own optional module.

- :mod:`crossrank.integrations.langchain`: ``CrossrankRerank`` (a document compressor) and
  ``CrossrankRetriever`` (the embedded index, then the reranker), extra ``crossrank[langchain]``;
- :mod:`crossrank.integrations.llamaindex`: ``CrossrankRerank`` (a node postprocessor),
  extra ``crossrank[llamaindex]``;
- :mod:`crossrank.integrations.haystack`: ``CrossrankRanker`` (a Haystack 2 component),
  extra ``crossrank[haystack]``.

Each scores in-process with a :class:`crossrank.Reranker` or calls a ``crossrank serve`` URL
(:class:`~crossrank.integrations.client.RerankClient`). Importing this package imports no framework.
"""
