"""Scoring and staging at scale: 1,000,000 unified leads with 10,000,000 activities.

Issue 6 asks: 1,000,000 leads with 10,000,000 activities scored and staged in at most 30 s with at
most 6 GiB peak memory on this machine (2 cores).

Data: synthetic unified leads and activity timelines, generated vectorised with polars and numpy
(seeded) and cached as parquet in .bench_cache/ keyed by the arguments and this file's hash:
ja and en locales; countries JP and US (the regional overlays), GB and SG (global target
countries) and others; titles with seniority keywords in both languages; target and other
industries; a small share of competitor, free-mail and student domains; Salesforce statuses of
every kind, a few sales-generated lead sources and opportunities. Activities span the last two
years, skewed towards a minority of busy leads, with page views and email opens dominating and
hand-raises rare.

The timed steps run in a child process that loads the cached parquet first, so timing excludes
generation and loading. They are called exactly as `orchestration/defs/leads.py` calls them:
`score(unified, activities, definition, now=<start of today, UTC>)`, then
`assign_stages(unified, scores, None, definition, now=<now>)` (the first run, no stored stages),
then the next day's run `assign_stages(unified, scores, <the first run's stages>, ...)`. Memory is
the child's peak RSS (VmHWM) over the whole process, loaded inputs included; their own RSS after
loading is reported beside it.

    .venv/bin/python -m benchmarks.scoring_scale                                  # 1M + 10M
    .venv/bin/python -m benchmarks.scoring_scale --leads 100000 --activities 1000000
"""

import argparse
import gc
import hashlib
import json
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from benchmarks.identity_data import CACHE_DIR, REPO
from benchmarks.identity_quality import machine
from benchmarks.identity_scale import _reset_peak, _status_mib
from orchestration.funnel import scoring, stages
from orchestration.funnel.definition import load_definition
from orchestration.funnel.model import ACTIVITY_TYPES, UTC_TS

TARGET_SECONDS = 30.0
TARGET_PEAK_GIB = 6.0
DEFAULT_SEED = 6  # issue 6

# The data is generated relative to this instant (a fixed day, so the cache stays valid); the
# child shifts every timestamp to today so that `now` is the pipeline's own.
_GENERATED_AT = datetime(2026, 1, 1, tzinfo=UTC)

# Activity type frequencies: web page views and email opens dominate a marketing timeline;
# hand-raises (contact, demo, quote requests) are rare.
_TYPE_WEIGHTS: dict[str, float] = {
    "page_view": 44.0,
    "pricing_page_view": 2.5,
    "content_download": 2.5,
    "form_submission": 1.2,
    "newsletter_signup": 0.6,
    "webinar_registration": 1.2,
    "webinar_attendance": 0.8,
    "email_open": 30.0,
    "email_click": 6.0,
    "email_reply": 0.8,
    "sales_email": 5.0,
    "trade_show_scan": 0.8,
    "contact_request": 0.15,
    "demo_request": 0.1,
    "quote_request": 0.05,
    "sales_call": 1.6,
    "meeting": 0.8,
    "unsubscribe": 0.4,
    "bounce": 0.5,
}

