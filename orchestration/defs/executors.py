"""How the jobs run their steps under the daemon and in the UI."""

import dagster as dg

# Steps run in their own processes (a failed CRM step never takes the other down), forked from a
# server that has imported the code once: a step starts in a fraction of a second instead of
# importing Dagster, polars and the definitions again (about 2 s each, some 30 steps a sync).
STEP_EXECUTOR = dg.multiprocess_executor.configured(
    {"start_method": {"forkserver": {"preload_modules": ["orchestration.definitions"]}}}
)
