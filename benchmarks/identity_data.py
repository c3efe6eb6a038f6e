"""Canonical lead records and identity truth from the sandbox generator, for identity benchmarks.

The generator's person records (HubSpot contacts, Salesforce Leads and Contacts; English and
Japanese; hard negatives by construction, see docs/sandbox-data.md) go through the real
`normalize_leads`, in the shape the worker's store hands it: one frame of strings per CRM object,
one column per field, flattened the way the connectors flatten API records. Generation streams
chunk by chunk (`iter_generate`), so a million records never need the whole raw dataset in memory.

Results are cached as parquet under `.bench_cache/`, keyed by (people, seed) and a hash of the
files that decide the content (generator, normalisation, model, this file), so reruns load in
about a second and any change to those files rebuilds.

    .venv/bin/python -m benchmarks.identity_data --records 1010000   # warm the cache ahead
"""

import argparse
import hashlib
import json
import math
import shutil
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import polars as pl

from connectors.sandbox import generator
from connectors.sandbox.generator import iter_generate
from orchestration.funnel import model, normalize
from orchestration.funnel.normalize import DEFAULT_LEAD_MAPPINGS, normalize_leads
from orchestration.store import field_text

REPO = Path(__file__).resolve().parents[1]
CACHE_DIR = REPO / ".bench_cache"
DEFAULT_SEED = 5  # issue 5

# Files whose content decides the cached frames; any edit to one of them rebuilds the cache.
_SOURCES: tuple[Path, ...] = (
    Path(generator.__file__),
    Path(generator.__file__).with_name("generator_data.py"),
    Path(normalize.__file__),
    Path(model.__file__),
    Path(__file__),
)

# The person objects, and Accounts because a Contact takes its company from its Account.
_HUBSPOT_OBJECTS = ("contacts",)
_SALESFORCE_OBJECTS = ("Lead", "Contact", "Account")


@dataclass(frozen=True)
class IdentityData:
    """Canonical records (CANONICAL_LEAD_SCHEMA) and their truth (record_id, person_id)."""

    records: pl.DataFrame
    truth: pl.DataFrame
    people: int
    seed: int


def source_hash() -> str:
    """Short hash of the files that decide the data (the cache key's code part)."""
    digest = hashlib.sha1()
    for path in _SOURCES:
        if path.exists():
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


# --------------------------------------------------------------------------------------------
# Generator load format -> the raw string frames normalize_leads reads
# --------------------------------------------------------------------------------------------


