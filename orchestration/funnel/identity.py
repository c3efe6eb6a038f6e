"""Identity resolution: which lead records are the same person, precision first.

Background: shared/reference/entity_resolution_notes.md §5. Four kinds of evidence, strongest first:

* tier 0, rule "hard_link": a record's `linked_record_ids` (HubSpot's Salesforce ids and merged ids,
  Salesforce ConvertedContactId and MasterRecordId) are identity facts. Links to records not in the
  input are ignored. Deleted records take part here only, so a merge loser stays with its winner.
* a person's decision, rule "user": a review pair accepted with `leadsync review accept`.
* tier 1, rule "email": live records sharing a normalised address (primary or secondary), unless
  it is a role mailbox (info@, toiawase@: shared, never a person) or the group's given names
  conflict; a vetoed group is not merged by email at all.
* tier 2, rule "probabilistic": records that share a blocking key (name + company, reading +
  domain, mobile number ...) are compared field by field. Each comparison level carries a
  Fellegi-Sunter weight log2(m/u): u (how often unrelated records agree this way) comes from
  random pairs, with term frequencies for exact names, companies, domains and phones, so "John
  Smith" or a switchboard number counts for little; m (how often the same person agrees this way)
  comes from the tier 0/1 pairs of the same data, the labelled positives every CRM already holds.
  A pair's weight is the sum. At or above `auto_merge_weight` it merges if the address or the
  person's own number agrees too (or the job title, with name and firm, at `title_merge_weight`);
  at or above `review_weight` it waits for a person; below it stays apart.

Vetoes keep two people apart whatever the weight: conflicting given names (not a prefix, a known
nickname, a typo or a first/last swap), different addresses at one corporate domain (colleagues),
two Salesforce Contacts of different Accounts with different addresses, and every pair a person
rejected or split (`leadsync review reject`, `leadsync unmerge`). They hold across whole clusters,
not only on the compared pair: edges are applied strongest first, and an edge that would put two
vetoed records into one cluster is skipped (constrained clustering). Hard links are facts and are
always applied.

Each record gets a band: "auto_merge" (its cluster has several records), "review" (a pair with a
record outside its cluster waits for a person) or "keep_apart". `pairs` is the merge log: every
applied edge, review pair and vetoed pair with the comparison levels and weights behind it.

Unified ids are stable: "UL-" + the first 12 hex digits of the SHA-1 of the cluster's smallest
record_id, except that a previous id is kept by the cluster holding most of its members.
`update` matches new and changed records against a stored graph and re-clusters only the clusters
they touch.
"""

import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

import polars as pl
from rapidfuzz.distance import JaroWinkler, Levenshtein

from orchestration.funnel.model import IDENTITY_PAIR_SCHEMA, IDENTITY_SCHEMA, empty_frame
from orchestration.funnel.normalize import (
    company_key_expr,
    email_is_free_expr,
    email_is_role_expr,
    given_name_key_expr,
    name_key_expr,
    name_romaji,
    normalize_email_expr,
)

BAND_AUTO_MERGE: Final = "auto_merge"
BAND_REVIEW: Final = "review"
BAND_KEEP_APART: Final = "keep_apart"

RULE_HARD_LINK: Final = "hard_link"
RULE_USER: Final = "user"
RULE_EMAIL: Final = "email"
RULE_PROBABILISTIC: Final = "probabilistic"

DECISION_ACCEPT: Final = "accept"
DECISION_REJECT: Final = "reject"

# A person's decisions on pairs: accept = must-link, reject = cannot-link.
DECISION_SCHEMA: dict[str, pl.DataType] = {
    "record_a": pl.String(),
    "record_b": pl.String(),
    "decision": pl.String(),
    "decided_by": pl.String(),
    "decided_at": pl.Datetime("us", "UTC"),
    "note": pl.String(),
}


@dataclass(frozen=True)
class IdentitySettings:
    """The lead definition's `identity` rules (see lead_definition/global.yaml)."""

    auto_merge_weight: float = 12.0
    review_weight: float = 6.0
    max_merge_share: float = 0.5
    max_block_size: int = 60
    # Name, firm and job title agreeing with no address or number in common (a record typed in
    # again) merge at or above this weight; below it they wait for review.
    title_merge_weight: float = 20.0


class MergeGuardError(RuntimeError):
    """A run would merge more of the records than the definition allows; nothing was stored."""

    def __init__(self, share: float, limit: float, merged: int, total: int) -> None:
        self.share, self.limit, self.merged, self.total = share, limit, merged, total
        super().__init__(
            f"identity resolution would newly merge {merged:,} of {total:,} records "
            f"({share:.1%}), above identity.max_merge_share = {limit:.1%}; nothing was written. "
            "Check the merge log for a bad rule or a broken source field, or raise the limit in "
            "the lead definition if the merges are real (a first import of duplicated data)."
        )


# --------------------------------------------------------------------------------------------
# Input
# --------------------------------------------------------------------------------------------

# The canonical columns resolve() reads; anything missing from the input is treated as null.
_INPUT_SCHEMA: dict[str, pl.DataType] = {
    "record_id": pl.String(),
    "source_object": pl.String(),
    "linked_record_ids": pl.List(pl.String()),
    "email": pl.String(),
    "secondary_emails": pl.List(pl.String()),
    "email_is_role": pl.Boolean(),
    "first_name": pl.String(),
    "last_name": pl.String(),
    "given_key": pl.String(),
    "family_key": pl.String(),
    "name_key": pl.String(),
    "name_reading": pl.String(),
    "name_romaji": pl.String(),
    "company": pl.String(),
    "company_key": pl.String(),
    "company_domain": pl.String(),
    "phone": pl.String(),
    "phone_type": pl.String(),
    "title": pl.String(),
    "source_account_id": pl.String(),
    "is_deleted": pl.Boolean(),
}

# The matching frame: what the graph keeps of each record.
MATCH_SCHEMA: dict[str, pl.DataType] = {
    **{
        c: t
        for c, t in _INPUT_SCHEMA.items()
        if c not in ("first_name", "last_name", "company", "title")
    },
    "title_key": pl.String(),
    "email_local": pl.String(),
    "email_domain": pl.String(),
    "personal_phone": pl.String(),
    "mobile_phone": pl.String(),
}

# Phone types that many people share: a number of this type is company evidence at most.
_SHARED_PHONE_TYPES: Final = ("toll_free", "shared_cost")


def _as_frame(records: pl.DataFrame | Sequence[Mapping[str, object]]) -> pl.DataFrame:
    """Input records -> the typed matching frame, one row per record_id, sorted by record_id.

    Derived keys (name, given, family and company keys) are computed where the caller did not
    provide them, and emails are normalised unless the records come from `normalize_leads`
    (which keeps `email_raw` beside the normalised address): callers may hand over raw fields.
    """
    if isinstance(records, pl.DataFrame):
        provided = {c for c in records.columns if records[c].null_count() < records.height}
        canonical = "email_raw" in records.columns
        missing = [c for c in _INPUT_SCHEMA if c not in records.columns]
        df = records.with_columns(
            pl.lit(None, dtype=_INPUT_SCHEMA[c]).alias(c) for c in missing
        ).select(pl.col(c).cast(t) for c, t in _INPUT_SCHEMA.items())
    else:
        rows = [dict(r) for r in records]
        provided = {k for r in rows for k, v in r.items() if v is not None}
        canonical = False
        df = pl.from_dicts(rows, schema=_INPUT_SCHEMA, infer_schema_length=None)

    def derived(column: str, expr: pl.Expr) -> pl.Expr:
        # Computing a key for a million records costs seconds; canonical input already has it.
        return (pl.col(column) if column in provided else expr).alias(column)

    email = (
        [pl.col("email"), pl.col("secondary_emails").fill_null([])]
        if canonical
        else [
            normalize_email_expr("email").alias("email"),
            pl.col("secondary_emails")
            .list.eval(normalize_email_expr(pl.element()))
            .list.drop_nulls()
            .fill_null([]),
        ]
    )
    df = (
        df.filter(pl.col("record_id").is_not_null())
        .unique("record_id", keep="first")
        .sort("record_id")
        .with_columns(
            *email,
            pl.col("linked_record_ids").fill_null([]),
            derived("name_key", name_key_expr("first_name", "last_name")),
            derived("given_key", given_name_key_expr("first_name")),
            derived("family_key", given_name_key_expr("last_name")),
            derived("company_key", company_key_expr("company")),
            pl.col("is_deleted").fill_null(False),
        )
    )
    if "name_romaji" not in provided:
        df = df.with_columns(
            name_romaji(
                df["first_name"],
                df["last_name"],
                pl.Series(values=[None] * df.height, dtype=pl.String),
                pl.Series(values=[None] * df.height, dtype=pl.String),
            ).alias("name_romaji")
        )
    local = pl.col("email").str.split("@").list.first()
    domain = pl.col("email").str.split("@").list.last()
    df = df.with_columns(
        derived("email_is_role", email_is_role_expr("email")),
        pl.when(pl.col("email").is_not_null()).then(local).alias("email_local"),
        pl.when(pl.col("email").is_not_null()).then(domain).alias("email_domain"),
        derived(
            "company_domain", pl.when(~email_is_free_expr("email").fill_null(True)).then(domain)
        ),
        pl.when(pl.col("phone_type").is_in(_SHARED_PHONE_TYPES).not_())
        .then(pl.col("phone"))
        .when(pl.col("phone_type").is_null())
        .then(pl.col("phone"))
        .alias("personal_phone"),
        pl.when(pl.col("phone_type") == "mobile").then(pl.col("phone")).alias("mobile_phone"),
        # "Head of Demand Generation" and "head of demand-generation", 人事部 部長 and 人事部部長.
        pl.col("title")
        .str.normalize("NFKC")
        .str.to_lowercase()
        .str.replace_all(r"[\s\p{P}]+", "")
        .replace("", None)
        .alias("title_key"),
    )
    return df.select(pl.col(c).cast(t) for c, t in MATCH_SCHEMA.items()).with_row_index("_i")


