"""leadsync's worker: Dagster definitions (`defs`), domain logic (`funnel`), the state store."""

import os

# polars allocates through a jemalloc of its own that keeps freed pages a while for reuse, and
# without a background thread purges them only while it allocates more (pola-rs/polars#23128).
# A sync frees gigabytes between steps at scale, so the worker held its highest point for the
# rest of the run. Pages go back to the system at once instead: at 100,000 people the
# normalisation step peaked 14% lower and ended at 458 MiB instead of 1,507, in the same time.
# polars reads the setting when first imported, putting its own defaults before it (the last
# value of a key wins); a setting that already names `background_thread` is someone's choice.
_ALLOCATOR = "background_thread:true,dirty_decay_ms:0,muzzy_decay_ms:0"
_conf = os.environ.get("_RJEM_MALLOC_CONF", "")
if "background_thread" not in _conf:
    os.environ["_RJEM_MALLOC_CONF"] = f"{_conf},{_ALLOCATOR}" if _conf else _ALLOCATOR
