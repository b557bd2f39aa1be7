"""Normalisation, tokenisation and vectorised shingle hashing.

Text -> tokens (NFKC, typographic quotes/dashes folded, lower case; words and single punctuation
marks, so ``$c$ .`` and ``$c$.`` agree) -> one 64-bit id per token, hashed over the bytes of a whole
batch of texts in a few numpy passes (no Python call per token; the id *is* the token's hash) ->
n-gram shingle hashes combined with numpy over the token-id array. Character shingles use the code
points of the normalised text as token ids. xxhash (xxh3-64 over the token ids) gives the
exact-duplicate key.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Literal, Sequence

import numpy as np
import xxhash

ShingleKind = Literal["word", "char"]

TOKEN_RE = re.compile(r"\w+|[^\w\s]")
_WS_RE = re.compile(r"\s+")
_U64 = np.uint64
_MUL = _U64(0x9E3779B97F4A7C15)  # odd 64-bit constant (golden ratio) for the polynomial combine
_M1, _M2 = _U64(0xFF51AFD7ED558CCD), _U64(0xC4CEB9FE1A85EC53)
_S33 = _U64(33)


# typographic quotes and dashes that NFKC leaves alone
_PUNCT_FOLD = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'",
                             "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u2033": '"',
                             "\u2010": "-", "\u2011": "-", "\u2012": "-", "\u2013": "-", "\u2014": "-",
                             "\u2212": "-", "\u00a0": " "})


def normalize(text: str | None) -> str:
    """NFKC, typographic quotes/dashes folded to ASCII, lower case (the basis of every comparison)."""
    text = unicodedata.normalize("NFKC", text or "")
    if not text.isascii():
        text = text.translate(_PUNCT_FOLD)
    return text.lower()


# ASCII fast path: pad every ASCII char that is not a word char or space, then split
# (str.translate + str.split, ~4x faster than the regex; same tokens, checked by the tests).
_ASCII_PAD = {c: f" {chr(c)} " for c in range(128) if not re.match(r"[\w\s]", chr(c))}


def tokenize(text: str | None) -> list[str]:
    """Words and single punctuation marks of the normalised text (``\\w+|[^\\w\\s]``)."""
    norm = normalize(text)
    if norm.isascii():
        return norm.translate(_ASCII_PAD).split()
    return TOKEN_RE.findall(norm)


def canonical(text: str | None) -> str:
    """Normalised text with tokens joined by one space: the key of exact deduplication."""
    return " ".join(tokenize(text))


def exact_key(text: str | None) -> int:
    """The exact-duplicate key (as in :func:`features`): equal for texts with equal :func:`canonical`."""
    return xxhash.xxh3_64_intdigest(word_token_hashes(text).tobytes())


def fmix64(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finaliser (an avalanching bijection), element-wise, wrapping."""
    h = h ^ (h >> _S33)
    h = h * _M1
    h = h ^ (h >> _S33)
    h = h * _M2
    return h ^ (h >> _S33)


# Token hashing over bytes, vectorised (no Python call per token). The padded normalised text is
# one byte array; tokens are runs of non-whitespace bytes. With c_k = byte + 1 and an odd constant B
# (invertible mod 2^64), prefix sums S_i = sum_{k<i} c_k * B^-k give each token's polynomial hash
# sum c_k * B^(end-k) = (S_end - S_start) * B^end in a few whole-array numpy operations; fmix64 of
# it (xor the length) is the token's 64-bit id. uint64 arithmetic wraps, which is the mod 2^64.
_B = 0x100000001B3 * 2 + 1  # odd
_BINV = pow(_B, -1, 1 << 64)
_WS_BYTES = np.zeros(256, dtype=bool)
_WS_BYTES[[9, 10, 11, 12, 13, 28, 29, 30, 31, 32]] = True  # what str.split() splits ASCII on
_pow_b = np.empty(0, dtype=np.uint64)
_pow_binv = np.empty(0, dtype=np.uint64)