# --------------------------------------------------------------------------------------------
# Comparisons and their weights
# --------------------------------------------------------------------------------------------

# Comparison -> its levels, most to least similar. "null" = a side is missing: no evidence.
LEVELS: Final[dict[str, tuple[str, ...]]] = {
    "email": ("same", "same_local", "diff", "null"),
    "name": ("exact", "reading", "romaji", "close", "similar", "diff", "null"),
    "company": ("same_key", "same_domain", "close", "diff", "null"),
    "phone": ("same_mobile", "same_fixed", "same_shared", "diff", "null"),
}

# m priors: how often one person's two records agree at each level. Used where the data holds too
# few labelled pairs (tier 0/1) to estimate m, and always for email, because the labelled pairs
# are chosen by email and would say "always the same address".
_M_PRIORS: Final[dict[str, dict[str, float]]] = {
    "email": {"same": 0.55, "same_local": 0.08, "diff": 0.30, "null": 0.07},
    "name": {
        "exact": 0.78,
        "reading": 0.04,
        "romaji": 0.05,
        "close": 0.08,
        "similar": 0.03,
        "diff": 0.04,
        "null": 0.03,
    },
    "company": {"same_key": 0.60, "same_domain": 0.12, "close": 0.08, "diff": 0.12, "null": 0.08},
    "phone": {
        "same_mobile": 0.10,
        "same_fixed": 0.15,
        "same_shared": 0.01,
        "diff": 0.25,
        "null": 0.49,
    },
}
# u priors: how often two unrelated records of a B2B CRM agree at each level. Used below
# _MIN_RECORDS_FOR_U live records, where random pairs and term frequencies say too little.
_U_PRIORS: Final[dict[str, dict[str, float]]] = {
    "email": {"same": 1e-6, "same_local": 1e-5, "diff": 0.95, "null": 0.05},
    "name": {
        "exact": 2e-5,
        "reading": 1e-5,
        "romaji": 2e-5,
        "close": 1e-4,
        "similar": 1e-3,
        "diff": 0.95,
        "null": 0.05,
    },
    "company": {"same_key": 1e-3, "same_domain": 1e-3, "close": 2e-3, "diff": 0.8, "null": 0.2},
    "phone": {
        "same_mobile": 1e-7,
        "same_fixed": 1e-5,
        "same_shared": 1e-4,
        "diff": 0.5,
        "null": 0.5,
    },
}
_MIN_RECORDS_FOR_U: Final = 1_000
# Below this many labelled pairs m is taken from the priors.
_MIN_LABELLED_PAIRS: Final = 500
# Random pairs sampled to estimate u.
_U_SAMPLE_PAIRS: Final = 150_000
# Term-frequency u is never taken below these: the data seen is a sample of the world, and two
# people sharing a rare full name or a small firm is likelier than its count here suggests.
_TF_FLOOR: Final[dict[str, float]] = {"name": 1e-4, "company": 1e-3, "phone": 1e-6}
# Similarity cut-offs (Jaro-Winkler) for the fuzzy levels.
_NAME_CLOSE, _NAME_SIMILAR, _COMPANY_CLOSE = 0.94, 0.88, 0.92
# Most a same fixed-line number adds when the company already agrees.
_SWITCHBOARD_CAP: Final = 2.0
# Most the same email local part at another domain adds when the names already agree.
_NAME_LOCAL_CAP: Final = 2.0
# A job title more records of one firm hold than this is common there: at a million generated
# records the title rule's false merges were students, graduate students and interns of one
# university (267 of 343 false edges were titles over 50 records held); counting only titles
# 8 or fewer of the firm's records hold leaves 43 false edges for 9,356 true ones.
_FIRM_TITLE_COMMON: Final = 8
# Given names this similar (or one a prefix of the other) do not conflict: typos, "Rob"/"Robert".
_GIVEN_COMPATIBLE: Final = 0.85

# Common English nicknames -> formal given name: "Bob Smith" is not a different person from
# "Robert Smith". Folded keys (lower case) on both sides.
NICKNAMES: Final[dict[str, str]] = {
    "bob": "robert",
    "rob": "robert",
    "bobby": "robert",
    "bill": "william",
    "will": "william",
    "billy": "william",
    "liam": "william",
    "jim": "james",
    "jimmy": "james",
    "jamie": "james",
    "mike": "michael",
    "mick": "michael",
    "kate": "katherine",
    "katie": "katherine",
    "kathy": "katherine",
    "cathy": "catherine",
    "liz": "elizabeth",
    "beth": "elizabeth",
    "betty": "elizabeth",
    "lisa": "elizabeth",
    "tom": "thomas",
    "tommy": "thomas",
    "dave": "david",
    "dan": "daniel",
    "danny": "daniel",
    "chris": "christopher",
    "matt": "matthew",
    "tony": "anthony",
    "joe": "joseph",
    "sam": "samuel",
    "alex": "alexander",
    "ben": "benjamin",
    "nick": "nicholas",
    "steve": "steven",
    "stephen": "steven",
    "andy": "andrew",
    "drew": "andrew",
    "ed": "edward",
    "ted": "edward",
    "jen": "jennifer",
    "jenny": "jennifer",
    "jess": "jessica",
    "pat": "patricia",
    "patty": "patricia",
    "peggy": "margaret",
    "maggie": "margaret",
    "meg": "margaret",
    "sue": "susan",
    "susie": "susan",
    "becky": "rebecca",
    "greg": "gregory",
    "jeff": "jeffrey",
    "jon": "jonathan",
    "john": "john",
    "johnny": "john",
    "jack": "john",
    "rick": "richard",
    "rich": "richard",
    "dick": "richard",
    "charlie": "charles",
    "chuck": "charles",
    "fred": "frederick",
    "larry": "lawrence",
    "ken": "kenneth",
    "kenny": "kenneth",
    "ron": "ronald",
    "don": "donald",
    "tim": "timothy",
    "vicky": "victoria",
    "abby": "abigail",
    "mandy": "amanda",
    "sandy": "sandra",
    "debbie": "deborah",
    "deb": "deborah",
    "pam": "pamela",
    "cindy": "cynthia",
    "nate": "nathan",
    "zach": "zachary",
}

# Blocking rules: records sharing all columns of a rule are compared. Each is selective on its
# own; a key shared by more than `max_block_size` records is too generic to be evidence.
BLOCKING_RULES: Final[dict[str, tuple[str, ...]]] = {
    "name+company": ("name_key", "company_key"),
    "name+domain": ("name_key", "company_domain"),
    "name+phone": ("name_key", "personal_phone"),
    "romaji+company": ("name_romaji", "company_key"),
    "romaji+domain": ("name_romaji", "company_domain"),
    "romaji+phone": ("name_romaji", "personal_phone"),
    "reading+company": ("name_reading", "company_key"),
    "reading+domain": ("name_reading", "company_domain"),
    "family+company": ("family_key", "company_key"),
    "family+domain": ("family_key", "company_domain"),
    "given+company": ("given_key", "company_key"),
    "mobile": ("mobile_phone",),
    # Addresses tier 1 leaves out (spelt from a name, or shared by conflicting names) are scored.
    "email": ("email",),
}


PARAMS_SCHEMA: dict[str, pl.DataType] = {
    "comparison": pl.String(),
    "level": pl.String(),
    "m": pl.Float64(),
    "u": pl.Float64(),
    "labelled_pairs": pl.Int64(),
    "records": pl.Int64(),
}


@dataclass(frozen=True)
class MatchParams:
    """Level weights of one resolution: log2(m/u) per (comparison, level), plus the term
    frequency tables of the exact levels."""

    m: dict[str, dict[str, float]]
    u: dict[str, dict[str, float]]
    tf: dict[str, pl.DataFrame] = field(default_factory=dict)
    labelled_pairs: int = 0
    records: int = 0

    def weight(self, comparison: str, level: str) -> float:
        return math.log2(self.m[comparison][level] / self.u[comparison][level])

    def to_rows(self) -> pl.DataFrame:
        """m and u per (comparison, level), to store next to the graph."""
        return pl.DataFrame(
            [
                (c, lv, self.m[c][lv], self.u[c][lv], self.labelled_pairs, self.records)
                for c, levels in LEVELS.items()
                for lv in levels
            ],
            schema=PARAMS_SCHEMA,
            orient="row",
        )

    @classmethod
    def from_rows(cls, rows: pl.DataFrame, records: pl.DataFrame) -> "MatchParams":
        """The stored m/u rows, with term frequencies recounted from the stored records."""
        m: dict[str, dict[str, float]] = {c: dict(v) for c, v in _M_PRIORS.items()}
        u: dict[str, dict[str, float]] = {c: dict(v) for c, v in _U_PRIORS.items()}
        for c, lv, mv, uv, _, _ in rows.iter_rows():
            if c in LEVELS and lv in LEVELS[c]:
                m[c][lv], u[c][lv] = mv, uv
        top = rows.select(pl.col("labelled_pairs", "records").fill_null(0).max())
        labelled, n = (int(v or 0) for v in top.row(0)) if rows.height else (0, 0)
        tf = term_frequencies(records) if n >= _MIN_RECORDS_FOR_U else {}
        live = records.filter(~pl.col("is_deleted")).height
        return cls(m=m, u=u, tf=tf, labelled_pairs=labelled, records=live if tf else n)


def _similarity(
    pairs: pl.DataFrame, left: str, right: str, scorer: str = "jaro_winkler"
) -> pl.Series:
    """Jaro-Winkler similarity (or Levenshtein distance) of two string columns, row by row.

    rapidfuzz is C++ but called per value: it runs once per distinct pair of strings that are
    both present and differ, which is what fuzzy levels need.
    """
    both = pairs.select(pl.col(left).alias("l"), pl.col(right).alias("r"))
    todo = both.filter(
        pl.col("l").is_not_null() & pl.col("r").is_not_null() & (pl.col("l") != pl.col("r"))
    ).unique()
    fn = JaroWinkler.normalized_similarity if scorer == "jaro_winkler" else Levenshtein.distance
    scores = [fn(a, b) for a, b in zip(todo["l"].to_list(), todo["r"].to_list(), strict=True)]
    dtype = pl.Float64 if scorer == "jaro_winkler" else pl.Int64
    todo = todo.with_columns(pl.Series("s", scores, dtype=dtype))
    exact = 1.0 if scorer == "jaro_winkler" else 0
    out = both.join(todo, on=["l", "r"], how="left", maintain_order="left").with_columns(
        pl.when(pl.col("l") == pl.col("r")).then(pl.lit(exact, dtype=dtype)).otherwise("s")
    )
    return out["s"]