# (value, weight) pools for the lead columns.
_COUNTRIES = [
    ("JP", 35),
    ("US", 30),
    ("GB", 8),
    ("SG", 3),
    ("DE", 6),
    ("FR", 4),
    ("IN", 4),
    ("AU", 3),
    ("CA", 3),
    (None, 4),
]
_TITLES_EN = [
    ("CEO", 2),
    ("Founder", 1),
    ("CTO", 1),
    ("CFO", 1),
    ("VP of Sales", 3),
    ("Vice President, Marketing", 2),
    ("SVP Operations", 1),
    ("Senior Director, IT", 2),
    ("Director of Engineering", 4),
    ("Head of Growth", 3),
    ("General Manager", 3),
    ("Marketing Manager", 8),
    ("Product Manager", 6),
    ("Software Engineer", 10),
    ("Sales Representative", 6),
    ("Account Executive", 5),
    ("Analyst", 6),
    ("Consultant", 4),
    ("Marketing Intern", 1),
    ("Graduate Student", 1),
    ("MVP Program Lead", 1),
    (None, 8),
]
_TITLES_JA = [
    ("代表取締役社長", 2),
    ("取締役", 2),
    ("執行役員", 2),
    ("営業本部長", 3),
    ("営業部長", 6),
    ("情報システム部 次長", 3),
    ("マーケティング課長", 6),
    ("経営企画室長", 2),
    ("係長", 3),
    ("プロジェクトマネージャー", 5),
    ("主任", 5),
    ("営業担当", 8),
    ("エンジニア", 6),
    ("インターン", 1),
    ("大学院生", 1),
    ("Manager", 3),
    ("Director", 2),
    (None, 8),
]
_INDUSTRIES = [
    ("Technology", 8),
    ("Computer Software", 8),
    ("COMPUTER_SOFTWARE", 2),
    ("Information Technology and Services", 8),
    ("Internet", 4),
    ("Manufacturing", 8),
    ("Financial Services", 6),
    ("Hospital & Health Care", 4),
    ("Wholesale", 3),
    ("情報通信業", 5),
    ("製造業", 5),
    ("金融業", 3),
    ("卸売業", 2),
    ("Retail", 6),
    ("Education", 3),
    ("Government", 2),
    ("Construction", 3),
    (None, 10),
]
_FREE_DOMAINS = ["gmail.com", "yahoo.co.jp", "outlook.com", "hotmail.com", "icloud.com"]
_COMPETITOR_DOMAINS = ["competitor-crm.example", "sales.rival-ma.example.jp"]
_STUDENT_DOMAINS = ["u-tokyo.ac.jp", "mit.edu", "ox.ac.uk", "hs.ed.jp", "unsw.edu.au"]
_SF_STATUSES = [
    (None, 45),  # HubSpot-only leads
    ("Open - Not Contacted", 25),
    ("Open", 3),
    ("Working - Contacted", 8),
    ("Working", 2),
    ("Accepted", 1),
    ("Qualified", 3),
    ("Closed - Converted", 2),
    ("Closed - Not Converted", 4),
    ("Unqualified", 2),
    ("Disqualified", 1),
    ("Nurturing", 3),
    ("Recycled", 1),
]
_LEAD_SOURCES = [
    ("Web", 30),
    ("ORGANIC_SEARCH", 15),
    ("PAID_SEARCH", 10),
    ("Trade Show", 12),
    ("Webinar", 8),
    ("EMAIL_MARKETING", 8),
    ("Sales Prospecting", 1.5),
    ("Partner Referral", 1),
    ("Employee Referral", 0.5),
    ("Phone Inquiry", 0.5),
    (None, 13.5),
]


def _pick(
    rng: np.random.Generator, pool: list[tuple[Any, float]], n: int, dtype: pl.DataType
) -> pl.Series:
    """n values drawn from a weighted pool, as a polars Series (indices, then one gather)."""
    weights = np.array([w for _, w in pool], dtype=np.float64)
    idx = rng.choice(len(pool), size=n, p=weights / weights.sum())
    values = pl.Series([v for v, _ in pool], dtype=dtype)
    return values.gather(pl.Series(idx, dtype=pl.UInt32))


def unified_ids(index: pl.Expr) -> pl.Expr:
    """Stable ids shaped like the resolver's (UL- and 12 digits), unsorted: i * p mod 10^12 is a
    bijection for a prime p, so ids are unique and their order is not the generation order."""
    scrambled = (index.cast(pl.Int64) * 999_999_937 + 12_345) % 1_000_000_000_000
    return pl.lit("UL-") + scrambled.cast(pl.String).str.zfill(12)