def _powers(n: int) -> tuple[np.ndarray, np.ndarray]:
    global _pow_b, _pow_binv
    if len(_pow_b) < n:
        size = max(n, 2 * len(_pow_b), 1 << 16)
        with np.errstate(over="ignore"):
            _pow_b = np.concatenate(([np.uint64(1)], np.cumprod(np.full(size - 1, _B, dtype=np.uint64))))
            _pow_binv = np.concatenate(([np.uint64(1)], np.cumprod(np.full(size - 1, _BINV, dtype=np.uint64))))
    return _pow_b, _pow_binv


def padded_bytes(text: str | None) -> bytes:
    """The normalised text with every token separated by whitespace, as UTF-8."""
    norm = normalize(text)
    if norm.isascii():
        return norm.translate(_ASCII_PAD).encode("ascii")
    return " ".join(TOKEN_RE.findall(norm)).encode("utf-8")


def _hash_tokens(buf: bytes) -> tuple[np.ndarray, np.ndarray]:
    """(token ids, token start byte offsets) of a whitespace-separated byte string."""
    b = np.frombuffer(buf, dtype=np.uint8)
    if len(b) == 0:
        return np.empty(0, dtype=np.uint64), np.empty(0, dtype=np.int64)
    # non-whitespace (str.split's ASCII whitespace: 9-13 and 28-32), with SIMD comparisons
    word = (b > 32) | ((b < 28) & ((b < 9) | (b > 13)))
    edge = np.diff(word.view(np.int8), prepend=np.int8(0), append=np.int8(0))
    bounds = np.flatnonzero(edge)  # token starts (+1) and ends (-1) alternate
    starts, ends = bounds[0::2], bounds[1::2]
    pb, pinv = _powers(len(b) + 1)
    s = np.empty(len(b) + 1, dtype=np.uint64)
    s[0] = 0
    terms = b.astype(np.uint64)
    terms += _U64(1)
    terms *= pinv[: len(b)]
    np.cumsum(terms, out=s[1:])
    h = (s[ends] - s[starts]) * pb[ends]
    h ^= (ends - starts).astype(np.uint64)
    return fmix64(h), starts


def word_token_hashes(text: str | None) -> np.ndarray:
    """uint64 id of every token of :func:`tokenize` (same count and order), vectorised over bytes."""
    return _hash_tokens(padded_bytes(text))[0]


def batch_token_hashes(texts: Sequence[str | None], max_bytes: int = 1 << 16) -> list[np.ndarray]:
    """:func:`word_token_hashes` of many texts, hashing ~``max_bytes`` of text per numpy pass."""
    out: list[np.ndarray] = []
    bufs = [padded_bytes(t) for t in texts]
    i = 0
    while i < len(bufs):
        j, size = i, 0
        while j < len(bufs) and (j == i or size + len(bufs[j]) < max_bytes):
            size += len(bufs[j]) + 1
            j += 1
        ids, starts = _hash_tokens(b"\n".join(bufs[i:j]))
        lens = np.fromiter((len(x) + 1 for x in bufs[i:j]), dtype=np.int64, count=j - i)
        doc_start = np.concatenate(([0], np.cumsum(lens)[:-1]))
        cut = np.searchsorted(starts, doc_start)  # first token of each doc
        out.extend(np.split(ids, cut[1:]))
        i = j
    return out


def token_ids(text: str | None, kind: ShingleKind = "word") -> np.ndarray:
    """uint64 token ids: hashes of word tokens, or code points of the normalised text for chars."""
    if kind == "word":
        return word_token_hashes(text)
    norm = _WS_RE.sub(" ", normalize(text)).strip()
    return np.frombuffer(norm.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)


def ngram_hashes(ids: np.ndarray, n: int) -> np.ndarray:
    """uint64 hashes of the contiguous n-grams of ``ids`` (vectorised polynomial + fmix64).

    A text shorter than ``n`` gives one shingle (all of it); an empty text gives none.
    """
    L = len(ids)
    if L == 0:
        return np.empty(0, dtype=np.uint64)
    n = min(n, L)
    m = L - n + 1
    h = ids[:m].copy()
    for k in range(1, n):
        h *= _MUL
        h += ids[k : k + m]
    h ^= _U64(n)
    return fmix64(h)


