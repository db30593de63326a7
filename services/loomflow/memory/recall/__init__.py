"""Hybrid recall written once for every backend: BM25 + embedding cosine, fused by reciprocal rank."""
