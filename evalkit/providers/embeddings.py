"""Retrieval through an OpenAI-compatible embeddings endpoint: the alternative to TF-IDF.

Turned on by the experiment config (`provider: {embedding_model: text-embedding-3-small}`,
optionally `embedding_base_url`); the RAG rungs then rank passages by cosine similarity of
embeddings instead of TF-IDF. Requests always send `encoding_format="float"`: the SDK's default
is base64, which many OpenAI-compatible servers do not implement.

Costs: embedding the corpus is a setup cost, paid once per (corpus hash, chunking, model,
server) — the index is cached under `<cache>/index/` and a re-run pays nothing but still
reports the notional cost. The test queries are embedded in batches before the run (one
request per batch, not one per item inside the async runner); their cost is a per-query cost.
Both land in run.json under `setup.retrieval`. Vectors of single texts are cached in
`<cache>/embeddings.sqlite`, keyed by model, server and the text's hash.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evalkit.config import ConfigError, ExperimentConfig
from evalkit.data.testset import Testset
from evalkit.providers.base import Usage
from evalkit.providers.openai import NO_KEY_PLACEHOLDER, redact_url
from evalkit.providers.pricing import PriceBook, UnknownPrice
from evalkit.providers.sqlite_store import SqliteStore
from evalkit.strategies.retrieval import CHUNKER_VERSION, Passage, chunk_corpus

if TYPE_CHECKING:
    import numpy as np

# numpy is imported where vectors are made, not with this module: the run imports it to ask
# whether the config wants embeddings, and a TF-IDF or prompt-only run never does (issue 16.3)


@dataclass(frozen=True)
class EmbeddingSettings:
    model: str
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    batch_size: int = 128
    max_retries: int = 5
    timeout_s: float = 60.0


class VectorStore:
    """SQLite cache of text vectors: (model, server, sha256(text)) -> float32 vector, tokens.

    Opened like the response cache (`SqliteStore`): damage or a long lock never crashes a
    run, and a row that is not a float32 vector with a token count is a miss.
    """

    def __init__(self, path: Path):
        self._store = SqliteStore(path, schema="CREATE TABLE IF NOT EXISTS vectors (key TEXT "
                                  "PRIMARY KEY, vector BLOB NOT NULL, tokens REAL NOT NULL)")

    def get(self, key: str) -> tuple[np.ndarray, float] | None:
        row = self._store.fetchone("SELECT vector, tokens FROM vectors WHERE key = ?", (key,))
        if row is None or not isinstance(row[0], bytes) or not row[0] or len(row[0]) % 4:
            return None
        if type(row[1]) not in (int, float):
            return None
        import numpy as np

        return np.frombuffer(row[0], dtype=np.float32), float(row[1])

    def put(self, key: str, vector: np.ndarray, tokens: float) -> None:
        import numpy as np

        self._store.execute("INSERT OR REPLACE INTO vectors VALUES (?, ?, ?)",
                            (key, np.asarray(vector, dtype=np.float32).tobytes(), tokens))

    def close(self) -> None:
        self._store.close()


class Embedder:
    """Embeds texts in batches through the SDK, with a vector cache; counts tokens and cost."""

    def __init__(self, settings: EmbeddingSettings, prices: PriceBook, store: VectorStore):
        self.settings = settings
        self.prices = prices
        self.store = store
        self._client = None

    def _key(self, text: str) -> str:
        ident = f"{self.settings.model}\n{redact_url(self.settings.base_url)}\n{text}"
        return hashlib.sha256(ident.encode()).hexdigest()

    def worst_usd(self, texts: list[str]) -> float:
        """The most embedding `texts` can cost now: those not in the vector store yet, at a
        token per UTF-8 byte (no byte-level tokenizer counts more) at the input price."""
        fresh = [t for t in dict.fromkeys(texts) if self.store.get(self._key(t)) is None]
        tokens = sum(len(t.encode("utf-8", "surrogatepass")) + 1 for t in fresh)
        return self.prices.price(self.settings.model).cost(Usage(input_tokens=tokens))

    def embed(self, texts: list[str]) -> tuple[np.ndarray, dict[str, float]]:
        """Unit vectors for `texts`; the dict says tokens and USD, notional and spent now."""
        import numpy as np

        price = self.prices.price(self.settings.model)  # before any call
        vectors: list[np.ndarray | None] = [None] * len(texts)
        tokens = spent_tokens = 0.0
        missing = []
        for i, text in enumerate(texts):
            hit = self.store.get(self._key(text))
            if hit is None:
                missing.append(i)
            else:
                vectors[i], t = hit
                tokens += t
        for start in range(0, len(missing), self.settings.batch_size):
            batch = missing[start:start + self.settings.batch_size]
            got, used = self._call([texts[i] for i in batch])
            total_chars = sum(len(texts[i]) for i in batch) or 1
            for i, vec in zip(batch, got, strict=True):
                share = used * len(texts[i]) / total_chars  # usage is per request
                self.store.put(self._key(texts[i]), vec, share)
                vectors[i] = vec
            tokens += used
            spent_tokens += used
        matrix = _unit(np.vstack(vectors)) if texts else np.zeros((0, 0), dtype=np.float32)
        cost = {"tokens": tokens, "usd": price.cost(Usage(input_tokens=round(tokens))),
                "usd_spent": price.cost(Usage(input_tokens=round(spent_tokens)))}
        return matrix, cost

    def _call(self, texts: list[str]) -> tuple[list[np.ndarray], float]:
        import numpy as np

        response = self._openai().embeddings.create(model=self.settings.model, input=texts,
                                                    encoding_format="float")
        data = sorted(response.data, key=lambda d: d.index)
        if len(data) != len(texts) or any(not isinstance(d.embedding, list) for d in data):
            raise ValueError(f"{self.settings.base_url or 'api.openai.com'}: the embeddings "
                             f"response has {len(data)} float vectors for {len(texts)} inputs")
        usage = getattr(response, "usage", None)
        used = getattr(usage, "prompt_tokens", None)
        if not isinstance(used, int):  # no usage reported: estimate ~4 characters a token
            used = sum(len(t) for t in texts) // 4 + len(texts)
        return [np.asarray(d.embedding, dtype=np.float32) for d in data], float(used)

    def _openai(self):
        if self._client is None:
            from openai import OpenAI
            key = os.environ.get(self.settings.api_key_env) or None
            if key is None and self.settings.base_url is None:
                raise RuntimeError(f"set {self.settings.api_key_env} to embed with OpenAI")
            self._client = OpenAI(api_key=key or NO_KEY_PLACEHOLDER,
                                  base_url=self.settings.base_url,
                                  max_retries=self.settings.max_retries,
                                  timeout=self.settings.timeout_s)
        return self._client


class EmbeddingIndex:
    """Passages and their unit vectors; `search(query, k)` like the TF-IDF index."""

    def __init__(self, passages: list[Passage], matrix: np.ndarray, embedder: Embedder,
                 indexing: dict[str, float]):
        self.passages = passages
        self.matrix = matrix
        self.embedder = embedder
        self.indexing = indexing
        self._queries: dict[str, np.ndarray] = {}
        self._query_cost = {"tokens": 0.0, "usd": 0.0, "usd_spent": 0.0, "n": 0}

    def embed_queries(self, queries: list[str]) -> dict[str, Any]:
        """Embed the run's queries up front (batched); the setup record for run.json."""
        fresh = [q for q in dict.fromkeys(queries) if q not in self._queries]
        if fresh:
            matrix, cost = self.embedder.embed(fresh)
            self._queries.update(zip(fresh, matrix, strict=True))
            for k in ("tokens", "usd", "usd_spent"):
                self._query_cost[k] += cost[k]
            self._query_cost["n"] += len(fresh)
        n = self._query_cost["n"]
        return {"retriever": "embeddings", "model": self.embedder.settings.model,
                "base_url": redact_url(self.embedder.settings.base_url),
                "passages": len(self.passages),
                "indexing_tokens": self.indexing["tokens"],
                "indexing_usd": self.indexing["usd"],           # setup, notional
                "indexing_usd_spent": self.indexing["usd_spent"],  # 0 when the index was cached
                "queries": n, "query_tokens": self._query_cost["tokens"],
                "query_usd": self._query_cost["usd"],
                "query_usd_spent": self._query_cost["usd_spent"],
                "query_usd_per_query": self._query_cost["usd"] / n if n else 0.0}

    def search(self, query: str, k: int) -> list[Passage]:
        if k <= 0:
            return []
        import numpy as np

        if query not in self._queries:
            self.embed_queries([query])  # not prepared in advance: one call, then cached
        scores = self.matrix @ self._queries[query]
        top = np.argsort(-scores, kind="stable")[:k]
        return [Passage(self.passages[i].doc_id, self.passages[i].chunk, self.passages[i].text,
                        float(scores[i])) for i in top]