def generate_leads(n: int, seed: int) -> pl.DataFrame:
    """n unified leads with the columns scoring and staging read, plus the identity columns a
    golden record carries (so the loaded frame's memory is realistic)."""
    rng = np.random.default_rng(seed)
    country = _pick(rng, _COUNTRIES, n, pl.String())
    is_jp = (country == "JP").to_numpy()
    # Japan is mostly ja (some en); elsewhere mostly en; a few leads without a locale at all.
    u = rng.random(n)
    locale = np.where(is_jp, np.where(u < 0.85, "ja", "en"), np.where(u < 0.97, "en", "ja"))
    no_locale = rng.random(n) < 0.05
    title = pl.Series(
        np.where(
            locale == "ja",
            _pick(rng, _TITLES_JA, n, pl.String()).to_numpy(),
            _pick(rng, _TITLES_EN, n, pl.String()).to_numpy(),
        ),
        dtype=pl.String,
    )
    # Company size: log-uniform 1..50,000, some unknown.
    employees = np.exp(rng.uniform(0, np.log(50_000), n)).astype(np.int64)
    unknown_size = rng.random(n) < 0.15
    # Email domains: mostly the company's own, a few free-mail, competitor and student ones.
    kind = rng.random(n)
    company_no = rng.integers(0, max(n // 8, 1), n)
    own = pl.Series(company_no).cast(pl.String)
    free = _pick(rng, [(d, 1) for d in _FREE_DOMAINS], n, pl.String())
    competitor = _pick(rng, [(d, 1) for d in _COMPETITOR_DOMAINS], n, pl.String())
    student = _pick(rng, [(d, 1) for d in _STUDENT_DOMAINS], n, pl.String())
    frame = pl.DataFrame(
        {
            "i": np.arange(n, dtype=np.int64),
            "kind": kind,
            "company_no": company_no,
            "own": own,
            "free": free,
            "competitor": competitor,
            "student": student,
            "country": country,
            "locale": pl.Series(locale, dtype=pl.String),
            "no_locale": no_locale,
            "title": title,
            "employees": employees,
            "unknown_size": unknown_size,
            "industry": _pick(rng, _INDUSTRIES, n, pl.String()),
            "sf_status": _pick(rng, _SF_STATUSES, n, pl.String()),
            "lead_source": _pick(rng, _LEAD_SOURCES, n, pl.String()),
            "converted": rng.random(n),
            "opportunity": rng.random(n),
        }
    )
    email_domain = (
        pl.when(pl.col("kind") < 0.12)
        .then(pl.col("free"))
        .when(pl.col("kind") < 0.125)
        .then(pl.col("competitor"))
        .when(pl.col("kind") < 0.135)
        .then(pl.col("student"))
        .when(pl.col("country") == "JP")
        .then(pl.format("company{}.co.jp", pl.col("own")))
        .otherwise(pl.format("company{}.com", pl.col("own")))
    )
    now = pl.lit(_GENERATED_AT, dtype=UTC_TS)
    return (
        frame.select(
            unified_ids(pl.col("i")).alias("unified_id"),
            pl.format("person{}@", pl.col("i")).alias("email_local"),
            email_domain.alias("email_domain"),
            (pl.col("kind") < 0.12).alias("email_is_free"),
            pl.format("Given{}", pl.col("i") % 5000).alias("first_name"),
            pl.format("Family{}", pl.col("i") % 20000).alias("last_name"),
            pl.format("Company {} Ltd", pl.col("company_no")).alias("company"),
            "title",
            "industry",
            pl.when(~pl.col("unknown_size")).then(pl.col("employees")).alias("employee_count"),
            "country",
            pl.when(~pl.col("no_locale")).then(pl.col("locale")).alias("locale"),
            "lead_source",
            "sf_status",
            (pl.col("sf_status").is_not_null() & (pl.col("converted") < 0.02)).alias(
                "sf_is_converted"
            ),
            (pl.col("opportunity") < 0.03).alias("has_open_opportunity"),
            (pl.col("opportunity") >= 0.99).alias("has_won_opportunity"),
            (now - pl.duration(days=(pl.col("converted") * 1460).cast(pl.Int64))).alias(
                "created_at"
            ),
            (now - pl.duration(days=(pl.col("opportunity") * 60).cast(pl.Int64))).alias(
                "updated_at"
            ),
            pl.lit(1, dtype=pl.Int64).alias("record_count"),
            pl.lit(False).alias("is_deleted"),
        )
        .with_columns((pl.col("email_local") + pl.col("email_domain")).alias("email"))
        .drop("email_local")
    )


def generate_activities(leads: int, n: int, seed: int) -> pl.DataFrame:
    """n activities of `leads` leads over the two years before _GENERATED_AT, ACTIVITY_SCHEMA plus
    unified_id (the `activities` timeline the pipeline scores)."""
    rng = np.random.default_rng(seed + 1)
    # Per-lead activity is skewed: a quarter of the leads have none yet, the rest a log-normal
    # share (most a handful, a few hundred or thousands), so some leads reach every type's cap.
    weight = rng.lognormal(0.0, 1.3, leads) * (rng.random(leads) >= 0.25)
    lead_index = rng.choice(leads, size=n, p=weight / weight.sum())
    weights = np.array([_TYPE_WEIGHTS[t] for t in ACTIVITY_TYPES], dtype=np.float64)
    type_index = rng.choice(len(ACTIVITY_TYPES), size=n, p=weights / weights.sum())
    # Ages: more recent activity is more common (exponential, capped at two years).
    age_us = np.minimum(rng.exponential(200.0, n), 730.0) * 86_400_000_000
    types = pl.Series(list(ACTIVITY_TYPES), dtype=pl.String)
    hubspot = rng.random(n) < 0.7
    frame = pl.DataFrame(
        {
            "lead": lead_index,
            "type": type_index.astype(np.uint32),
            "age_us": age_us.astype(np.int64),
            "hubspot": hubspot,
        }
    ).with_row_index("n")
    system = pl.when(pl.col("hubspot")).then(pl.lit("hubspot")).otherwise(pl.lit("salesforce"))
    return frame.select(
        pl.format("{}:event:{}", system, pl.col("n")).alias("activity_id"),
        pl.format("{}:contacts:{}", system, pl.col("lead")).alias("record_id"),
        system.alias("source_system"),
        types.gather(frame["type"]).alias("activity_type"),
        (pl.lit(_GENERATED_AT, dtype=UTC_TS) - pl.duration(microseconds=pl.col("age_us"))).alias(
            "occurred_at"
        ),
        pl.format("campaign {}", pl.col("n") % 200).alias("detail"),
        unified_ids(pl.col("lead")).alias("unified_id"),
    )


def _cache_key(leads: int, activities: int, seed: int) -> str:
    # This file decides the data, so an edit to it regenerates the cache.
    digest = hashlib.sha1(Path(__file__).read_bytes()).hexdigest()[:12]
    return f"scoring-l{leads}-a{activities}-s{seed}-{digest}"


def prepare(leads: int, activities: int, seed: int) -> Path:
    """Generate and cache the leads and activities as parquet for the child."""
    folder = CACHE_DIR / _cache_key(leads, activities, seed)
    if (folder / "activities.parquet").exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    generate_leads(leads, seed).write_parquet(folder / "unified.parquet")
    # Written last: its presence marks a complete cache entry.
    generate_activities(leads, activities, seed).write_parquet(folder / "activities.parquet")
    return folder


def _shift_to(frame: pl.DataFrame, columns: list[str], delta: timedelta) -> pl.DataFrame:
    return frame.with_columns([pl.col(c) + delta for c in columns if c in frame.columns])


def child_run(folder: Path) -> dict[str, Any]:
    """Load, then time score and both staging runs as the pipeline makes them."""
    # Scores are as of the start of today, as in leads_scores; the data is moved to end there.
    as_of = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    delta = as_of - _GENERATED_AT
    unified = _shift_to(
        pl.read_parquet(folder / "unified.parquet"), ["created_at", "updated_at"], delta
    )
    activities = _shift_to(pl.read_parquet(folder / "activities.parquet"), ["occurred_at"], delta)
    definition = load_definition()
    gc.collect()
    out: dict[str, Any] = {
        "leads": unified.height,
        "activities": activities.height,
        "rss_after_load_mib": _status_mib("VmRSS"),
        "peak_after_load_mib": _status_mib("VmHWM"),
        "peak_reset": _reset_peak(),
    }

    started = time.perf_counter()
    scores = scoring.score(unified, activities, definition, now=as_of)
    out["score_seconds"] = time.perf_counter() - started
    out["score_peak_mib"] = _status_mib("VmHWM")

    started = time.perf_counter()
    current, ledger = stages.assign_stages(unified, scores, None, definition, now=datetime.now(UTC))
    out["stages_seconds"] = time.perf_counter() - started
    out["stages_peak_mib"] = _status_mib("VmHWM")
    out["ledger_rows"] = ledger.height
    out["by_stage"] = {
        r["stage"]: r["len"] for r in current.group_by("stage").len().sort("stage").to_dicts()
    }
    out["by_temperature"] = {
        r["temperature"]: r["len"]
        for r in scores.group_by("temperature").len().sort("temperature").to_dicts()
    }

    # The next run: the stored stages are the previous ones (no change in the inputs, so this is
    # the steady daily run's cost: every lead compared, few or no ledger rows).
    started = time.perf_counter()
    _, ledger = stages.assign_stages(
        unified, scores, current, definition, now=datetime.now(UTC) + timedelta(days=1)
    )
    out["restage_seconds"] = time.perf_counter() - started
    out["restage_ledger_rows"] = ledger.height
    out["peak_mib"] = _status_mib("VmHWM")
    return out


def run_child(folder: Path) -> dict[str, Any]:
    """Run the timed steps in a fresh interpreter; its last stdout line is the JSON result."""
    command = [sys.executable, "-m", "benchmarks.scoring_scale", "--child", "--dir", str(folder)]
    done = subprocess.run(command, cwd=REPO, stdout=subprocess.PIPE, text=True, check=False)
    if done.returncode != 0:
        return {"failed": f"child exited with {done.returncode}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def _code_version() -> str:
    """Which scoring and staging code is in the tree: each file's content hash."""
    files = (Path(scoring.__file__ or ""), Path(stages.__file__ or ""))
    return ", ".join(
        f"{path.name} sha1 {hashlib.sha1(path.read_bytes()).hexdigest()[:12]}" for path in files
    )


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--leads", type=int, default=1_000_000)
    parser.add_argument("--activities", type=int, default=10_000_000)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child_run(args.dir)))
        return

    print(f"benchmark: scoring_scale ({machine()}) {datetime.now():%F %H:%M}")
    print(f"code: {_code_version()}, polars {pl.__version__}")
    started = time.perf_counter()
    folder = prepare(args.leads, args.activities, args.seed)
    print(
        f"data: {args.leads:,} unified leads, {args.activities:,} activities, seed {args.seed}, "
        f"ready in {time.perf_counter() - started:.1f} s (cached after the first run)"
    )
    result = run_child(folder)
    if "failed" in result:
        print(f"run: {result['failed']}")
        print(f"\ntarget {'score + stage':<40} FAIL")
        return
    first = result["score_seconds"] + result["stages_seconds"]
    again = result["score_seconds"] + result["restage_seconds"]
    # The process's peak: loading's own or the steps' (which include the loaded data).
    peak_mib = max(result["peak_mib"], result["peak_after_load_mib"])
    print(
        f"score {result['leads']:,} leads / {result['activities']:,} activities: "
        f"{result['score_seconds']:.1f} s (peak RSS {result['score_peak_mib']:,.0f} MiB)"
    )
    print(
        f"assign_stages, first run (no stored stages): {result['stages_seconds']:.1f} s, "
        f"{result['ledger_rows']:,} ledger rows (peak RSS {result['stages_peak_mib']:,.0f} MiB)"
    )
    print(
        f"assign_stages, next run (previous stages stored): {result['restage_seconds']:.1f} s, "
        f"{result['restage_ledger_rows']:,} ledger rows"
    )
    print(f"total score + stage: {first:.1f} s first run, {again:.1f} s next run")
    print(
        f"peak RSS {peak_mib:,.0f} MiB ({peak_mib / 1024:.2f} GiB); the loaded inputs alone hold "
        f"{result['rss_after_load_mib']:,.0f} MiB (load peak "
        f"{result['peak_after_load_mib']:,.0f} MiB), so the steps added "
        f"{result['peak_mib'] - result['rss_after_load_mib']:,.0f} MiB at their peak"
    )
    print(f"    stages: {result['by_stage']}")
    print(f"    temperature: {result['by_temperature']}")
    worst = max(first, again)
    print()
    checks = [
        (f"score + stage in <= {TARGET_SECONDS:.0f} s", worst <= TARGET_SECONDS),
        (f"peak RSS <= {TARGET_PEAK_GIB:.0f} GiB", peak_mib / 1024 <= TARGET_PEAK_GIB),
    ]
    for name, ok in checks:
        print(f"target {name:<40} {_verdict(ok)}")


if __name__ == "__main__":
    main()