def _ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Concatenation of arange(s, s + c) for every (s, c), vectorised."""
    total = int(counts.sum())
    excl = np.cumsum(counts) - counts
    return np.repeat(starts - excl, counts) + np.arange(total, dtype=np.int64)


def batch_ngrams(ids_list: Sequence[np.ndarray], n: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`ngram_hashes` of many token-id arrays at once: (all shingle hashes, offsets [k+1]).

    The n-gram combine runs once over the concatenated ids; n-grams that straddle two texts are
    dropped; a text shorter than n keeps its one all-token shingle, as in :func:`ngram_hashes`.
    """
    k = len(ids_list)
    lens = np.fromiter((len(x) for x in ids_list), dtype=np.int64, count=k)
    cnt = np.where(lens >= n, lens - n + 1, np.minimum(lens, 1))
    off = np.zeros(k + 1, dtype=np.int64)
    np.cumsum(cnt, out=off[1:])
    out = np.empty(int(off[-1]), dtype=np.uint64)
    long_ = np.flatnonzero(lens >= n)
    if len(long_):
        flat = np.concatenate(ids_list)
        m = len(flat) - n + 1
        h = flat[:m].copy()
        for j in range(1, n):
            h *= _MUL
            h += flat[j : j + m]
        h ^= _U64(n)
        h = fmix64(h)
        tok_start = np.zeros(k, dtype=np.int64)
        np.cumsum(lens[:-1], out=tok_start[1:])
        dst = _ranges(off[long_], cnt[long_])
        shift = np.repeat(tok_start[long_] - off[long_], cnt[long_])
        out[dst] = h[dst + shift]
    for d in np.flatnonzero((lens > 0) & (lens < n)).tolist():
        out[off[d]] = ngram_hashes(ids_list[d], n)[0]
    return out, off


def batch_shingles(texts: Sequence[str | None], n: int, kind: ShingleKind = "word") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(shingle hashes of all texts concatenated, offsets [k+1], exact keys [k]) in whole-batch
    numpy passes. Text i's shingles are ``hashes[offsets[i]:offsets[i+1]]``, the same values as
    :func:`shingle_hashes`; its exact key is xxh3-64 over its token ids (equal for equal
    :func:`canonical` forms)."""
    key = xxhash.xxh3_64_intdigest
    words = batch_token_hashes(texts)
    keys = np.fromiter((key(ids.tobytes()) for ids in words), dtype=np.uint64, count=len(words))
    ids_list = words if kind == "word" else [token_ids(t, "char") for t in texts]
    flat, off = batch_ngrams(ids_list, n)
    return flat, off, keys


def features(text: str | None, n: int, kind: ShingleKind = "word") -> tuple[np.ndarray, int]:
    """(shingle hashes, exact key), tokenising once. The exact key is xxh3-64 over the token ids,
    so texts with the same :func:`canonical` form share it."""
    ids = word_token_hashes(text)
    key = xxhash.xxh3_64_intdigest(ids.tobytes())
    if kind == "word":
        return ngram_hashes(ids, n), key
    return ngram_hashes(token_ids(text, "char"), n), key


def shingle_hashes(text: str | None, n: int, kind: ShingleKind = "word") -> np.ndarray:
    """uint64 hashes of the word or character n-gram shingles of ``text`` (with repeats)."""
    return ngram_hashes(token_ids(text, kind), n)


def shingle_set(text: str | None, n: int, kind: ShingleKind = "word") -> np.ndarray:
    """Sorted unique shingle hashes: the set whose Jaccard similarity MinHash estimates."""
    return np.unique(shingle_hashes(text, n, kind))


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Exact Jaccard similarity of two sorted unique hash arrays."""
    if len(a) == 0 and len(b) == 0:
        return 1.0
    inter = len(np.intersect1d(a, b, assume_unique=True))
    return inter / (len(a) + len(b) - inter)