class EmbeddingRetriever:
    """Builds (or loads) the embedding index of one test set's corpus."""

    def __init__(self, testset: Testset, settings: EmbeddingSettings, prices: PriceBook, *,
                 cache_dir: Path):
        self.testset = testset
        self.settings = settings
        self.cache_dir = Path(cache_dir)
        self.embedder = Embedder(settings, prices, VectorStore(self.cache_dir /
                                                                "embeddings.sqlite"))

    def index_path(self) -> Path:
        c = self.testset.task.corpus
        ident = json.dumps(["embeddings", CHUNKER_VERSION, self.testset.corpus_hash, c.chunk_size,
                            c.chunk_overlap, self.settings.model,
                            redact_url(self.settings.base_url)])
        return self.cache_dir / "index" / f"emb-{hashlib.sha256(ident.encode()).hexdigest()}"

    def build(self) -> EmbeddingIndex:
        import numpy as np

        base = self.index_path()
        npy, meta = base.with_suffix(".npy"), base.with_suffix(".json")
        if npy.is_file() and meta.is_file():
            saved = json.loads(meta.read_text())
            passages = [Passage(p["doc_id"], p["chunk"], p["text"]) for p in saved["passages"]]
            indexing = {**saved["indexing"], "usd_spent": 0.0}  # paid when it was built
            return EmbeddingIndex(passages, np.load(npy), self.embedder, indexing)
        c = self.testset.task.corpus
        passages = chunk_corpus(self.testset.docs, size=c.chunk_size, overlap=c.chunk_overlap)
        if not passages:
            raise ValueError(f"{self.testset.path}: cannot index an empty corpus")
        matrix, cost = self.embedder.embed([p.text for p in passages])
        base.parent.mkdir(parents=True, exist_ok=True)
        np.save(npy.with_suffix(".tmp.npy"), matrix)
        npy.with_suffix(".tmp.npy").replace(npy)
        meta.write_text(json.dumps({"passages": [{"doc_id": p.doc_id, "chunk": p.chunk,
                                                  "text": p.text} for p in passages],
                                    "indexing": cost}) + "\n")
        return EmbeddingIndex(passages, matrix, self.embedder, cost)


