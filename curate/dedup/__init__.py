"""Deduplication and decontamination building blocks.

* :mod:`.text`          normalisation, tokens, vectorised shingle hashing (xxhash token ids + numpy)
* :mod:`.minhash`       MinHash signatures as numpy arrays (datasketch-compatible), worker processes,
                        LSH band buckets with a capped fan-out (linear candidates on templated texts;
                        datasketch's MinHashLSH bands x rows; ``lsh_candidate_pairs``: datasketch's own)
* :mod:`.cluster`       exact + near-duplicate clusters (scipy connected components), keep policy
* :mod:`.contamination` benchmark n-gram + MinHash index, cached on disk by content
"""

from .cluster import DedupResult, choose_kept, find_duplicates
from .contamination import BenchmarkIndex, ContamParams
from .minhash import MinHashParams, band_pairs, lsh_candidate_pairs, signatures
from .text import canonical, jaccard, normalize, shingle_hashes, shingle_set, tokenize

__all__ = [
    "BenchmarkIndex",
    "ContamParams",
    "DedupResult",
    "MinHashParams",
    "band_pairs",
    "canonical",
    "choose_kept",
    "find_duplicates",
    "jaccard",
    "lsh_candidate_pairs",
    "normalize",
    "shingle_hashes",
    "shingle_set",
    "signatures",
    "tokenize",
]