# The columns comparisons and vetoes read; the rest of the matching frame stays out of the
# (large) pair frames.
_COMPARED: Final = (
    "source_object",
    "email",
    "secondary_emails",
    "email_is_role",
    "email_local",
    "email_domain",
    "given_key",
    "family_key",
    "name_key",
    "name_reading",
    "name_romaji",
    "company_key",
    "company_domain",
    "phone",
    "phone_type",
    "source_account_id",
    # per-record features (_with_features)
    "email_free",
    "email_name_made",
    "phone_names",
    "title_hash",
    "title_common",
    "given_ja",
    "family_ja",
    "given_nick",
    "tf_name",
    "tf_romaji",
    "tf_company",
    "tf_domain",
    "tf_phone",
)


def _pair_frame(df: pl.DataFrame, pairs: pl.DataFrame) -> pl.DataFrame:
    """(a, b) index pairs -> one row per pair with both records' compared columns (_a, _b)."""
    cols = [c for c in _COMPARED if c in df.columns]
    left = df.select(pl.col("_i").alias("a"), *[pl.col(c).alias(f"{c}_a") for c in cols])
    right = df.select(pl.col("_i").alias("b"), *[pl.col(c).alias(f"{c}_b") for c in cols])
    return pairs.join(left, on="a", how="left").join(right, on="b", how="left")


def _compare(p: pl.DataFrame) -> pl.DataFrame:
    """Comparison levels of each pair (columns email, name, company, phone) plus the fuzzy
    similarities the vetoes need."""
    p = p.with_columns(
        _similarity(p, "company_key_a", "company_key_b").alias("_company_sim"),
        _similarity(p, "given_key_a", "given_key_b").alias("_given_sim"),
        _similarity(p, "family_key_a", "family_key_b").alias("_family_sim"),
        _similarity(p, "given_key_a", "family_key_b").alias("_given_family_sim"),
        _similarity(p, "family_key_a", "given_key_b").alias("_family_given_sim"),
    )
    # A full name is as similar as its less similar part, with the parts matched either way
    # round (CRMs swap first and last names): "Katherine Miller" is not close to "Katherine
    # Martinez", however long the shared prefix.
    p = p.with_columns(
        pl.max_horizontal(
            pl.min_horizontal("_given_sim", "_family_sim"),
            pl.min_horizontal("_given_family_sim", "_family_given_sim"),
        ).alias("_name_sim")
    )

    def both(c: str) -> pl.Expr:
        return pl.col(f"{c}_a").is_not_null() & pl.col(f"{c}_b").is_not_null()

    def same(c: str) -> pl.Expr:
        return both(c) & (pl.col(f"{c}_a") == pl.col(f"{c}_b"))

    # A shared role mailbox (info@) says nothing about the person.
    shared_address = ~pl.col("email_is_role_a").fill_null(False) & (
        same("email")
        | pl.col("secondary_emails_a").list.contains(pl.col("email_b")).fill_null(False)
        | pl.col("secondary_emails_b").list.contains(pl.col("email_a")).fill_null(False)
    )
    email = (
        pl.when(shared_address)
        .then(pl.lit("same"))
        .when(
            same("email_local")
            & ~pl.col("email_is_role_a").fill_null(False)
            & (pl.col("email_local_a").str.len_chars() >= 4)
        )
        .then(pl.lit("same_local"))
        .when(
            both("email")
            & ~pl.col("email_is_role_a").fill_null(False)
            & ~pl.col("email_is_role_b").fill_null(False)
        )
        .then(pl.lit("diff"))
        .otherwise(pl.lit("null"))
    )
    name = (
        pl.when(same("name_key"))
        .then(pl.lit("exact"))
        .when(same("name_reading"))
        .then(pl.lit("reading"))
        .when(same("name_romaji"))
        .then(pl.lit("romaji"))
        .when(pl.col("_name_sim") >= _NAME_CLOSE)
        .then(pl.lit("close"))
        .when(pl.col("_name_sim") >= _NAME_SIMILAR)
        .then(pl.lit("similar"))
        .when(both("name_key"))
        .then(pl.lit("diff"))
        .otherwise(pl.lit("null"))
    )
    company = (
        pl.when(same("company_key"))
        .then(pl.lit("same_key"))
        .when(same("company_domain"))
        .then(pl.lit("same_domain"))
        .when(pl.col("_company_sim") >= _COMPANY_CLOSE)
        .then(pl.lit("close"))
        .when(both("company_key") | both("company_domain"))
        .then(pl.lit("diff"))
        .otherwise(pl.lit("null"))
    )
    shared_type = pl.col("phone_type_a").is_in(_SHARED_PHONE_TYPES).fill_null(False)
    phone = (
        pl.when(same("phone") & shared_type)
        .then(pl.lit("same_shared"))
        .when(same("phone") & (pl.col("phone_type_a") == "mobile"))
        .then(pl.lit("same_mobile"))
        .when(same("phone"))
        .then(pl.lit("same_fixed"))
        .when(both("phone"))
        .then(pl.lit("diff"))
        .otherwise(pl.lit("null"))
    )
    # Not a weighted comparison: a job title is shared by many unrelated people, and one person's
    # records often leave it out. It only corroborates name and firm (see _resolve_frame), and
    # only where few of the firm's records hold it ("common" otherwise).
    title = (
        pl.when(same("title_hash") & ~pl.col("title_common_a"))
        .then(pl.lit("same"))
        .when(same("title_hash"))
        .then(pl.lit("common"))
        .when(both("title_hash"))
        .then(pl.lit("diff"))
        .otherwise(pl.lit("null"))
    )
    return p.with_columns(
        email.alias("email"),
        name.alias("name"),
        company.alias("company"),
        phone.alias("phone"),
        title.alias("title"),
    )


def _level_shares(levels: pl.DataFrame, comparison: str) -> dict[str, float]:
    counts = dict(levels.group_by(comparison).len().iter_rows())
    total = max(levels.height, 1)
    return {lv: counts.get(lv, 0) / total for lv in LEVELS[comparison]}


def _random_pairs(n: int, k: int, seed: int = 20261121) -> pl.DataFrame:
    """k random (a, b) pairs of distinct indexes in [0, n), reproducible."""
    idx = pl.int_range(0, n, eager=True, dtype=pl.UInt32)
    a = idx.sample(k, with_replacement=True, seed=seed)
    b = idx.sample(k, with_replacement=True, seed=seed + 1)
    return pl.DataFrame({"a": a, "b": b}).filter(pl.col("a") != pl.col("b"))