def _hubspot_time(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S.000Z")  # as HubSpot's API (and emulator) write it


def _text(value: object, *, salesforce: bool) -> str | None:
    """One field value as the store keeps it (`field_text`), with the generator's datetimes
    written as the CRM APIs write them (HubSpot `...000Z`, Salesforce `...000+0000`)."""
    if isinstance(value, datetime):
        if salesforce:
            return value.strftime("%Y-%m-%dT%H:%M:%S.000+0000")
        return _hubspot_time(value)
    return field_text(value)  # a date's str() is its ISO form, as the APIs write it


def _hubspot_row(record: Mapping[str, object]) -> dict[str, str | None]:
    """A HubSpot load-format record flattened as the connector flattens an API object: `id`,
    every property, `archived`, and the properties HubSpot derives (`hs_object_id`, created and
    modified dates)."""
    properties = record.get("properties")
    row: dict[str, str | None] = {"id": str(record["id"])}
    if isinstance(properties, Mapping):
        row.update({k: _text(v, salesforce=False) for k, v in properties.items()})
    row["hs_object_id"] = row["id"]
    for field, key in (("createdate", "createdAt"), ("lastmodifieddate", "updatedAt")):
        stamp = record.get(key)
        if isinstance(stamp, datetime):
            row[field] = _hubspot_time(stamp)
    row["archived"] = "true" if record.get("archived") else "false"
    return row


def _salesforce_row(record: Mapping[str, object]) -> dict[str, str | None]:
    return {k: _text(v, salesforce=True) for k, v in record.items()}


def _strings_frame(rows: Sequence[Mapping[str, str | None]]) -> pl.DataFrame:
    """Rows of text -> a frame with one String column per field (missing fields are null)."""
    if not rows:
        return pl.DataFrame()
    columns = sorted({k for row in rows for k in row})
    return pl.DataFrame(
        {c: [row.get(c) for row in rows] for c in columns},
        schema={c: pl.String() for c in columns},
    )


def raw_person_frames(
    hubspot: Mapping[str, Sequence[Mapping[str, object]]],
    salesforce: Mapping[str, Sequence[Mapping[str, object]]],
) -> dict[str, pl.DataFrame]:
    """Generator records (docs/sandbox-data.md load format) -> the "<system>:<object>" frames of
    strings that `normalize_leads` reads, for the person objects and Accounts."""
    raw: dict[str, pl.DataFrame] = {}
    for obj in _HUBSPOT_OBJECTS:
        raw[f"hubspot:{obj}"] = _strings_frame([_hubspot_row(r) for r in hubspot.get(obj, [])])
    for obj in _SALESFORCE_OBJECTS:
        raw[f"salesforce:{obj}"] = _strings_frame(
            [_salesforce_row(r) for r in salesforce.get(obj, [])]
        )
    return raw


# --------------------------------------------------------------------------------------------
# Building and caching
# --------------------------------------------------------------------------------------------


def _cache_dir(people: int, seed: int) -> Path:
    return CACHE_DIR / f"identity-p{people}-s{seed}-{source_hash()}"


_STALE_AFTER_S = 3600


def prune_stale() -> None:
    """Delete cache entries built from other versions of the source files (their names end in
    another hash) once untouched for an hour: a million records take ~150 MB and the sources
    change often, but another run may still be building or reading an entry of its own."""
    current = source_hash()
    if not CACHE_DIR.exists():
        return
    now = time.time()
    for entry in CACHE_DIR.iterdir():
        if entry.name.removesuffix(".json").removesuffix(".parts").endswith(current):
            continue
        try:
            if now - entry.stat().st_mtime < _STALE_AFTER_S:
                continue
        except FileNotFoundError:  # another run pruned it first
            continue
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


def build(
    people: int, seed: int, *, chunk_people: int = 10_000, log: bool = True
) -> tuple[Path, Path]:
    """Generate `people` people, normalise their records chunk by chunk and cache them.

    Returns the (records, truth) parquet paths. Memory is one chunk plus the Accounts seen so far
    (a Contact may belong to an Account of an earlier chunk, one Account per ~10 people)."""
    target = _cache_dir(people, seed)
    records_path, truth_path = target / "records.parquet", target / "truth.parquet"
    if records_path.exists() and truth_path.exists():
        return records_path, truth_path
    prune_stale()
    parts = target.with_name(target.name + ".parts")
    shutil.rmtree(parts, ignore_errors=True)
    parts.mkdir(parents=True)
    started = time.perf_counter()
    accounts: list[pl.DataFrame] = []
    n_chunks = max(1, math.ceil(people / chunk_people))
    for chunk in iter_generate(people, seed, chunk_people=chunk_people):
        raw = raw_person_frames(chunk.hubspot, chunk.salesforce)
        if raw["salesforce:Account"].height:
            accounts.append(raw["salesforce:Account"])
        raw["salesforce:Account"] = (
            pl.concat(accounts, how="diagonal") if accounts else pl.DataFrame()
        )
        leads = normalize_leads(raw, DEFAULT_LEAD_MAPPINGS)
        leads.write_parquet(parts / f"records-{chunk.index:05d}.parquet")
        truth = pl.DataFrame(
            {
                "record_id": [row.key for row in chunk.truth],
                "person_id": [row.person_id for row in chunk.truth],
            },
            schema={"record_id": pl.String(), "person_id": pl.String()},
        )
        truth.write_parquet(parts / f"truth-{chunk.index:05d}.parquet")
        if log and (chunk.index % 10 == 9 or chunk.index + 1 == n_chunks):
            elapsed = time.perf_counter() - started
            print(
                f"  generated and normalised chunk {chunk.index + 1}/{n_chunks} ({elapsed:.0f} s)",
                file=sys.stderr,
                flush=True,
            )
    target.mkdir(parents=True, exist_ok=True)
    # Write to temporary names first so an interrupted build never leaves a half cache behind.
    pl.scan_parquet(parts / "records-*.parquet").sink_parquet(target / "records.tmp")
    pl.scan_parquet(parts / "truth-*.parquet").sink_parquet(target / "truth.tmp")
    (target / "truth.tmp").rename(truth_path)
    (target / "records.tmp").rename(records_path)
    shutil.rmtree(parts)
    return records_path, truth_path


def load(people: int, seed: int = DEFAULT_SEED, *, log: bool = True) -> IdentityData:
    """Canonical records and truth for `people` generated people (built once, then cached)."""
    records_path, truth_path = build(people, seed, log=log)
    records = pl.read_parquet(records_path)
    truth = pl.read_parquet(truth_path)
    return IdentityData(records, truth, people, seed)


def records_per_person(seed: int = DEFAULT_SEED, sample_people: int = 5_000) -> float:
    """Person records per generated person, measured on a small sample (and cached)."""
    path = CACHE_DIR / f"ratio-p{sample_people}-s{seed}-{source_hash()}.json"
    if path.exists():
        return float(json.loads(path.read_text())["records_per_person"])
    data = load(sample_people, seed, log=False)
    ratio = data.records.height / sample_people
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"records_per_person": ratio}))
    return ratio


