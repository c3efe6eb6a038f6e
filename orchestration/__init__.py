"""leadsync's worker: Dagster definitions (`defs`), domain logic (`funnel`), the state store."""

import os

# polars allocates through a jemalloc of its own that keeps freed pages for reuse and, without a
# background thread, purges them only while it allocates more (pola-rs/polars#23128). A sync
# frees gigabytes between steps at scale, so the worker held its highest point for the rest of
# the run. A background thread now returns pages left unused for a second. At 100,000 people the
# steps after the pulls of a 1% change peaked at 1,304 MiB instead of 1,540, in the same time;
# returning pages at once (decay 0) saved a little more and cost 27% more time.
# polars reads the setting when first imported, putting its own defaults before it (the last
# value of a key wins); a setting that already names `background_thread` is someone's choice.
_ALLOCATOR = "background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0"
_conf = os.environ.get("_RJEM_MALLOC_CONF", "")
if "background_thread" not in _conf:
    os.environ["_RJEM_MALLOC_CONF"] = f"{_conf},{_ALLOCATOR}" if _conf else _ALLOCATOR