def estimate_params(df: pl.DataFrame, labelled: pl.DataFrame) -> MatchParams:
    """u from random pairs of live records, m from labelled (tier 0/1) pairs, TF tables."""
    live = df.filter(~pl.col("is_deleted"))
    n = live.height
    u: dict[str, dict[str, float]] = {c: dict(v) for c, v in _U_PRIORS.items()}
    if n >= _MIN_RECORDS_FOR_U:
        k = min(_U_SAMPLE_PAIRS, n * (n - 1) // 2)
        rand = _random_pairs(n, k)
        live_i = live.with_row_index("_j").select("_j", "_i")
        rand = (
            rand.join(live_i, left_on="a", right_on="_j")
            .drop("a")
            .rename({"_i": "a"})
            .join(live_i, left_on="b", right_on="_j")
            .drop("b")
            .rename({"_i": "b"})
        )
        levels = _compare(_pair_frame(df, rand.select("a", "b")))
        floor = 1.0 / max(levels.height, 1)
        for c in LEVELS:
            u[c] = {lv: max(s, floor) for lv, s in _level_shares(levels, c).items()}

    m = {c: dict(v) for c, v in _M_PRIORS.items()}
    if labelled.height >= _MIN_LABELLED_PAIRS:
        sample = labelled.sample(min(labelled.height, 100_000), seed=7)
        levels = _compare(_pair_frame(df, sample.select("a", "b")))
        for c in ("name", "company", "phone"):
            shares = _level_shares(levels, c)
            # Add-one smoothing towards the prior so an unseen level never gets m = 0.
            weight = levels.height
            m[c] = {
                lv: (shares[lv] * weight + _M_PRIORS[c][lv] * 10) / (weight + 10)
                for lv in LEVELS[c]
            }

    tf = term_frequencies(df) if n >= _MIN_RECORDS_FOR_U else {}
    return MatchParams(m=m, u=u, tf=tf, labelled_pairs=labelled.height, records=n)


_TF_COLUMNS: Final[dict[str, str]] = {
    "name": "name_key",
    "romaji": "name_romaji",
    "company": "company_key",
    "domain": "company_domain",
    "phone": "phone",
}


def term_frequencies(df: pl.DataFrame) -> dict[str, pl.DataFrame]:
    """value -> share of live records holding it, for the columns whose exact agreement is
    weighted by how common the value is."""
    live = df.filter(~pl.col("is_deleted"))
    n = max(live.height, 1)
    return {
        key: live.filter(pl.col(column).is_not_null())
        .group_by(column)
        .len()
        .select(pl.col(column).alias("value"), (pl.col("len") / n).alias("tf"))
        for key, column in _TF_COLUMNS.items()
    }


def phone_name_counts(records: pl.DataFrame) -> pl.DataFrame:
    """phone -> how many different names live records with that number carry."""
    return (
        records.filter(pl.col("phone").is_not_null() & ~pl.col("is_deleted"))
        .group_by("phone")
        .agg(pl.col("name_key").n_unique().alias("phone_names"))
    )


def firm_title_counts(records: pl.DataFrame) -> pl.DataFrame:
    """(company_key, title_key) -> how many live records of that firm hold that job title."""
    return (
        records.filter(
            pl.col("company_key").is_not_null()
            & pl.col("title_key").is_not_null()
            & ~pl.col("is_deleted")
        )
        .group_by("company_key", "title_key")
        .len("firm_title_records")
    )


def _with_flags(
    df: pl.DataFrame,
    phone_names: pl.DataFrame | None = None,
    firm_titles: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Per-record columns the vetoes read, computed once per record instead of once per pair:
    free-mail and script flags, nicknames, how many different names share the phone and how
    many records of the firm hold the job title (`phone_names`, `firm_titles`: counted over the
    whole graph when the frame is only part of it)."""
    phones = phone_names if phone_names is not None else phone_name_counts(df)
    titles = firm_titles if firm_titles is not None else firm_title_counts(df)
    # A line only one name answers is that person's, however many records carry it; a
    # switchboard answers for many names.
    df = (
        df.join(phones, on="phone", how="left")
        .join(titles, on=["company_key", "title_key"], how="left")
        .sort("_i")
    )
    return df.with_columns(
        email_is_free_expr("email").fill_null(False).alias("email_free"),
        name_made_address(pl.col("email"), pl.col("name_romaji")).alias("email_name_made"),
        _japanese("given_key").alias("given_ja"),
        _japanese("family_key").alias("family_ja"),
        _nickname("given_key").alias("given_nick"),
        # Pairs compare titles as 64-bit hashes: with the strings in the pair frames, resolving
        # a million records peaked 217 MiB above the resolver without titles.
        pl.when(pl.col("title_key").is_not_null())
        .then(pl.col("title_key").hash(seed=11))
        .alias("title_hash"),
        # Students at a university, interns, engineers at a large firm: a title many records of
        # the firm hold says nothing about which of them a record is.
        (pl.col("firm_title_records") > _FIRM_TITLE_COMMON).fill_null(False).alias("title_common"),
    ).drop("firm_title_records")


def _with_features(df: pl.DataFrame, params: MatchParams) -> pl.DataFrame:
    """The vetoes' flags plus the term frequencies of the exactly-compared values."""
    out = df if "given_nick" in df.columns else _with_flags(df)
    for key, column in _TF_COLUMNS.items():
        table = params.tf.get(key)
        if table is None or table.height == 0:
            out = out.with_columns(pl.lit(None, dtype=pl.Float64).alias(f"tf_{key}"))
        else:
            renamed = table.rename({"value": column, "tf": f"tf_{key}"})
            out = out.join(renamed, on=column, how="left")
    return out.sort("_i")


def _score(p: pl.DataFrame, params: MatchParams) -> pl.DataFrame:
    """Adds w_<comparison> partial weights and `match_weight` (their sum)."""
    exprs: list[pl.Expr] = []
    for c, levels in LEVELS.items():
        mapping = {lv: params.weight(c, lv) for lv in levels}
        exprs.append(pl.col(c).replace_strict(mapping, return_dtype=pl.Float64).alias(f"w_{c}"))
    p = p.with_columns(exprs)

    def tf_weight(comparison: str, level: str, tf_key: str, floor: float) -> pl.Expr:
        # For an exact level both sides hold the same value, so side a's frequency is the one.
        m = params.m[comparison][level]
        tf = pl.max_horizontal(pl.col(f"tf_{tf_key}_a").fill_null(floor), pl.lit(floor))
        return pl.when(pl.col(comparison) == level).then((m / tf).log(2))

    if params.tf:
        p = p.with_columns(
            pl.coalesce(
                tf_weight("name", "exact", "name", _TF_FLOOR["name"]),
                tf_weight("name", "romaji", "romaji", _TF_FLOOR["name"]),
                pl.col("w_name"),
            ).alias("w_name"),
            pl.coalesce(
                tf_weight("company", "same_key", "company", _TF_FLOOR["company"]),
                tf_weight("company", "same_domain", "domain", _TF_FLOOR["company"]),
                pl.col("w_company"),
            ).alias("w_company"),
            pl.coalesce(
                *[
                    tf_weight("phone", lv, "phone", _TF_FLOOR["phone"])
                    for lv in ("same_mobile", "same_fixed", "same_shared")
                ],
                pl.col("w_phone"),
            ).alias("w_phone"),
            (pl.col("tf_phone_a") * params.records).round(0).alias("_phone_count"),
        )
    else:
        p = p.with_columns(pl.lit(None, dtype=pl.Float64).alias("_phone_count"))
    # A fixed line shared within one company is its switchboard: given the same company it
    # says little more about the person (the comparisons are not independent there).
    p = p.with_columns(
        pl.when(
            (pl.col("phone") == "same_fixed")
            & pl.col("company").is_in(["same_key", "same_domain", "close"])
        )
        .then(pl.min_horizontal("w_phone", pl.lit(_SWITCHBOARD_CAP)))
        .otherwise("w_phone")
        .alias("w_phone")
    )
    # Local parts are made from names (dmiller@ at work and at gmail): with the names already
    # agreeing, the same local part at another domain, or the same name-made free-mail address,
    # adds little.
    name_made = (pl.col("email") == "same") & (
        pl.col("email_name_made_a") | pl.col("email_name_made_b")
    ).fill_null(False)
    p = p.with_columns(
        pl.when(
            ((pl.col("email") == "same_local") | name_made)
            & pl.col("name").is_in(["exact", "romaji", "close"])
        )
        .then(pl.min_horizontal("w_email", pl.lit(_NAME_LOCAL_CAP)))
        .otherwise("w_email")
        .alias("w_email"),
        name_made.alias("_name_made_email"),
    )
    return p.with_columns(
        pl.sum_horizontal(*[f"w_{c}" for c in LEVELS]).round(3).alias("match_weight")
    )


def _japanese(col: str) -> pl.Expr:
    return pl.col(col).str.contains(r"[\p{Hiragana}\p{Katakana}\p{Han}]").fill_null(False)


def _nickname(col: str) -> pl.Expr:
    return pl.col(col).replace(NICKNAMES)


def _vetoes(p: pl.DataFrame) -> pl.DataFrame:
    """`veto`: why two records must stay apart whatever their weight, or null."""
    if "_given_sim" not in p.columns:
        p = _compare_min(p)
    ga, gb = pl.col("given_key_a"), pl.col("given_key_b")
    given_conflict = (
        ga.is_not_null()
        & gb.is_not_null()
        & (ga != gb)
        & ~ga.str.starts_with(gb)
        & ~gb.str.starts_with(ga)
        & (pl.col("given_nick_a") != pl.col("given_nick_b"))
        & (pl.col("_given_sim") < _GIVEN_COMPATIBLE)
        # 雄一 and "Yuichi" are one name in two scripts: no evidence either way.
        & (pl.col("given_ja_a") == pl.col("given_ja_b"))
        # Same reading, different kanji: an IME picked the wrong characters (優子/裕子).
        & ~(
            pl.col("name_romaji_a").is_not_null()
            & pl.col("name_romaji_a").eq(pl.col("name_romaji_b"))
        ).fill_null(False)
        # A first/last swap or the same reading is one name written two ways.
        & ~pl.col("name_key_a").eq_missing(pl.col("name_key_b"))
        & ~(
            pl.col("name_reading_a").is_not_null()
            & pl.col("name_reading_a").eq(pl.col("name_reading_b"))
        ).fill_null(False)
        & ~(pl.col("family_key_a").eq(gb) & pl.col("family_key_b").eq(ga)).fill_null(False)
    )
    fa, fb = pl.col("family_key_a"), pl.col("family_key_b")
    family_conflict = (
        fa.is_not_null()
        & fb.is_not_null()
        & (fa != fb)
        & ~fa.str.starts_with(fb)
        & ~fb.str.starts_with(fa)
        & (pl.col("_family_sim") < _GIVEN_COMPATIBLE)
        & (pl.col("family_ja_a") == pl.col("family_ja_b"))
        & ~pl.col("name_key_a").eq_missing(pl.col("name_key_b"))
        & ~(
            pl.col("name_reading_a").is_not_null()
            & pl.col("name_reading_a").eq(pl.col("name_reading_b"))
        ).fill_null(False)
        & ~(
            pl.col("name_romaji_a").is_not_null()
            & pl.col("name_romaji_a").eq(pl.col("name_romaji_b"))
        ).fill_null(False)
        & ~(fa.eq(gb) & fb.eq(ga)).fill_null(False)
    )
    # Two addresses of one person at one domain exist (t.yamada@ and taro.yamada@), so the same
    # full name lifts the veto, unless the addresses differ only by a number: that is how mail
    # admins tell namesakes apart (s.chua@, s.chua3@).
    digits = r"[0-9]"
    numbered = pl.col("email_local_a").str.replace_all(digits, "") == pl.col(
        "email_local_b"
    ).str.replace_all(digits, "")
    colleagues = (
        (~pl.col("name_key_a").eq(pl.col("name_key_b")).fill_null(False) | numbered)
        & pl.col("email_a").is_not_null()
        & pl.col("email_b").is_not_null()
        & (pl.col("email_a") != pl.col("email_b"))
        & (pl.col("email_domain_a") == pl.col("email_domain_b"))
        & pl.col("company_domain_a").eq(pl.col("email_domain_a")).fill_null(False)
        & ~pl.col("email_is_role_a").fill_null(False)
        & ~pl.col("email_is_role_b").fill_null(False)
        & ~pl.col("secondary_emails_a").list.contains(pl.col("email_b")).fill_null(False)
        & ~pl.col("secondary_emails_b").list.contains(pl.col("email_a")).fill_null(False)
    )
    accounts = (
        (pl.col("source_object_a") == "Contact")
        & (pl.col("source_object_b") == "Contact")
        & (pl.col("source_account_id_a") != pl.col("source_account_id_b"))
        & pl.col("email_a").is_not_null()
        & (pl.col("email_a") != pl.col("email_b"))
    ).fill_null(False)

    # A free-mail address is typed by hand and reused by namesakes (johnlewis@gmail.com): on
    # records of two different firms with no number in common it is not enough.
    free_a, free_b = pl.col("email_free_a"), pl.col("email_free_b")
    shared_free = (
        (pl.col("email_a").eq(pl.col("email_b")) & free_a)
        | (pl.col("secondary_emails_b").list.contains(pl.col("email_a")) & free_a)
        | (pl.col("secondary_emails_a").list.contains(pl.col("email_b")) & free_b)
    ).fill_null(False)
    firms_differ = (
        pl.col("company_key_a").is_not_null()
        & pl.col("company_key_b").is_not_null()
        & (pl.col("company_key_a") != pl.col("company_key_b"))
    ).fill_null(False)
    phones_agree = pl.col("phone_a").eq(pl.col("phone_b")).fill_null(False)
    veto = (
        pl.when(shared_free & firms_differ & ~phones_agree)
        .then(pl.lit("free_mail_across_firms"))
        .when(given_conflict.fill_null(False))
        .then(pl.lit("given_names_conflict"))
        .when(family_conflict.fill_null(False))
        .then(pl.lit("family_names_conflict"))
        .when(colleagues.fill_null(False))
        .then(pl.lit("different_addresses_same_domain"))
        .when(accounts)
        .then(pl.lit("contacts_of_different_accounts"))
    )
    return p.with_columns(veto.alias("veto"))


# --------------------------------------------------------------------------------------------
# Edges
# --------------------------------------------------------------------------------------------


def _hard_edges(df: pl.DataFrame) -> pl.DataFrame:
    """(a, b) index pairs from linked_record_ids where both records are present."""
    ids = df.select(pl.col("record_id").alias("link"), pl.col("_i").alias("b"))
    return (
        df.select(pl.col("_i").alias("a"), pl.col("linked_record_ids").alias("link"))
        .explode("link")
        .join(ids, on="link")
        .filter(pl.col("a") != pl.col("b"))
        .select(pl.min_horizontal("a", "b").alias("a"), pl.max_horizontal("a", "b").alias("b"))
        .unique()
    )


_LONG_VOWEL_FOLDS: Final = (("ou", "o"), ("oo", "o"), ("uu", "u"))


def name_made_address(address: pl.Expr, romaji: pl.Expr) -> pl.Expr:
    """True for a free-mail address spelt from its holder's name and nothing else
    (patriciayoung@gmail.com, tomoko.maeda@yahoo.co.jp, tmaeda@...): namesakes arrive at the
    same one, so it proves no more than the name does. Digits or other words make it personal."""
    local = address.str.split("@").list.first().str.replace_all(r"[._\-]", "")
    for old, new in _LONG_VOWEL_FOLDS:
        local = local.str.replace_all(old, new, literal=True)
    tokens = romaji.str.split(" ")
    first, last = tokens.list.get(0, null_on_oob=True), tokens.list.get(1, null_on_oob=True)
    spelt = pl.concat_list(
        first + last,
        last + first,
        first.str.slice(0, 1) + last,
        last.str.slice(0, 1) + first,
        first + last.str.slice(0, 1),
        last + first.str.slice(0, 1),
    )
    return (
        (tokens.list.len() == 2)
        & spelt.list.contains(local)
        & email_is_free_expr(address).fill_null(False)
    ).fill_null(False)


def _email_edges(df: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Star edges (record, smallest record of its address group) for non-vetoed email groups,
    and the vetoed addresses (used by people whose names conflict: shared mailboxes)."""
    # Email is multi-valued (HubSpot additional emails): every address is evidence, except role
    # mailboxes. Deleted records only join through hard links, so stale data cannot veto or
    # bridge live records.
    addresses = (
        df.filter(~pl.col("is_deleted"))
        .select(
            "_i",
            "given_key",
            "name_key",
            pl.concat_list(pl.concat_list("email").list.drop_nulls(), "secondary_emails").alias(
                "address"
            ),
        )
        .explode("address")
        .filter(pl.col("address").is_not_null())
        .filter(~email_is_role_expr("address").fill_null(True))
        .unique(["_i", "address"])
    )
    # A name-made free-mail address is scored with the rest in tier 2 instead.
    romaji = df.select("_i", "name_romaji")
    addresses = (
        addresses.join(romaji, on="_i", how="left")
        .filter(~name_made_address(pl.col("address"), pl.col("name_romaji")))
        .drop("name_romaji")
    )
    groups = (
        addresses.group_by("address")
        .agg(pl.col("_i").n_unique().alias("n"))
        .filter(pl.col("n") > 1)
    )
    candidates = addresses.join(groups.select("address"), on="address", how="semi")
    # An address whose holders' names conflict (the same rules as the pair vetoes: typos,
    # nicknames, swaps, scripts and readings allowed for) is a shared mailbox.
    members = candidates.select("address", "_i")
    within = (
        members.join(members.rename({"_i": "b"}), on="address")
        .filter(pl.col("_i") < pl.col("b"))
        .select("address", pl.col("_i").alias("a"), "b")
    )
    judged = _vetoes(_compare_min(_pair_frame(df, within.select("a", "b").unique())))
    conflicting = judged.filter(
        pl.col("veto").is_in(["given_names_conflict", "family_names_conflict"])
    ).select("a", "b")
    vetoed = within.join(conflicting, on=["a", "b"], how="semi").select("address").unique()
    merged = candidates.join(vetoed, on="address", how="anti")
    edges = (
        merged.with_columns(pl.col("_i").min().over("address").alias("b"))
        .select(pl.min_horizontal("_i", "b").alias("a"), pl.max_horizontal("_i", "b").alias("b"))
        .filter(pl.col("a") != pl.col("b"))
        .unique()
    )
    return edges, vetoed


def _blocks_on(rule: str) -> pl.Expr:
    """Which records take part in a blocking rule: all its columns present, and no role or
    shared mailbox behind an address rule (info@ says nothing about who is behind it)."""
    cols = BLOCKING_RULES[rule]
    present = pl.all_horizontal(pl.col(c).is_not_null() for c in cols)
    if "email_local" in cols or "email" in cols:
        present = present & ~pl.col("email_is_role").fill_null(False)
    return present & ~pl.col("is_deleted")


def _key(rule: str) -> pl.Expr:
    """A rule's blocking key: a 64-bit hash of the rule name and its values."""
    cols = BLOCKING_RULES[rule]
    return (
        pl.concat_str([pl.lit(rule), *[pl.col(c) for c in cols]], separator="\x1f")
        .hash(seed=11)
        .alias("key")
    )


def blocking_keys(df: pl.DataFrame) -> pl.DataFrame:
    """(_i, rule, key) for every live record and blocking rule it takes part in."""
    parts = [
        df.filter(_blocks_on(rule)).select("_i", pl.lit(rule).alias("rule"), _key(rule))
        for rule in BLOCKING_RULES
    ]
    return (
        pl.concat(parts)
        if parts
        else pl.DataFrame(schema={"_i": pl.UInt32, "rule": pl.String, "key": pl.UInt64})
    )


def _candidate_pairs(
    keys: pl.DataFrame, max_block_size: int, generic: pl.DataFrame | None = None
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(a, b, rule) pairs of records sharing a blocking key of at most max_block_size records,
    and the keys too common to use.

    `generic` lists keys known to be too common elsewhere (incremental runs see part of the
    data, so block sizes come from the whole graph)."""
    sizes = keys.group_by("key").len()
    too_common = sizes.filter(pl.col("len") > max_block_size).select("key")
    small = sizes.filter((pl.col("len") > 1) & (pl.col("len") <= max_block_size)).select("key")
    if generic is not None and generic.height:
        small = small.join(generic, on="key", how="anti")
    blocked = keys.join(small, on="key", how="semi").select("key", "_i", "rule")
    pairs = (
        blocked.join(blocked.select("key", pl.col("_i").alias("b")), on="key")
        .filter(pl.col("_i") < pl.col("b"))
        .select(pl.col("_i").alias("a"), "b", "rule")
        .group_by("a", "b")
        .agg(pl.col("rule").first())
    )
    return pairs, too_common


# --------------------------------------------------------------------------------------------
# Clustering
# --------------------------------------------------------------------------------------------


def _components(n: int, edges: pl.DataFrame) -> pl.DataFrame:
    """Connected components over index edges: (_i, label) with label = smallest _i.

    Min-label propagation with pointer jumping (label := label of the label), so long chains
    converge in a logarithmic number of rounds.
    """
    labels = pl.DataFrame({"_i": pl.int_range(0, n, eager=True, dtype=pl.UInt32)}).with_columns(
        pl.col("_i").alias("label")
    )
    if edges.height == 0:
        return labels
    both = pl.concat(
        [edges.select("a", "b"), edges.select(pl.col("b").alias("a"), pl.col("a").alias("b"))]
    ).unique()
    while True:
        neighbour_min = (
            both.join(labels, left_on="b", right_on="_i")
            .group_by("a")
            .agg(pl.col("label").min().alias("n_label"))
        )
        step = (
            labels.join(neighbour_min, left_on="_i", right_on="a", how="left")
            .with_columns(pl.min_horizontal("label", "n_label").alias("label"))
            .drop("n_label")
        )
        jumped = (
            step.join(
                step.select(pl.col("_i").alias("label"), pl.col("label").alias("root")),
                on="label",
                how="left",
            )
            .with_columns(pl.min_horizontal("label", "root").alias("label"))
            .drop("root")
            .sort("_i")
        )
        changed = (jumped["label"] != labels.sort("_i")["label"]).sum()
        labels = jumped
        if changed == 0:
            return labels


# Components larger than this are checked for vetoes only on their compared pairs: every pair of
# a huge component would be too many, and such a component is itself a sign of a bad key.
_MAX_CHECKED_COMPONENT: Final = 400


def _constrained(
    df: pl.DataFrame, edges: pl.DataFrame, cannot: pl.DataFrame
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Cluster along `edges` (a, b, rank, match_weight) without joining cannot-link pairs.

    Returns (labels (_i, label), applied edges). Components with no cannot-link pair inside are
    final as they are; the others are rebuilt edge by edge, strongest first (hard links, then
    people's accepts, email, probabilistic by weight), skipping an edge that would join two
    records that must stay apart. Hard links are always applied.
    """
    n = df.height
    labels = _components(n, edges)
    sizes = labels.group_by("label").len()
    multi = labels.join(sizes.filter(pl.col("len") > 1), on="label", how="semi")
    # Vetoes between every pair of records of a (small) component, not only the compared ones:
    # a chain a-b-c must not join a and c when they conflict.
    checked = multi.join(
        sizes.filter(pl.col("len") <= _MAX_CHECKED_COMPONENT), on="label", how="semi"
    )
    inner = (
        checked.join(checked.rename({"_i": "b"}), on="label")
        .filter(pl.col("_i") < pl.col("b"))
        .select(pl.col("_i").alias("a"), "b")
    )
    vetoed = _vetoes(_compare_min(_pair_frame(df, inner))).filter(pl.col("veto").is_not_null())
    conflicts = pl.concat(
        [vetoed.select("a", "b"), cannot.select("a", "b")], how="vertical_relaxed"
    ).unique()
    conflicts = conflicts.join(labels.rename({"_i": "a"}), on="a").join(
        labels.rename({"_i": "b", "label": "label_b"}), on="b"
    )
    bad_labels = conflicts.filter(pl.col("label") == pl.col("label_b")).select("label").unique()
    applied_ok = edges.join(labels.rename({"_i": "a"}), on="a").join(
        bad_labels, on="label", how="anti"
    )
    if bad_labels.height == 0:
        return labels, edges

    # Rebuild the conflicted components greedily with a small union-find.
    bad_nodes = labels.join(bad_labels, on="label", how="semi")["_i"].to_list()
    bad_edges = (
        edges.join(labels.rename({"_i": "a"}), on="a")
        .join(bad_labels, on="label", how="semi")
        .sort(["rank", "match_weight", "a", "b"], descending=[False, True, False, False])
    )
    parent = {i: i for i in bad_nodes}
    forbid: dict[int, set[int]] = {i: set() for i in bad_nodes}
    for a, b in conflicts.filter(pl.col("label") == pl.col("label_b")).select("a", "b").iter_rows():
        forbid[a].add(b)
        forbid[b].add(a)

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    kept: list[int] = []
    for row, (a, b, rank) in enumerate(bad_edges.select("a", "b", "rank").iter_rows()):
        ra, rb = find(a), find(b)
        if ra == rb:
            kept.append(row)
            continue
        if rb in forbid[ra] and rank > 0:
            continue
        keep, gone = (ra, rb) if ra < rb else (rb, ra)
        parent[gone] = keep
        for f in forbid.pop(gone):
            forbid[f].discard(gone)
            forbid[f].add(keep)
            forbid[keep].add(f)
        forbid[keep].discard(keep)
        kept.append(row)
    roots = {i: find(i) for i in bad_nodes}
    fixed = pl.DataFrame(
        {"_i": list(roots), "root": list(roots.values())},
        schema={"_i": pl.UInt32, "root": pl.UInt32},
    )
    # label = smallest member of the new cluster
    fixed = fixed.with_columns(pl.col("_i").min().over("root").alias("label")).select("_i", "label")
    labels = (
        labels.join(fixed, on="_i", how="left", suffix="_new")
        .with_columns(pl.coalesce("label_new", "label").alias("label"))
        .select("_i", "label")
        .sort("_i")
    )
    applied = pl.concat(
        [
            applied_ok.drop("label"),
            bad_edges.drop("label")
            .with_row_index("_row")
            .filter(pl.col("_row").is_in(kept))
            .drop("_row"),
        ],
        how="vertical_relaxed",
    )
    return labels, applied


def _compare_min(p: pl.DataFrame) -> pl.DataFrame:
    """The columns the vetoes need, without the (costlier) comparison levels."""
    return p.with_columns(
        _similarity(p, "given_key_a", "given_key_b").alias("_given_sim"),
        _similarity(p, "family_key_a", "family_key_b").alias("_family_sim"),
    )


# --------------------------------------------------------------------------------------------
# Stable ids
# --------------------------------------------------------------------------------------------


def _fresh_id(record_id: str, attempt: int = 0) -> str:
    seed = record_id if attempt == 0 else f"{record_id}#{attempt}"
    return "UL-" + hashlib.sha1(seed.encode("utf-8")).hexdigest()[:12]


def _assign_ids(labels: pl.DataFrame, previous: pl.DataFrame | None) -> pl.DataFrame:
    """(record_id, label) -> (label, unified_id), keeping previous ids where possible.

    `label` is the smallest record_id of each cluster."""
    clusters = labels.select("label").unique().sort("label")
    kept = pl.DataFrame(schema={"label": pl.String, "unified_id": pl.String})
    if previous is not None and previous.height > 0:
        prev = previous.select("record_id", pl.col("unified_id").alias("prev_id")).filter(
            pl.col("prev_id").is_not_null()
        )
        votes = (
            labels.join(prev, on="record_id", how="inner")
            .group_by("label", "prev_id")
            .agg(pl.len().alias("votes"))
        )
        # Each cluster's candidate: the previous id most of its members held (ties: smallest).
        best = (
            votes.sort(["label", "votes", "prev_id"], descending=[False, True, False])
            .group_by("label", maintain_order=True)
            .first()
        )
        # A previous id now best for several clusters (its cluster split) stays with the
        # cluster holding most of its members (ties: smallest label); the others get fresh ids.
        kept = (
            best.sort(["prev_id", "votes", "label"], descending=[False, True, False])
            .group_by("prev_id", maintain_order=True)
            .first()
            .select("label", pl.col("prev_id").alias("unified_id"))
        )
    fresh_labels = clusters.join(kept, on="label", how="anti")["label"].to_list()
    # SHA-1 has no polars expression; it runs once per new cluster, not per record.
    taken = set(kept["unified_id"].to_list())
    if previous is not None and previous.height > 0:
        taken |= set(previous["unified_id"].drop_nulls().to_list())
    fresh_ids: list[str] = []
    for label in fresh_labels:
        attempt, uid = 0, _fresh_id(label)
        # A fresh id must not reuse a kept or retired one (the split-off part of a cluster whose
        # id was derived from the very record that left it).
        while uid in taken:
            attempt += 1
            uid = _fresh_id(label, attempt)
        taken.add(uid)
        fresh_ids.append(uid)
    fresh = pl.DataFrame(
        {"label": fresh_labels, "unified_id": fresh_ids},
        schema={"label": pl.String, "unified_id": pl.String},
    )
    return pl.concat([kept, fresh])


# --------------------------------------------------------------------------------------------
# The resolver
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IdentityGraph:
    """The result of a resolution, and the state an incremental `update` starts from.

    `assignments`: IDENTITY_SCHEMA, one row per record. `pairs`: IDENTITY_PAIR_SCHEMA, the merge
    log. `records`: the matching frame of every record. `params`: the level weights used.
    `generic_keys`: blocking keys too common to use."""

    assignments: pl.DataFrame
    pairs: pl.DataFrame
    records: pl.DataFrame
    params: MatchParams
    # Blocking keys shared by more than max_block_size records: never used to propose pairs.
    generic_keys: pl.DataFrame = field(
        default_factory=lambda: pl.DataFrame(schema={"key": pl.UInt64})
    )
    newly_merged: int = 0


def restore_graph(
    assignments: pl.DataFrame,
    pairs: pl.DataFrame,
    records: pl.DataFrame,
    params: pl.DataFrame,
    settings: IdentitySettings | None = None,
) -> IdentityGraph:
    """An IdentityGraph from its stored parts (term frequencies and block sizes recounted)."""
    settings = settings or IdentitySettings()
    records = records.sort("record_id")
    sizes = blocking_keys(records.with_row_index("_i")).group_by("key").len()
    return IdentityGraph(
        assignments=assignments,
        pairs=pairs,
        records=records,
        params=MatchParams.from_rows(params, records),
        generic_keys=sizes.filter(pl.col("len") > settings.max_block_size).select("key"),
    )


def changed_records(graph: IdentityGraph, records: pl.DataFrame) -> pl.DataFrame:
    """The input records that are new or whose matching fields differ from the graph's copy."""
    fresh = _as_frame(records).drop("_i")
    cols = [c for c in fresh.columns if c in graph.records.columns]
    if len(cols) != len(fresh.columns):
        return fresh
    digest = pl.struct(cols).hash(seed=3).alias("_h")
    old = graph.records.select("record_id", pl.struct(cols).hash(seed=3).alias("_h"))
    return fresh.with_columns(digest).join(old, on=["record_id", "_h"], how="anti").drop("_h")


def _decision_pairs(df: pl.DataFrame, decisions: pl.DataFrame | None, kind: str) -> pl.DataFrame:
    """Decisions of one kind as index pairs (a < b) of records present in df."""
    schema = {"a": pl.UInt32, "b": pl.UInt32}
    if decisions is None or decisions.height == 0:
        return pl.DataFrame(schema=schema)
    ids = df.select("record_id", "_i")
    d = (
        decisions.filter(pl.col("decision") == kind)
        .join(ids.rename({"record_id": "record_a", "_i": "x"}), on="record_a")
        .join(ids.rename({"record_id": "record_b", "_i": "y"}), on="record_b")
    )
    return d.select(
        pl.min_horizontal("x", "y").alias("a"), pl.max_horizontal("x", "y").alias("b")
    ).unique()


def _latest_decisions(decisions: pl.DataFrame | None) -> pl.DataFrame | None:
    """The last decision per unordered pair wins (a reject after an accept undoes it)."""
    if decisions is None or decisions.height == 0:
        return None
    d = decisions.with_columns(
        pl.min_horizontal("record_a", "record_b").alias("_x"),
        pl.max_horizontal("record_a", "record_b").alias("_y"),
    )
    return (
        d.sort("decided_at", nulls_last=False)
        .group_by("_x", "_y", maintain_order=True)
        .last()
        .with_columns(pl.col("_x").alias("record_a"), pl.col("_y").alias("record_b"))
        .drop("_x", "_y")
    )


def _resolve_frame(
    df: pl.DataFrame,
    settings: IdentitySettings,
    decisions: pl.DataFrame | None,
    params: MatchParams | None,
    generic: pl.DataFrame | None,
    phone_names: pl.DataFrame | None = None,
    firm_titles: pl.DataFrame | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame, MatchParams, pl.DataFrame]:
    """Matching frame -> (labels (record_id, label, band, rule), pairs log, params, keys too
    common to block on)."""
    decisions = _latest_decisions(decisions)
    df = _with_flags(df, phone_names, firm_titles)
    hard = _hard_edges(df)
    email, shared = _email_edges(df)
    if shared.height:
        # An address several people use is a shared mailbox: no person evidence anywhere.
        df = df.with_columns(
            (pl.col("email_is_role") | pl.col("email").is_in(shared["address"].implode()))
            .fill_null(False)
            .alias("email_is_role")
        )
    accepted = _decision_pairs(df, decisions, DECISION_ACCEPT)
    rejected = _decision_pairs(df, decisions, DECISION_REJECT)
    if params is None:
        labelled = pl.concat([hard, email]).unique()
        params = estimate_params(df, labelled)
    df = _with_features(df, params)

    keys = blocking_keys(df)
    cand, too_common = _candidate_pairs(keys, settings.max_block_size, generic)
    # Pairs a stronger rule already joins need no score.
    strong = pl.concat([hard, email, accepted]).unique()
    cand = cand.join(strong, on=["a", "b"], how="anti").join(rejected, on=["a", "b"], how="anti")
    scored = _vetoes(_score(_compare(_pair_frame(df, cand)), params)).select(
        # Only what decisions and the merge log read: the wide pair frame is the run's largest.
        "a",
        "b",
        "rule",
        *LEVELS,
        "title",
        *[f"w_{c}" for c in LEVELS],
        "match_weight",
        "veto",
        "_phone_count",
        pl.col("phone_names_a").alias("_phone_names"),
        "_name_made_email",
    )
    # Name and company alone never merge (namesakes at one firm, father and son): an automatic
    # merge also needs the address or the person's own number to agree. A fixed line counts only
    # when no third record has it (a switchboard is shared); a local part made from the name
    # (dmiller@ at work and at home) does not count. Or the job title agrees as well, on a
    # weight only a rare name at a small firm reaches: that is one person typed in twice (a
    # list import, a form without the address), whereas namesakes at one firm seldom hold one
    # title too, except a common name at a large firm, which stays below the bar.
    corroborated = (
        ((pl.col("email") == "same") & ~pl.col("_name_made_email"))
        | (pl.col("phone") == "same_mobile")
        | ((pl.col("phone") == "same_fixed") & (pl.col("_phone_names") <= 1))
        | (
            (pl.col("title") == "same")
            & pl.col("company").is_in(["same_key", "same_domain"])
            & pl.col("name").is_in(["exact", "reading", "romaji", "close"])
            & (pl.col("match_weight") >= settings.title_merge_weight)
        )
    )
    auto = scored.filter(
        pl.col("veto").is_null()
        & (pl.col("match_weight") >= settings.auto_merge_weight)
        & corroborated
    )

    def edges(frame: pl.DataFrame, rank: int, rule: str) -> pl.DataFrame:
        weight = pl.col("match_weight") if "match_weight" in frame.columns else pl.lit(None)
        return frame.select(
            "a",
            "b",
            pl.lit(rank, dtype=pl.Int8).alias("rank"),
            pl.lit(rule).alias("rule"),
            weight.cast(pl.Float64).alias("match_weight"),
        )

    all_edges = pl.concat(
        [
            edges(hard, 0, RULE_HARD_LINK),
            edges(accepted, 1, RULE_USER),
            edges(email, 2, RULE_EMAIL),
            edges(auto, 3, RULE_PROBABILISTIC),
        ]
    ).unique(["a", "b"], keep="first", maintain_order=True)
    labels, applied = _constrained(df, all_edges, rejected)

    # Records, their clusters and bands.
    ids = df.select("_i", "record_id")
    lab = labels.join(ids, on="_i").join(
        ids.rename({"_i": "label", "record_id": "label_id"}), on="label"
    )
    # People review pairs whose names agree; company or phone evidence alone is not a question
    # a person can answer better than the rules.
    names_agree = pl.col("name").is_in(["exact", "reading", "romaji", "close", "similar"])
    review = scored.filter(
        pl.col("veto").is_null() & (pl.col("match_weight") >= settings.review_weight) & names_agree
    ).join(auto.select("a", "b"), on=["a", "b"], how="anti")
    # A review pair already inside one cluster (joined by other evidence) needs no person.
    review = (
        review.join(labels.rename({"_i": "a", "label": "la"}), on="a")
        .join(labels.rename({"_i": "b", "label": "lb"}), on="b")
        .filter(pl.col("la") != pl.col("lb"))
    )
    reviewed = pl.concat([review["a"], review["b"]]).unique().implode()
    rule_rank = {RULE_HARD_LINK: 0, RULE_USER: 1, RULE_EMAIL: 2, RULE_PROBABILISTIC: 3}
    incident = (
        pl.concat(
            [
                applied.select(pl.col("a").alias("_i"), "rank"),
                applied.select(pl.col("b").alias("_i"), "rank"),
            ]
        )
        .group_by("_i")
        .agg(pl.col("rank").min())
    )
    by_rank = {v: k for k, v in rule_rank.items()}
    sizes = lab.group_by("label").len()
    out = (
        lab.join(sizes, on="label")
        .join(incident, on="_i", how="left")
        .with_columns(
            pl.when(pl.col("_i").is_in(reviewed))
            .then(pl.lit(BAND_REVIEW))
            .when(pl.col("len") > 1)
            .then(pl.lit(BAND_AUTO_MERGE))
            .otherwise(pl.lit(BAND_KEEP_APART))
            .alias("band"),
            pl.when(pl.col("len") > 1)
            .then(pl.col("rank").replace_strict(by_rank, default=None, return_dtype=pl.String))
            .alias("rule"),
        )
        .select("_i", "record_id", pl.col("label_id").alias("label"), "band", "rule")
    )

    log = _merge_log(df, applied, scored, review, settings.review_weight)
    return out, log, params, too_common


def _merge_log(
    df: pl.DataFrame,
    applied: pl.DataFrame,
    scored: pl.DataFrame,
    review: pl.DataFrame,
    review_weight: float,
) -> pl.DataFrame:
    """IDENTITY_PAIR_SCHEMA rows: applied edges, review pairs and vetoed pairs that scored high
    enough to have merged or waited for review otherwise."""
    ids = df.select("_i", "record_id")
    scored_detail = scored.select(
        "a",
        "b",
        *[pl.col(c) for c in ("email", "name", "company", "phone", "title", "veto")],
        *[pl.col(f"w_{c}") for c in LEVELS],
        "match_weight",
        pl.col("rule").alias("blocked_by"),
    )
    applied_rows = (
        applied.select("a", "b", "rule", pl.col("match_weight").alias("_w"))
        .join(scored_detail, on=["a", "b"], how="left")
        .with_columns(
            pl.coalesce("match_weight", "_w").alias("match_weight"),
            pl.lit(BAND_AUTO_MERGE).alias("band"),
            pl.lit(True).alias("applied"),
        )
        .drop("_w")
    )
    review_rows = (
        review.select("a", "b")
        .join(scored_detail, on=["a", "b"])
        .with_columns(
            pl.lit(RULE_PROBABILISTIC).alias("rule"),
            pl.lit(BAND_REVIEW).alias("band"),
            pl.lit(False).alias("applied"),
        )
    )
    # A vetoed pair below the review weight would have stayed apart anyway: at a million records
    # those are 2.4M of the log's 2.8M rows (shared surnames at one firm) and explain nothing.
    vetoed_rows = (
        scored_detail.filter(
            pl.col("veto").is_not_null() & (pl.col("match_weight") >= review_weight)
        )
        .join(applied.select("a", "b"), on=["a", "b"], how="anti")
        .with_columns(
            pl.lit(RULE_PROBABILISTIC).alias("rule"),
            pl.lit(BAND_KEEP_APART).alias("band"),
            pl.lit(False).alias("applied"),
        )
    )
    log = pl.concat([applied_rows, review_rows, vetoed_rows], how="diagonal_relaxed")
    log = (
        log.join(ids.rename({"_i": "a", "record_id": "record_a"}), on="a")
        .join(ids.rename({"_i": "b", "record_id": "record_b"}), on="b")
        .rename({"email": "email_level", "name": "name_level", "company": "company_level"})
        .rename({"phone": "phone_level", "title": "title_level"})
    )
    for c, t in IDENTITY_PAIR_SCHEMA.items():
        if c not in log.columns:
            log = log.with_columns(pl.lit(None, dtype=t).alias(c))
    return log.select(pl.col(c).cast(t) for c, t in IDENTITY_PAIR_SCHEMA.items()).sort(
        "record_a", "record_b"
    )


def _newly_merged(assignments: pl.DataFrame, previous: pl.DataFrame | None) -> int:
    """Records now in a cluster with a record they were not with before. On a first run, with no
    before, the records the probabilistic tier attached: hard links and shared addresses are the
    CRMs' own facts, and a first import of duplicated data is legitimately merge-heavy."""
    multi = assignments.filter(
        pl.col("unified_id").is_in(
            assignments.group_by("unified_id")
            .len()
            .filter(pl.col("len") > 1)["unified_id"]
            .implode()
        )
    )
    if previous is None or previous.height == 0:
        return multi.filter(pl.col("rule") == RULE_PROBABILISTIC).height
    prev = previous.select("record_id", pl.col("unified_id").alias("prev"))
    joined = multi.join(prev, on="record_id", how="left").with_columns(
        pl.coalesce("prev", pl.lit("new:") + pl.col("record_id")).alias("prev")
    )
    grown = joined.group_by("unified_id").agg(pl.col("prev").n_unique().alias("n"))
    # In a cluster that gathered several previous clusters, the records of all but the largest
    # previous cluster were merged in this run.
    per_prev = joined.group_by("unified_id", "prev").len()
    largest = per_prev.group_by("unified_id").agg(pl.col("len").max().alias("largest"))
    total = per_prev.group_by("unified_id").agg(pl.col("len").sum().alias("total"))
    changed = (
        grown.filter(pl.col("n") > 1).join(largest, on="unified_id").join(total, on="unified_id")
    )
    return int((changed["total"] - changed["largest"]).sum() or 0)


def _finish(out: pl.DataFrame, previous: pl.DataFrame | None) -> pl.DataFrame:
    ids = _assign_ids(out.select("record_id", "label"), previous)
    return (
        out.join(ids, on="label")
        .select(pl.col(c).cast(t) for c, t in IDENTITY_SCHEMA.items())
        .sort("record_id")
    )


def build(
    records: pl.DataFrame | Sequence[Mapping[str, object]],
    *,
    settings: IdentitySettings | None = None,
    decisions: pl.DataFrame | None = None,
    previous: pl.DataFrame | None = None,
    guard: bool = True,
) -> IdentityGraph:
    """Resolve every record from scratch; `previous` (an earlier `assignments`) keeps ids stable.

    Raises MergeGuardError when more than `settings.max_merge_share` of the records would be
    newly merged and `guard` is on."""
    settings = settings or IdentitySettings()
    df = _as_frame(records)
    if df.height == 0:
        return IdentityGraph(
            assignments=empty_frame(IDENTITY_SCHEMA),
            pairs=empty_frame(IDENTITY_PAIR_SCHEMA),
            records=df,
            params=MatchParams(m=dict(_M_PRIORS), u={}),
        )
    out, log, params, too_common = _resolve_frame(df, settings, decisions, None, None)
    assignments = _finish(out, previous)
    newly = _newly_merged(assignments, previous)
    _check_guard(newly, assignments.height, settings, guard)
    return IdentityGraph(assignments, log, df.drop("_i"), params, too_common, newly)


# Below this many newly merged records a share says nothing (two records of a tiny test CRM).
_GUARD_MIN_MERGED: Final = 10


def _check_guard(newly: int, total: int, settings: IdentitySettings, guard: bool) -> None:
    if guard and newly >= _GUARD_MIN_MERGED and newly / total > settings.max_merge_share:
        raise MergeGuardError(newly / total, settings.max_merge_share, newly, total)


def update(
    graph: IdentityGraph,
    records: pl.DataFrame | Sequence[Mapping[str, object]],
    *,
    settings: IdentitySettings | None = None,
    decisions: pl.DataFrame | None = None,
    guard: bool = True,
) -> IdentityGraph:
    """Match new and changed `records` against the stored graph; only the clusters they touch
    (through a blocking key, an address, a hard link or a decision) are re-clustered. Weights
    are the graph's; block sizes count the whole graph."""
    settings = settings or IdentitySettings()
    new = _as_frame(records).drop("_i")
    if new.height == 0:
        return graph
    changed = new.select("record_id")
    base = graph.records.join(changed, on="record_id", how="anti")
    # Records the new ones could join: shared blocking keys, addresses, hard links either way,
    # and decisions that name them.
    # Blocking values are matched on the columns themselves: the graph keeps no key index, which
    # would hold ~9 rows per record. A block the new records push over the size limit joins the
    # generic keys (one that shrinks stays generic until the next full run).
    hit_parts: list[pl.DataFrame] = []
    generic_parts = [graph.generic_keys]
    for rule, cols in BLOCKING_RULES.items():
        values = new.filter(_blocks_on(rule)).select(cols)
        if values.height == 0:
            continue
        matched = base.filter(_blocks_on(rule)).join(values.unique(), on=list(cols), how="semi")
        hit_parts.append(matched.select("record_id"))
        sizes = pl.concat([matched.select(cols), values]).group_by(cols).len()
        generic_parts.append(
            sizes.filter(pl.col("len") > settings.max_block_size).select(_key(rule))
        )
    hits = pl.concat(hit_parts) if hit_parts else pl.DataFrame(schema={"record_id": pl.String})
    generic = pl.concat(generic_parts).unique()
    new_addresses = (
        pl.concat(
            [
                new.select(pl.col("email").alias("a")),
                new.select(pl.col("secondary_emails").alias("a")).explode("a"),
            ]
        )
        .drop_nulls()
        .unique()
    )
    by_address = (
        pl.concat(
            [
                base.select("record_id", pl.col("email").alias("a")),
                base.select("record_id", pl.col("secondary_emails").alias("a")).explode("a"),
            ]
        )
        .join(new_addresses, on="a", how="semi")
        .select("record_id")
    )
    linked_from_new = new.select(pl.col("linked_record_ids").alias("record_id")).explode(
        "record_id"
    )
    linking_to_new = (
        base.select("record_id", pl.col("linked_record_ids").alias("link"))
        .explode("link")
        .join(changed.rename({"record_id": "link"}), on="link", how="semi")
        .select("record_id")
    )
    touched_ids = pl.concat(
        [hits, by_address, linked_from_new, linking_to_new, changed]
    ).drop_nulls()
    if decisions is not None and decisions.height:
        named = decisions.join(
            touched_ids.rename({"record_id": "record_a"}), on="record_a", how="semi"
        )
        touched_ids = pl.concat([touched_ids, named.select(pl.col("record_b").alias("record_id"))])
    touched_ids = touched_ids.unique()
    clusters = (
        graph.assignments.join(touched_ids, on="record_id", how="semi")
        .select("unified_id")
        .unique()
    )
    members = graph.assignments.join(clusters, on="unified_id", how="semi").select("record_id")
    scope_ids = pl.concat([members, touched_ids]).unique()

    scope = (
        pl.concat([base.join(scope_ids, on="record_id", how="semi"), new], how="vertical_relaxed")
        .sort("record_id")
        .with_row_index("_i")
    )
    # Counted over the whole graph, for the values the scope holds.
    phone_names = phone_name_counts(_sharing(scope, [base, new], ["phone"]))
    firm_titles = firm_title_counts(_sharing(scope, [base, new], ["company_key", "title_key"]))
    out, log, _, _ = _resolve_frame(
        scope, settings, decisions, graph.params, generic, phone_names, firm_titles
    )

    prev_scope = graph.assignments.join(scope_ids, on="record_id", how="semi")
    scoped = _finish(out, prev_scope)
    # Ids kept outside the scope must not be handed out again inside it.
    outside = graph.assignments.join(scope_ids, on="record_id", how="anti")
    clash = scoped.join(outside.select("unified_id").unique(), on="unified_id", how="semi")
    if clash.height:
        scoped = _finish(out, pl.concat([prev_scope, outside]))
    assignments = pl.concat([outside, scoped]).sort("record_id")
    newly = _newly_merged(scoped, prev_scope)
    _check_guard(newly, assignments.height, settings, guard)
    in_scope = scope_ids["record_id"].implode()
    pairs = pl.concat(
        [
            graph.pairs.filter(
                ~pl.col("record_a").is_in(in_scope) & ~pl.col("record_b").is_in(in_scope)
            ),
            log,
        ]
    ).sort("record_a", "record_b")
    everyone = pl.concat([base, new], how="vertical_relaxed")
    return IdentityGraph(assignments, pairs, everyone, graph.params, generic, newly)


def _sharing(scope: pl.DataFrame, frames: list[pl.DataFrame], keys: list[str]) -> pl.DataFrame:
    """The rows of `frames` whose `keys` equal those of some row of `scope`."""
    present = scope.select(keys).drop_nulls().unique()
    return pl.concat([f.join(present, on=keys, how="semi") for f in frames], how="vertical_relaxed")


def resolve(
    records: pl.DataFrame | Sequence[Mapping[str, object]],
    previous: pl.DataFrame | None = None,
    *,
    settings: IdentitySettings | None = None,
    decisions: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Canonical lead records -> IDENTITY_SCHEMA (record_id, unified_id, band, rule).

    `records` is a CANONICAL_LEAD_SCHEMA frame or a list of dicts with `record_id` and any
    canonical fields; `previous` is an earlier output of this function, used to keep ids stable.
    The merge guard is off here (callers that store results use `build`)."""
    return build(
        records, settings=settings, decisions=decisions, previous=previous, guard=False
    ).assignments


def cluster_members(assignments: pl.DataFrame, unified_id: str) -> list[str]:
    """The record ids of one unified lead."""
    return assignments.filter(pl.col("unified_id") == unified_id)["record_id"].sort().to_list()


def split_decisions(
    assignments: pl.DataFrame,
    unified_id: str,
    records: Iterable[str],
    *,
    decided_by: str,
    note: str | None = None,
) -> pl.DataFrame:
    """Cannot-link decisions that split `records` off a unified lead (one per pair across the
    cut), for `leadsync unmerge`."""
    members = cluster_members(assignments, unified_id)
    leaving = sorted(set(records))
    unknown = [r for r in leaving if r not in members]
    if not members:
        raise ValueError(f"no unified lead {unified_id!r}")
    if unknown:
        raise ValueError(f"records {unknown} are not part of {unified_id}")
    staying = [r for r in members if r not in leaving]
    if not staying:
        raise ValueError("leave at least one record in the unified lead")
    rows = [(a, b) for a in leaving for b in staying]
    now = pl.lit(None, dtype=pl.Datetime("us", "UTC"))
    return (
        pl.DataFrame(rows, schema=["record_a", "record_b"], orient="row")
        .with_columns(
            pl.lit(DECISION_REJECT).alias("decision"),
            pl.lit(decided_by).alias("decided_by"),
            now.alias("decided_at"),
            pl.lit(note, dtype=pl.String).alias("note"),
        )
        .select(pl.col(c).cast(t) for c, t in DECISION_SCHEMA.items())
    )


__all__ = [
    "BAND_AUTO_MERGE",
    "BAND_KEEP_APART",
    "BAND_REVIEW",
    "DECISION_SCHEMA",
    "IdentityGraph",
    "IdentitySettings",
    "MatchParams",
    "MergeGuardError",
    "build",
    "resolve",
    "update",
]