def trim(data: IdentityData, records: int) -> IdentityData:
    """The first `records` records in person order (whole people, the last one possibly cut)."""
    keep = (
        data.truth.join(data.records.select("record_id"), on="record_id", how="semi")
        .sort("person_id", "record_id")
        .head(records)
    )
    kept = data.records.join(keep.select("record_id"), on="record_id", how="semi")
    return IdentityData(kept, keep, keep["person_id"].n_unique(), data.seed)


def load_records(records: int, seed: int = DEFAULT_SEED, *, log: bool = True) -> IdentityData:
    """About `records` canonical records: enough people for that many (from the measured records
    per person, plus a margin), trimmed to exactly `records` when there are more."""
    ratio = records_per_person(seed)
    people = math.ceil(records / ratio * 1.01) + 50
    data = load(people, seed, log=log)
    if data.records.height < records:  # the sample's ratio was optimistic: ask for more people
        people = math.ceil(people * records / max(data.records.height, 1) * 1.02) + 50
        data = load(people, seed, log=log)
    return trim(data, records)


def split_newest(data: IdentityData, new: int) -> tuple[IdentityData, IdentityData]:
    """(stored, arriving): the `new` most recently created records are held out as new arrivals
    (what an incremental sync brings), the rest is the stored base. Truth is split alike."""
    order = data.records.select("record_id", "created_at").sort(
        "created_at", "record_id", descending=True, nulls_last=True
    )
    newest = order.head(new).select("record_id")
    parts: list[IdentityData] = []
    for how in ("anti", "semi"):
        records = data.records.join(newest, on="record_id", how=how)
        truth = data.truth.join(newest, on="record_id", how=how)
        parts.append(IdentityData(records, truth, truth["person_id"].n_unique(), data.seed))
    return parts[0], parts[1]


def describe(data: IdentityData) -> dict[str, int]:
    """Counts for the benchmark header: records, people, languages, systems, truth coverage."""
    records, truth = data.records, data.truth
    per_person = truth.group_by("person_id").len()
    locale = records["locale"].fill_null("unknown").value_counts()
    out = {
        "records": records.height,
        "people": truth["person_id"].n_unique(),
        "people_with_several_records": per_person.filter(pl.col("len") > 1).height,
        "true_pairs": int((per_person["len"] * (per_person["len"] - 1) // 2).sum()),
        "records_without_truth": records.join(truth, on="record_id", how="anti").height,
        "deleted": int(records["is_deleted"].fill_null(False).sum()),
    }
    for row in locale.iter_rows():
        out[f"locale_{row[0]}"] = int(row[1])
    for row in records["source_object"].value_counts().iter_rows():
        out[f"object_{row[0]}"] = int(row[1])
    return out


def main(argv: Iterable[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    args = parser.parse_args(list(argv) if argv is not None else None)
    started = time.perf_counter()
    data = load_records(args.records, args.seed)
    print(f"{args.records:,} records ready in {time.perf_counter() - started:.1f} s")
    for key, value in describe(data).items():
        print(f"  {key:<30} {value:>12,}")


if __name__ == "__main__":
    main()
