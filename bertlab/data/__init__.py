"""The course's data: fetching pinned sources, loaders, pair building, collators."""

from bertlab.data.fetch import SOURCES, DataError, cache_dir, fetch, fetch_all, minilm_dir

__all__ = ["SOURCES", "DataError", "cache_dir", "fetch", "fetch_all", "minilm_dir"]
