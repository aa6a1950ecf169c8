"""The one TF-IDF featuriser every stage shares: leakage checks, retrieval and the local models.

Word (1-2 gram) and character (3-5 gram, word-bounded) TF-IDF, so near-duplicates, typos and
inflections are caught without any model download. It lives with the data stage because the
leakage check is its first user; later stages import it from here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sklearn.pipeline import FeatureUnion


def make_vectorizer() -> FeatureUnion:
    # scikit-learn is imported on first use, not with this module: it costs ~1 s of CPU and
    # a prompt-only run, which imports the modules that use this, never calls it (issue 16.3)
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import FeatureUnion

    return FeatureUnion([
        ("word", TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, lowercase=True)),
        ("char", TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), sublinear_tf=True)),
    ])