def from_config(cfg: ExperimentConfig, provider_options: dict[str, Any], testset: Testset,
                *, cache_dir: Path) -> EmbeddingRetriever | None:
    """The embedding retriever the config asks for, or None for TF-IDF."""
    settings = settings_from_config(cfg, provider_options)
    if settings is None:
        return None
    prices = PriceBook.from_section(cfg.section("pricing"), path=cfg.path)
    return EmbeddingRetriever(testset, settings, prices, cache_dir=cache_dir)


def settings_from_config(cfg: ExperimentConfig,
                         provider_options: Mapping[str, Any]) -> EmbeddingSettings | None:
    """How the config asks to embed (`provider.embedding_model`), or None for TF-IDF."""
    section = cfg.section("provider")
    model = section.get("embedding_model")
    if not model:
        return None
    if not isinstance(model, str):
        raise ConfigError(cfg.path, "must be a model name", field="provider.embedding_model")
    base_url = (section.get("embedding_base_url") or provider_options.get("base_url")
                or section.get("base_url") or os.environ.get("OPENAI_BASE_URL") or None)
    return EmbeddingSettings(model=model, base_url=base_url,
                             api_key_env=section.get("api_key_env", "OPENAI_API_KEY"),
                             batch_size=int(section.get("embedding_batch_size", 128)),
                             max_retries=int(section.get("max_retries", 5)),
                             timeout_s=float(section.get("timeout_s", 60.0)))


def embedding_problems(cfg: ExperimentConfig,
                       provider_options: Mapping[str, Any]) -> list[str]:
    """What would stop the embedding index before its first call, found with no call and no
    index: a malformed section, OpenAI itself with no key, a model with no price. The
    pre-flight (`testset check` and `run` alike) says these before anything is scanned or
    paid; `Embedder` would otherwise find them only when it indexes the corpus."""
    try:
        settings = settings_from_config(cfg, provider_options)
    except (ConfigError, ValueError) as exc:
        return [str(exc)]
    if settings is None:
        return []
    problems = []
    if settings.base_url is None and not os.environ.get(settings.api_key_env):
        problems.append(f"set {settings.api_key_env} to embed with OpenAI "
                        f"(provider.embedding_model: {settings.model})")
    try:
        PriceBook.from_section(cfg.section("pricing"), path=cfg.path).price(settings.model)
    except (UnknownPrice, ConfigError, ValueError) as exc:
        problems.append(f"provider.embedding_model: {exc}")
    return problems


def _unit(m: np.ndarray) -> np.ndarray:
    import numpy as np

    norms = np.linalg.norm(m, axis=1, keepdims=True)
    return (m / np.where(norms == 0, 1.0, norms)).astype(np.float32)
