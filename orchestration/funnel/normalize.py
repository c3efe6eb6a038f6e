"""Normalisation: raw CRM frames -> canonical leads, activities and opportunity outcomes.

Every raw frame arrives with `pl.String` columns named after the CRM fields (see
docs/sandbox-data.md); field mappings from the lead definition say which CRM field feeds which
canonical column. This module turns them into the frames of `orchestration.funnel.model`:

* `normalize_leads` -> CANONICAL_LEAD_SCHEMA (one row per HubSpot contact / SF Lead / SF Contact),
* `normalize_activities` -> ACTIVITY_SCHEMA (engagement evidence attached to a lead record),
* `normalize_outcomes` -> OUTCOME_SCHEMA (opportunities reached through contact roles and
  converted leads).

The per-field normalisers (`normalize_email_expr`, `name_key_expr`, `company_key_expr`, ...) are
polars expressions so identity resolution and survivorship can reuse them on their own frames.
Everything is vectorised; the only per-value Python is `phonenumbers`, run once per distinct
(number, region) pair. Background for the Japanese rules:
shared/reference/entity_resolution_notes.md.
"""

import functools
import re
import unicodedata
from collections.abc import Mapping, MutableMapping, Sequence
from typing import Any

import phonenumbers
import polars as pl

from orchestration.funnel.model import (
    ACTIVITY_SCHEMA,
    BANT_COLUMNS,
    CANONICAL_LEAD_SCHEMA,
    HUBSPOT,
    SALESFORCE,
    UTC_TS,
    empty_frame,
)

# The lead definition's field mappings; callers pass their own, this is the default and fixture.
DEFAULT_LEAD_MAPPINGS: dict[str, dict[str, str]] = {
    "hubspot:contacts": {
        "email": "email",
        "hs_additional_emails": "secondary_emails",
        "firstname": "first_name",
        "lastname": "last_name",
        "firstname_kana": "first_name_reading",
        "lastname_kana": "last_name_reading",
        "company": "company",
        "jobtitle": "title",
        "industry": "industry",
        "numemployees": "employee_count",
        "country": "country",
        "phone": "phone",
        "hs_language": "locale",
        "hs_analytics_source": "lead_source",
        "hubspot_owner_id": "owner_id",
        "hs_email_optout": "opted_out",
        "hs_email_bounce": "bounced",
        "lifecyclestage": "hs_lifecyclestage",
        "createdate": "created_at",
        "lastmodifieddate": "updated_at",
    },
    "salesforce:Lead": {
        "Email": "email",
        "FirstName": "first_name",
        "LastName": "last_name",
        "FirstNameKana__c": "first_name_reading",
        "LastNameKana__c": "last_name_reading",
        "Company": "company",
        "Title": "title",
        "Industry": "industry",
        "NumberOfEmployees": "employee_count",
        "Country": "country",
        "Phone": "phone",
        "LeadSource": "lead_source",
        "OwnerId": "owner_id",
        "HasOptedOutOfEmail": "opted_out",
        "DoNotCall": "do_not_contact",
        "EmailBouncedReason": "bounced",
        "Status": "sf_status",
        "IsConverted": "sf_is_converted",
        # BANT(C) checkboxes an admin adds to Lead (docs/crm-setup.md); orgs without them pull
        # without them and the columns stay null.
        "BANT_Budget__c": "bant_budget",
        "BANT_Authority__c": "bant_authority",
        "BANT_Need__c": "bant_need",
        "BANT_Timeline__c": "bant_timeline",
        "BANT_Competitor__c": "bant_competitor",
        "CreatedDate": "created_at",
        "SystemModstamp": "updated_at",
        "IsDeleted": "is_deleted",
    },
    "salesforce:Contact": {
        "Email": "email",
        "FirstName": "first_name",
        "LastName": "last_name",
        "FirstNameKana__c": "first_name_reading",
        "LastNameKana__c": "last_name_reading",
        "Title": "title",
        "Phone": "phone",
        "MailingCountry": "country",
        "LeadSource": "lead_source",
        "OwnerId": "owner_id",
        "HasOptedOutOfEmail": "opted_out",
        "DoNotCall": "do_not_contact",
        "EmailBouncedReason": "bounced",
        "CreatedDate": "created_at",
        "SystemModstamp": "updated_at",
        "IsDeleted": "is_deleted",
    },
}

# Mapping targets that are inputs of a canonical column rather than columns themselves: the kana
# (フリガナ) fields feed `name_reading` and are dropped afterwards. A definition may map to these
# besides the CANONICAL_LEAD_SCHEMA columns.
MAPPING_INPUT_COLUMNS: tuple[str, ...] = ("first_name_reading", "last_name_reading")

# Mobile-number fields read besides the mapped `phone` (pulled by crm_pull), per lead source.
# `phone` keeps one number per record; see `_choose_phone` for which.
MOBILE_PHONE_FIELDS: dict[str, str] = {
    "hubspot:contacts": "mobilephone",
    "salesforce:Lead": "MobilePhone",
    "salesforce:Contact": "MobilePhone",
}

# The source objects whose rows are lead records.
LEAD_SOURCES: tuple[str, ...] = ("hubspot:contacts", "salesforce:Lead", "salesforce:Contact")

# Opportunities reached from a lead record (one row per (record, opportunity)).
OUTCOME_SCHEMA: dict[str, pl.DataType] = {
    "record_id": pl.String(),
    "opportunity_id": pl.String(),
    "stage_name": pl.String(),
    "is_closed": pl.Boolean(),
    "is_won": pl.Boolean(),
    "amount": pl.Float64(),
    "close_date": pl.Date(),
}

# --------------------------------------------------------------------------------------------
# Reference tables (compact on purpose: they cover what Japanese and US B2B CRMs actually hold)
# --------------------------------------------------------------------------------------------

ROLE_LOCAL_PARTS: frozenset[str] = frozenset(
    {
        "info",
        "information",
        "sales",
        "support",
        "contact",
        "contactus",
        "admin",
        "administrator",
        "marketing",
        "webmaster",
        "postmaster",
        "hostmaster",
        "noreply",
        "no-reply",
        "donotreply",
        "office",
        "hello",
        "help",
        "helpdesk",
        "service",
        "team",
        "enquiries",
        "inquiry",
        "inquiries",
        "hr",
        "jobs",
        "recruit",
        "careers",
        "billing",
        "accounts",
        "press",
        "pr",
        "mail",
        "toiawase",
        "otoiawase",
        "soumu",
        "somu",
        "eigyo",
        "eigyou",
        "jinji",
        "keiri",
        "koho",
        "kouhou",
        "uketsuke",
        "daihyo",
        "daihyou",
    }
)

FREE_MAIL_DOMAINS: frozenset[str] = frozenset(
    {
        "gmail.com",
        "googlemail.com",
        "yahoo.com",
        "yahoo.co.jp",
        "ymail.com",
        "outlook.com",
        "outlook.jp",
        "hotmail.com",
        "hotmail.co.jp",
        "live.com",
        "live.jp",
        "msn.com",
        "icloud.com",
        "me.com",
        "mac.com",
        "aol.com",
        "protonmail.com",
        "proton.me",
        "gmx.com",
        "mail.com",
        "docomo.ne.jp",
        "ezweb.ne.jp",
        "au.com",
        "i.softbank.jp",
        "softbank.ne.jp",
        "ymobile.ne.jp",
        "nifty.com",
        "biglobe.ne.jp",
        "ocn.ne.jp",
        "so-net.ne.jp",
        "excite.co.jp",
        "yahoo.ne.jp",
        "ybb.ne.jp",
        "goo.jp",
        "mail.goo.ne.jp",
        "auone.jp",
        "uqmobile.jp",
        "rakumail.jp",
        "emobile.ne.jp",
        "disney.ne.jp",
        "willcom.com",
        "zoho.com",
        "yandex.com",
        "qq.com",
        "163.com",
        "naver.com",
        "hotmail.co.uk",
        "yahoo.co.uk",
        "gmx.de",
        "web.de",
    }
)

# Carriers and ISPs that hand out addresses on sub-domains (taro@xx.vodafone.ne.jp, the regional
# servers of OCN, plala, BIGLOBE, so-net...): a domain ending in one of these is free mail too.
FREE_MAIL_PARENT_DOMAINS: frozenset[str] = frozenset(
    {
        "vodafone.ne.jp",
        "pdx.ne.jp",
        "ocn.ne.jp",
        "plala.or.jp",
        "biglobe.ne.jp",
        "so-net.ne.jp",
        "nifty.ne.jp",
        "dion.ne.jp",
        "odn.ne.jp",
        "infoweb.ne.jp",
        "eonet.ne.jp",
        "ezweb.ne.jp",
        "docomo.ne.jp",
        "softbank.ne.jp",
    }
)

# Honorifics typed into name fields ("一郎 様", "Mr. John", "Mr.John", "Yamada-san") are not part
# of the name. The romaji forms need the hyphen, which keeps a name such as "Hisan" whole.
_HONORIFIC_SUFFIX_RE = r"\s*(?:様|殿|さん|氏|先生)$|(?i:-(?:san|sama|dono|sensei))$"
_HONORIFIC_PREFIX_RE = r"^(?:mr|mrs|ms|miss|mx|dr|prof)(?:\.\s*|\s+)"
_HONORIFIC_TOKENS = ("様", "殿", "さん", "氏", "先生")

# Old/variant kanji (itaiji) that appear in names and company names -> the common form. A compact
# subset of the MJ/NTA folding; enough for the variants Japanese CRM users actually mix.
ITAIJI_FOLD: dict[str, str] = {
    "髙": "高",
    "﨑": "崎",
    "嵜": "崎",
    "齋": "斎",
    "齊": "斎",
    "斉": "斎",
    "邊": "辺",
    "邉": "辺",
    "德": "徳",
    "濵": "浜",
    "濱": "浜",
    "澤": "沢",
    "櫻": "桜",
    "廣": "広",
    "嶋": "島",
    "嶌": "島",
    "冨": "富",
    "國": "国",
    "眞": "真",
    "實": "実",
    "惠": "恵",
    "榮": "栄",
    "藏": "蔵",
    "淺": "浅",
    "瀨": "瀬",
    "槇": "槙",
    "黑": "黒",
    "條": "条",
    "𠮷": "吉",
    "龍": "竜",
    "會": "会",
    "壽": "寿",
    "曾": "曽",
    "萬": "万",
    "與": "与",
    "彌": "弥",
    "驒": "騨",
}

# Legal designators (§4.2 of the notes). Japanese long forms and bracketed abbreviations never form
# part of a distinguishing name, so they are removed wherever they occur; alternatives are ordered
# longest first because the regex engine takes the leftmost alternative that matches.
_JA_LEGAL_FORMS = (
    "社会保険労務士法人",
    "特定非営利活動法人",
    "地方独立行政法人",
    "有限責任事業組合",
    "独立行政法人",
    "国立大学法人",
    "一般社団法人",
    "一般財団法人",
    "公益社団法人",
    "公益財団法人",
    "司法書士法人",
    "行政書士法人",
    "社会医療法人",
    "社会福祉法人",
    "農事組合法人",
    "医療法人社団",
    "医療法人財団",
    "弁護士法人",
    "税理士法人",
    "監査法人",
    "医療法人",
    "学校法人",
    "宗教法人",
    "株式会社",
    "有限会社",
    "合同会社",
    "合資会社",
    "合名会社",
    "相互会社",
    "NPO法人",
    "カブシキガイシャ",
    "カブシキカイシャ",
    "ユウゲンガイシャ",
    "ゴウドウガイシャ",
)
_JA_ABBREVIATIONS = (
    "特非",
    "一社",
    "一財",
    "公社",
    "公財",
    "株",
    "有",
    "合",
    "同",
    "資",
    "名",
    "社",
    "財",
    "医",
    "学",
    "福",
    "独",
    "宗",
)
# English / romanised / foreign designators, removed only at the end of the name (possibly several:
# "Co., Ltd." is "co." then "ltd."), and only after a separator so "Hag" keeps its "ag".
_EN_LEGAL_FORMS = (
    r"kabushiki\s*[gk]aisha",
    r"godo\s*kaisha",
    r"yugen\s*kaisha",
    r"co\.?\s*,?\s*ltd",
    r"pte\.?\s*ltd",
    r"pty\.?\s*ltd",
    r"sdn\.?\s*bhd",
    r"company\s+limited",
    r"incorporated",
    r"corporation",
    r"limited",
    r"company",
    r"corp",
    r"inc",
    r"ltd",
    r"llc",
    r"llp",
    r"plc",
    r"gmbh",
    r"k\.?\s?k",
    r"g\.?\s?k",
    r"y\.?\s?k",
    r"s\.?\s?a\.?\s?s",
    r"s\.?\s?a\.?\s?r\.?\s?l",
    r"s\.?\s?p\.?\s?a",
    r"s\.?\s?r\.?\s?l",
    r"s\.?\s?a",
    r"b\.?\s?v",
    r"n\.?\s?v",
    r"ag",
    r"se",
    r"oy",
    r"ab",
    r"co",
)
_JA_LEGAL_RE = "|".join(_JA_LEGAL_FORMS)
_JA_ABBR_RE = r"\((?:" + "|".join(_JA_ABBREVIATIONS) + r")\)"
_EN_LEGAL_TAIL_RE = r"(?:(?:^|[\s,]+)(?:" + "|".join(_EN_LEGAL_FORMS) + r")\.?)+\s*$"
# Romanised Japanese designators may also lead, as 前株 does ("Kabushiki Kaisha Toshiba",
# "K.K. Foo"). Abbreviations only with their dots: "KK Wind Solutions" and "GK Software" are names.
_EN_LEGAL_HEAD_RE = (
    r"^(?:kabushiki\s*[gk]aisha|godo\s*kaisha|yugen\s*kaisha|k\.\s?k\.|g\.\s?k\.|y\.\s?k\.)[\s,]+"
)
# Zengin (bank transfer) style kana designators: "カ)ヤマダショウテン", "ヤマダショウテン(カ".
_ZENGIN_RE = r"^[カユドゴシザ]\)|\([カユドゴ]$"
# Dashes NFKC leaves alone; after katakana they stand for the long-vowel mark ー.
_DASHES = "‐‑‒–—―−\\-"
_KATAKANA_DASH_RE = r"(\p{Katakana})[" + _DASHES + r"ｰ]"
_COMPANY_PUNCT_RE = r"[\s・,.&()\[\]{}'\"’`/\\!?:;+*#@_~|" + _DASHES + r"]"

# Country names as CRM users type them -> ISO 3166-1 alpha-2. Two-letter codes pass through.
COUNTRY_ALIASES: dict[str, str] = {
    "japan": "JP",
    "jpn": "JP",
    "nippon": "JP",
    "nihon": "JP",
    "日本": "JP",
    "日本国": "JP",
    "にほん": "JP",
    "united states": "US",
    "united states of america": "US",
    "usa": "US",
    "u.s.a.": "US",
    "u.s.": "US",
    "america": "US",
    "アメリカ": "US",
    "アメリカ合衆国": "US",
    "米国": "US",
    "united kingdom": "GB",
    "uk": "GB",
    "u.k.": "GB",
    "great britain": "GB",
    "england": "GB",
    "gbr": "GB",
    "イギリス": "GB",
    "英国": "GB",
    "germany": "DE",
    "deutschland": "DE",
    "deu": "DE",
    "ドイツ": "DE",
    "france": "FR",
    "fra": "FR",
    "フランス": "FR",
    "china": "CN",
    "chn": "CN",
    "中国": "CN",
    "中華人民共和国": "CN",
    "south korea": "KR",
    "korea": "KR",
    "republic of korea": "KR",
    "kor": "KR",
    "韓国": "KR",
    "大韓民国": "KR",
    "taiwan": "TW",
    "台湾": "TW",
    "hong kong": "HK",
    "香港": "HK",
    "singapore": "SG",
    "シンガポール": "SG",
    "india": "IN",
    "インド": "IN",
    "australia": "AU",
    "オーストラリア": "AU",
    "canada": "CA",
    "カナダ": "CA",
    "thailand": "TH",
    "タイ": "TH",
    "vietnam": "VN",
    "viet nam": "VN",
    "ベトナム": "VN",
    "indonesia": "ID",
    "インドネシア": "ID",
    "philippines": "PH",
    "フィリピン": "PH",
    "malaysia": "MY",
    "マレーシア": "MY",
    "netherlands": "NL",
    "オランダ": "NL",
    "spain": "ES",
    "スペイン": "ES",
    "italy": "IT",
    "イタリア": "IT",
    "sweden": "SE",
    "switzerland": "CH",
    "スイス": "CH",
    "brazil": "BR",
    "ブラジル": "BR",
    "mexico": "MX",
    "メキシコ": "MX",
}

# local part (before any +tag) and domain; anything else is not an address.
_EMAIL_RE = r"^(?:mailto:)?(?<local>[^@\s+]+)(?:\+[^@\s]*)?@(?<domain>[^@\s]+\.[^@\s]+)$"
_JAPANESE_SCRIPT_RE = r"[\p{Hiragana}\p{Katakana}\p{Han}]"
_TRUE_STRINGS = ("true", "1", "1.0", "yes", "y", "t")
_FALSE_STRINGS = ("false", "0", "0.0", "no", "n", "f", "")

# Canonical columns by how their raw strings are parsed.
_BOOL_COLUMNS = (
    "opted_out",
    "do_not_contact",
    "bounced",
    "sf_is_converted",
    "is_deleted",
    *BANT_COLUMNS,
)
_TS_COLUMNS = ("created_at", "updated_at")

# Which field of a lead record links it to another record (tier 0 identity evidence):
# source key -> [(field, target record-id prefix, separator or None)].
_HARD_LINK_FIELDS: dict[str, list[tuple[str, str, str | None]]] = {
    "hubspot:contacts": [
        ("salesforceleadid", "salesforce:Lead:", None),
        ("salesforcecontactid", "salesforce:Contact:", None),
        ("hs_merged_object_ids", "hubspot:contacts:", ";"),
    ],
    "salesforce:Lead": [
        ("ConvertedContactId", "salesforce:Contact:", None),
        ("MasterRecordId", "salesforce:Lead:", None),
    ],
    "salesforce:Contact": [("MasterRecordId", "salesforce:Contact:", None)],
}

# --------------------------------------------------------------------------------------------
# Small expression helpers
# --------------------------------------------------------------------------------------------


def _as_expr(col: str | pl.Expr) -> pl.Expr:
    return pl.col(col) if isinstance(col, str) else col


def _raw_col(df: pl.DataFrame, name: str) -> pl.Expr:
    """A raw column as a String expression; a column the source did not send is all null."""
    if name in df.columns:
        return pl.col(name).cast(pl.String)
    return pl.lit(None, dtype=pl.String)


def _keep_name(expr: pl.Expr, col: str | pl.Expr) -> pl.Expr:
    """Name a derived expression after its input column, like plain string ops are named."""
    name = _as_expr(col).meta.output_name(raise_if_undetermined=False)
    return expr.alias(name) if name else expr


def _frame(raw: Mapping[str, pl.DataFrame], key: str) -> pl.DataFrame | None:
    df = raw.get(key)
    if df is None or df.height == 0:
        return None
    return df


def _empty_to_null(expr: pl.Expr) -> pl.Expr:
    # `replace` references the input once; when/then/otherwise would evaluate it twice.
    return expr.replace("", None)


def clean_text_expr(col: str | pl.Expr) -> pl.Expr:
    """NFKC, trimmed, inner whitespace collapsed; empty -> null."""
    s = (
        _as_expr(col)
        .cast(pl.String)
        .str.normalize("NFKC")
        .str.replace_all(r"\s+", " ")
        .str.strip_chars()
    )
    return _empty_to_null(s)


def parse_bool_expr(col: str | pl.Expr) -> pl.Expr:
    """ "true"/"1"/"yes" -> True, "false"/"0"/"" -> False, any other non-empty text -> True.

    The last rule is what makes Salesforce's EmailBouncedReason (free text) and HubSpot's
    hs_email_bounce (a count: "0" means never bounced) both work as `bounced`.
    """
    s = _as_expr(col).cast(pl.String).str.strip_chars().str.to_lowercase()
    return (
        pl.when(s.is_null())
        .then(None)
        .when(s.is_in(_TRUE_STRINGS))
        .then(True)
        .when(s.is_in(_FALSE_STRINGS))
        .then(False)
        .when(s.str.contains(r"^[0-9]+(\.[0-9]+)?$"))
        .then(s.cast(pl.Float64, strict=False) > 0)
        .otherwise(True)
    )


def parse_timestamp_expr(col: str | pl.Expr) -> pl.Expr:
    """HubSpot ISO (`...Z`), Salesforce (`...+0000`), plain dates and epoch millis -> UTC."""
    s = _as_expr(col).cast(pl.String).str.strip_chars()
    formats = (
        "%Y-%m-%dT%H:%M:%S%.fZ",
        "%Y-%m-%dT%H:%M:%S%.f%z",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%d",
    )
    parsed = [s.str.to_datetime(f, strict=False, time_zone="UTC", time_unit="us") for f in formats]
    # Some HubSpot properties (and older exports) carry epoch milliseconds.
    epoch = pl.when(s.str.contains(r"^\d{12,13}$")).then(
        pl.from_epoch(s.cast(pl.Int64, strict=False), time_unit="ms")
        .dt.replace_time_zone("UTC")
        .cast(UTC_TS)
    )
    return pl.coalesce(*parsed, epoch).cast(UTC_TS)


def parse_date_expr(col: str | pl.Expr) -> pl.Expr:
    """`2024-01-01` or a datetime string -> Date (the first ten characters)."""
    s = _as_expr(col).cast(pl.String).str.strip_chars().str.slice(0, 10)
    return s.str.to_date("%Y-%m-%d", strict=False)


def parse_int_expr(col: str | pl.Expr) -> pl.Expr:
    """ "120", "120.0", "1,000", HubSpot ranges "100-500" (lower bound) and "1000+" -> Int64."""
    s = _as_expr(col).cast(pl.String).str.normalize("NFKC").str.replace_all(",", "")
    return s.str.extract(r"(\d+)", 1).cast(pl.Int64, strict=False)


# --------------------------------------------------------------------------------------------
# Email
# --------------------------------------------------------------------------------------------


def normalize_email_expr(col: str | pl.Expr) -> pl.Expr:
    """Canonical email: NFKC, trimmed, lower case, `+tag` stripped, gmail dots folded.

    Anything that is not shaped like `local@domain.tld` after that becomes null, so junk such as
    "n/a" never becomes identity evidence. Idempotent, so already-normalised input is safe.
    """
    base = _as_expr(col).cast(pl.String).str.normalize("NFKC").str.strip_chars().str.to_lowercase()
    # One regex validates and splits; the later steps work on the struct's fields so the column is
    # normalised once (eager polars does not eliminate repeated sub-expressions).
    parts = base.str.extract_groups(_EMAIL_RE)
    gmail = pl.field("domain") == "gmail.com"
    return (
        parts.struct.with_fields(pl.field("domain").replace("googlemail.com", "gmail.com"))
        # Gmail ignores dots in the local part; other providers do not, so only fold there.
        .struct.with_fields(
            pl.when(gmail)
            .then(pl.field("local").str.replace_all(".", "", literal=True))
            .otherwise(pl.field("local"))
            .alias("local")
        )
        .struct.with_fields(
            pl.concat_str(pl.field("local"), pl.lit("@"), pl.field("domain")).alias("email")
        )
        .struct.field("email")
        .pipe(_keep_name, col)
    )


def email_domain_expr(email: str | pl.Expr) -> pl.Expr:
    """Domain of a normalised email."""
    return _as_expr(email).str.extract(r"@([^@]+)$", 1)


def email_is_role_expr(email: str | pl.Expr) -> pl.Expr:
    """Shared mailboxes (info@, sales@, toiawase@, info-jp@, sales2@...): never person evidence."""
    local = _as_expr(email).str.extract(r"^([^@]+)@", 1)
    roles = "|".join(sorted(ROLE_LOCAL_PARTS, key=len, reverse=True)).replace("-", r"\-")
    pattern = r"^(?:" + roles + r")(?:[._\-]?(?:jp|japan|en|us|team|desk|dept|center|\d+))?$"
    return local.str.contains(pattern)


def domain_is_free_expr(domain: str | pl.Expr) -> pl.Expr:
    """A free-mail domain, or a sub-domain of a carrier/ISP in FREE_MAIL_PARENT_DOMAINS."""
    d = _as_expr(domain)
    parents = "|".join(sorted(x.replace(".", r"\.") for x in FREE_MAIL_PARENT_DOMAINS))
    return d.is_in(list(FREE_MAIL_DOMAINS)) | d.str.contains(r"(?:^|\.)(?:" + parents + r")$")


def email_is_free_expr(email: str | pl.Expr) -> pl.Expr:
    """Free-mail providers (gmail.com, yahoo.co.jp, docomo.ne.jp...): never company evidence."""
    return domain_is_free_expr(email_domain_expr(email))


def website_domain_expr(col: str | pl.Expr) -> pl.Expr:
    """A website as typed ("https://www.Acme.co.jp/ja/", "acme.co.jp") -> its host, lower case,
    without scheme, `www.`, port or path; anything without a dotted host -> null."""
    s = _as_expr(col).cast(pl.String).str.normalize("NFKC").str.strip_chars().str.to_lowercase()
    s = s.str.replace(r"^[a-z][a-z0-9+.\-]*://", "").str.replace(r"^[^/@]*@", "")
    host = s.str.extract(r"^([^/?#:\s]+)", 1).str.replace(r"^www\d*\.", "").str.strip_chars(".")
    return pl.when(host.str.contains(r"^[\p{L}\p{N}\-]+(?:\.[\p{L}\p{N}\-]+)+$")).then(host)


def company_domain_expr(email: str | pl.Expr, website: str | pl.Expr) -> pl.Expr:
    """The organisation's domain: the email's domain unless it is free mail (a role address such
    as info@acme.co.jp still names the company), else the website's host; never free mail."""
    domain = email_domain_expr(email)
    host = website_domain_expr(website)
    return pl.coalesce(
        pl.when(~domain_is_free_expr(domain).fill_null(True)).then(domain),
        pl.when(~domain_is_free_expr(host).fill_null(True)).then(host),
    )


# --------------------------------------------------------------------------------------------
# Person names
# --------------------------------------------------------------------------------------------


def clean_person_name_expr(col: str | pl.Expr) -> pl.Expr:
    """A name part for display: NFKC, trimmed, honorifics (様, Mr. ...) removed; kanji kept as
    entered (the person's own spelling matters in a salutation, folding is for keys only)."""
    s = clean_text_expr(col)
    s = s.str.replace(r"(?i)" + _HONORIFIC_PREFIX_RE, "").str.replace(_HONORIFIC_SUFFIX_RE, "")
    s = s.str.strip_chars()
    return _empty_to_null(s)


def given_name_key_expr(col: str | pl.Expr) -> pl.Expr:
    """One name part folded for comparison: honorific-free, itaiji-folded, no spaces/dots, lower."""
    s = clean_person_name_expr(col).str.replace_many(ITAIJI_FOLD).str.to_lowercase()
    s = s.str.replace_all(r"[\s.・]", "")
    return _empty_to_null(s)


def name_key_expr(first: str | pl.Expr, last: str | pl.Expr) -> pl.Expr:
    """Order-free person key: (太郎, 山田) == (山田, 太郎) == ("山田 太郎 様", null).

    CRMs swap first/last (Japanese is family-name first, Western exports given-first) or put the
    full name into one field, so the key is the sorted set of name tokens from both fields,
    each NFKC'd, honorific-free, itaiji-folded and lower case, joined by a single space.
    """

    def tokens(col: str | pl.Expr) -> pl.Expr:
        part = clean_person_name_expr(col).str.replace_many(ITAIJI_FOLD).str.to_lowercase()
        return part.str.replace_all(r"[.・]", "").str.split(" ").fill_null([])

    joined = (
        pl.concat_list(tokens(first), tokens(last))
        .list.eval(
            pl.element().filter((pl.element() != "") & ~pl.element().is_in(_HONORIFIC_TOKENS))
        )
        .list.sort()
        .list.join(" ")
    )
    return _empty_to_null(joined)


# Katakana ァ..ヶ (U+30A1..U+30F6) sit exactly 0x60 above hiragana ぁ..ゖ; the long-vowel mark ー
# has no hiragana form and stays as it is.
KATAKANA_TO_HIRAGANA: dict[str, str] = {chr(c): chr(c - 0x60) for c in range(0x30A1, 0x30F7)}
# Honorifics as they appear in reading fields, after the katakana -> hiragana step.
_READING_HONORIFIC_RE = r"\s*(?:様|殿|氏|先生|さま|さん|どの|せんせい)$"


def kana_reading_expr(col: str | pl.Expr) -> pl.Expr:
    """One kana (フリガナ) name part -> hiragana without spaces: ヤマダ == やまだ == ﾔﾏﾀﾞ.

    NFKC turns half-width katakana into full-width (ﾀﾞ -> ダ), a fixed code-point offset turns
    katakana into hiragana, then honorifics and spaces go.
    """
    s = clean_text_expr(col).str.replace_many(KATAKANA_TO_HIRAGANA).str.to_lowercase()
    s = s.str.replace(_READING_HONORIFIC_RE, "").str.replace_all(r"[\s・]", "")
    return _empty_to_null(s)


def name_reading_expr(first: str | pl.Expr, last: str | pl.Expr) -> pl.Expr:
    """Order-free reading key like `name_key_expr`: the hiragana parts sorted, joined by a space.

    (タロウ, ヤマダ) == (やまだ, たろう); a record with only the family reading keys on that part
    alone; no reading at all -> null.
    """
    parts = pl.concat_list(kana_reading_expr(first), kana_reading_expr(last))
    return _empty_to_null(parts.list.drop_nulls().list.sort().list.join(" "))


# German and Nordic letters as their conventional ASCII spellings, so "Krüger" == "Krueger";
# other accents are dropped by NFKD below.
_LATIN_FOLD: dict[str, str] = {"ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss", "ø": "oe", "æ": "ae"}
# Hepburn long vowels written every way CRMs see them: Satou/Satoh/Satō -> sato, Yuuichi -> yuichi,
# Oono/Ohno -> ono. Applied to both sides, so only the comparison key changes.
_LONG_VOWELS: tuple[tuple[str, str], ...] = (
    (r"ou", "o"),
    (r"oo", "o"),
    (r"uu", "u"),
    (r"oh([^aeiouy]|$)", "o${1}"),
)


@functools.cache
def _kakasi() -> Any:
    # pykakasi loads its dictionaries once (about 0.3 s); most runs never need it.
    import pykakasi

    return pykakasi.kakasi()


def _romaji_part(text: str) -> str:
    """One name part in ASCII: Japanese script via pykakasi's Hepburn (a dictionary reading of a
    kanji name is a guess, which is why identity weighs this key below an exact name), Latin
    letters folded."""
    if re.search(r"[\u3040-\u30ff\u3400-\u9fff]", text):
        text = "".join(item["hepburn"] for item in _kakasi().convert(text))
    else:
        text = "".join(_LATIN_FOLD.get(ch, ch) for ch in text.lower())
        text = "".join(
            ch for ch in unicodedata.normalize("NFKD", text) if not unicodedata.combining(ch)
        )
    return re.sub(r"[^a-z]", "", text.lower())


def name_romaji(
    first: pl.Series,
    last: pl.Series,
    first_reading: pl.Series,
    last_reading: pl.Series,
    romaji: MutableMapping[str, str] | None = None,
) -> pl.Series:
    """Order-free romaji key of a person's name: 鈴木 雄一 == "Yuichi Suzuki" == すずき ゆういち.

    Each part is romanised from its kana reading when there is one (the person's own), else from
    the name itself; long vowels are folded; the parts are sorted and joined by a space like
    `name_key_expr`. pykakasi is Python, so it runs once per distinct part, not per record.
    `romaji` (name part -> romaji, as `_romaji_part` gives it) is consulted first and extended: a
    caller that keeps it between runs loads pykakasi's dictionaries (~0.5 s) only for a name part
    it has never seen.
    """
    parts = pl.DataFrame(
        {"first": first, "last": last, "first_r": first_reading, "last_r": last_reading},
        schema={c: pl.String for c in ("first", "last", "first_r", "last_r")},
    ).with_columns(
        pl.coalesce("first_r", clean_person_name_expr("first")).alias("f"),
        pl.coalesce("last_r", clean_person_name_expr("last")).alias("l"),
    )
    distinct = pl.concat([parts["f"], parts["l"]]).drop_nulls().unique()
    memo: MutableMapping[str, str] = {} if romaji is None else romaji
    table = {v: memo[v] if v in memo else _romaji_part(v) for v in distinct.to_list()}
    memo.update(table)
    folded = pl.Series("k", list(table.values()), dtype=pl.String)
    for pattern, replacement in _LONG_VOWELS:
        folded = folded.str.replace_all(pattern, replacement)
    mapping = dict(zip(table.keys(), folded.to_list(), strict=True))
    key = (
        parts.select(
            pl.concat_list(
                pl.col("f").replace_strict(mapping, default=None, return_dtype=pl.String),
                pl.col("l").replace_strict(mapping, default=None, return_dtype=pl.String),
            )
            .list.eval(pl.element().filter(pl.element().is_not_null() & (pl.element() != "")))
            .list.sort()
            .list.join(" ")
            .alias("k")
        )
    )["k"]
    return key.replace("", None).alias("name_romaji")


def has_japanese_script_expr(col: str | pl.Expr) -> pl.Expr:
    """True when the text contains kana or kanji."""
    return _as_expr(col).str.contains(_JAPANESE_SCRIPT_RE).fill_null(False)


# --------------------------------------------------------------------------------------------
# Company
# --------------------------------------------------------------------------------------------


def company_key_expr(col: str | pl.Expr) -> pl.Expr:
    """Company key: legal designators stripped, folded, no spaces or punctuation, lower case.

    NFKC first turns ㈱ into (株) and ｶﾌﾞｼｷ into カブシキ. Designators go wherever they stand
    (前株 株式会社X and 後株 X株式会社 give the same key; "Co., Ltd." and "Corporation" too), but
    distinguishing words stay: ソフトバンク != ソフトバンクグループ, "SAP Japan" != "SAP SE".
    """
    s = _as_expr(col).cast(pl.String).str.normalize("NFKC").str.to_lowercase()
    s = s.str.replace_all(_KATAKANA_DASH_RE, "${1}ー")
    s = s.str.replace_all(_JA_LEGAL_RE, " ").str.replace_all(_JA_ABBR_RE, " ")
    s = s.str.strip_chars().str.replace_all(_ZENGIN_RE, "")
    s = s.str.replace(_EN_LEGAL_TAIL_RE, "").str.replace(_EN_LEGAL_HEAD_RE, "")
    s = s.str.replace_many(ITAIJI_FOLD).str.replace_all(_COMPANY_PUNCT_RE, "")
    return _empty_to_null(s)


# --------------------------------------------------------------------------------------------
# Country, locale, phone
# --------------------------------------------------------------------------------------------


def country_code_expr(col: str | pl.Expr) -> pl.Expr:
    """Country as typed ("Japan", "日本", "USA", "jp") -> ISO alpha-2; unknown names -> null."""
    s = clean_text_expr(col).str.to_lowercase()
    aliased = s.replace_strict(COUNTRY_ALIASES, default=None, return_dtype=pl.String)
    two_letter = pl.when(s.str.contains(r"^[a-z]{2}$")).then(s.str.to_uppercase())
    return pl.coalesce(aliased, two_letter)


# phonenumbers' number types -> `phone_type`. Numbers that may be either (the US and Canada do not
# tell mobile from fixed by number) count as fixed. Japan's 0570 navi-dial is a shared-cost
# representative line; phonenumbers' metadata files it as UAN (universal access number), which is
# the same thing for us: a company switchboard, never a person's own line.
_PHONE_TYPES: dict[int, str] = {
    phonenumbers.PhoneNumberType.MOBILE: "mobile",
    phonenumbers.PhoneNumberType.FIXED_LINE: "fixed",
    phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE: "fixed",
    phonenumbers.PhoneNumberType.TOLL_FREE: "toll_free",
    phonenumbers.PhoneNumberType.SHARED_COST: "shared_cost",
    phonenumbers.PhoneNumberType.UAN: "shared_cost",
    phonenumbers.PhoneNumberType.VOIP: "voip",
}
# Phone types that name a company line (free dial 0120/0800, navi-dial 0570), not a person.
SHARED_PHONE_TYPES: tuple[str, ...] = ("toll_free", "shared_cost")
PHONE_SCHEMA: dict[str, pl.DataType] = {"phone": pl.String(), "phone_type": pl.String()}


def _parse_phone_one(value: str, region: str | None) -> tuple[str | None, str | None]:
    try:
        parsed = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException:
        return None, None
    if not phonenumbers.is_valid_number(parsed):
        return None, None
    e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    return e164, _PHONE_TYPES.get(phonenumbers.number_type(parsed), "other")


def parse_phones(values: pl.Series, default_region_by_row: pl.Series) -> pl.DataFrame:
    """Phone numbers -> PHONE_SCHEMA rows (E.164 and type; invalid -> nulls), each parsed with
    its row's default region; one output row per input row, in order.

    Full-width digits and dashes are folded by NFKC first. `phonenumbers` is Python, so it runs
    once per distinct (number, region) pair, giving both the E.164 form and the number type, and
    the result is joined back onto the rows.
    """
    frame = pl.DataFrame(
        {
            "value": values.cast(pl.String).str.normalize("NFKC").str.strip_chars(),
            "region": default_region_by_row.cast(pl.String).str.to_uppercase(),
        }
    ).with_row_index("_row")
    pairs = frame.select("value", "region").unique().filter(pl.col("value").is_not_null())
    parsed = [
        _parse_phone_one(v, r)
        for v, r in zip(pairs["value"].to_list(), pairs["region"].to_list(), strict=True)
    ]
    pairs = pairs.with_columns(
        pl.Series("phone", [p[0] for p in parsed], dtype=pl.String),
        pl.Series("phone_type", [p[1] for p in parsed], dtype=pl.String),
    )
    out = frame.join(pairs, on=["value", "region"], how="left", nulls_equal=True).sort("_row")
    return out.select(pl.col(c).cast(t) for c, t in PHONE_SCHEMA.items())


def phone_e164(values: pl.Series, default_region_by_row: pl.Series) -> pl.Series:
    """Phone numbers -> E.164 (invalid -> null); `parse_phones` without the type."""
    return parse_phones(values, default_region_by_row)["phone"].alias(values.name)


def phone_rank_expr(phone_type: str | pl.Expr) -> pl.Expr:
    """How good a number is as a person's phone, lower is better: mobile 0, other personal lines
    (fixed, VoIP, other, unknown) 1, toll-free / shared-cost company lines 2."""
    t = _as_expr(phone_type)
    rank = (
        pl.when(t == "mobile")
        .then(pl.lit(0))
        .when(t.is_in(SHARED_PHONE_TYPES))
        .then(pl.lit(2))
        .otherwise(pl.lit(1))
    )
    return _keep_name(rank, phone_type)


# --------------------------------------------------------------------------------------------
# Leads
# --------------------------------------------------------------------------------------------


def _mapped_frame(df: pl.DataFrame, source_key: str, field_map: Mapping[str, str]) -> pl.DataFrame:
    """Raw source frame -> raw canonical columns (still strings) plus ids and hard links."""
    system, obj = source_key.split(":", 1)
    id_col = "id" if system == HUBSPOT else "Id"
    source_id = _raw_col(df, id_col)
    if system == HUBSPOT:
        source_id = pl.coalesce(source_id, _raw_col(df, "hs_object_id"))

    # Several CRM fields may feed one canonical column: the first mapped non-null wins.
    feeds: dict[str, list[pl.Expr]] = {}
    for field, canonical in field_map.items():
        feeds.setdefault(canonical, []).append(_raw_col(df, field))
    if source_key == "hubspot:contacts":
        # Archived contacts count as deleted.
        feeds.setdefault("is_deleted", []).append(_raw_col(df, "archived"))
    exprs = [pl.coalesce(*e).alias(c) if len(e) > 1 else e[0].alias(c) for c, e in feeds.items()]

    links: list[pl.Expr] = []
    for field, prefix, sep in _HARD_LINK_FIELDS.get(source_key, []):
        raw = _raw_col(df, field)
        parts = raw.str.split(sep) if sep else pl.concat_list(raw)
        links.append(
            parts.list.eval(pl.element().str.strip_chars())
            .list.eval(pl.lit(prefix) + pl.element().filter(pl.element() != ""))
            .fill_null([])
        )
    link_expr = (pl.concat_list(links) if links else pl.lit([], dtype=pl.List(pl.String))).alias(
        "linked_record_ids"
    )

    out = df.select(
        pl.lit(system).alias("source_system"),
        pl.lit(obj).alias("source_object"),
        source_id.str.strip_chars().alias("source_id"),
        *exprs,
        link_expr,
        _raw_col(df, "AccountId").alias("_account_id"),
        # The mobile field competes with the mapped phone in _choose_phone.
        _raw_col(df, MOBILE_PHONE_FIELDS[source_key]).alias("_mobile_phone")
        if source_key in MOBILE_PHONE_FIELDS
        else pl.lit(None, dtype=pl.String).alias("_mobile_phone"),
    )
    return out.filter(pl.col("source_id").is_not_null() & (pl.col("source_id") != ""))


def _with_account_fields(frame: pl.DataFrame, raw: Mapping[str, pl.DataFrame]) -> pl.DataFrame:
    """Salesforce Contacts take company, industry and size from their Account (via AccountId)."""
    accounts = _frame(raw, "salesforce:Account")
    if accounts is None:
        return frame
    acc = accounts.select(
        _raw_col(accounts, "Id").alias("_account_id"),
        _raw_col(accounts, "Name").alias("_acc_company"),
        _raw_col(accounts, "Industry").alias("_acc_industry"),
        _raw_col(accounts, "NumberOfEmployees").alias("_acc_employees"),
        _raw_col(accounts, "BillingCountry").alias("_acc_country"),
        _raw_col(accounts, "Website").alias("_website"),
    ).unique("_account_id", keep="first")
    joined = frame.join(acc, on="_account_id", how="left")
    fills = {
        "company": "_acc_company",
        "industry": "_acc_industry",
        "employee_count": "_acc_employees",
        "country": "_acc_country",
    }
    joined = joined.with_columns(
        pl.coalesce(
            pl.col(c) if c in joined.columns else pl.lit(None, dtype=pl.String), pl.col(a)
        ).alias(c)
        for c, a in fills.items()
    )
    return joined.drop(list(fills.values()))


def _finish_leads(
    frame: pl.DataFrame, romaji: MutableMapping[str, str] | None = None
) -> pl.DataFrame:
    """Raw canonical strings -> typed, normalised CANONICAL_LEAD_SCHEMA columns."""
    inputs = [*CANONICAL_LEAD_SCHEMA, *MAPPING_INPUT_COLUMNS, "_mobile_phone", "_website"]
    for name in inputs:
        if name not in frame.columns and name != "linked_record_ids":
            frame = frame.with_columns(pl.lit(None, dtype=pl.String).alias(name))
    frame = frame.with_columns(pl.col("secondary_emails").cast(pl.String))

    email = normalize_email_expr("email")
    frame = frame.with_columns(
        pl.col("email").str.strip_chars().alias("email_raw"),
        email.alias("email"),
        first_name=clean_person_name_expr("first_name"),
        last_name=clean_person_name_expr("last_name"),
        company=clean_text_expr("company"),
        country=country_code_expr("country"),
        employee_count=parse_int_expr("employee_count"),
        **{c: clean_text_expr(c) for c in ("title", "industry", "lead_source", "owner_id")},
        **{c: clean_text_expr(c) for c in ("sf_status", "hs_lifecyclestage")},
        **{c: parse_bool_expr(c) for c in _BOOL_COLUMNS},
        **{c: parse_timestamp_expr(c) for c in _TS_COLUMNS},
        _language=clean_text_expr("locale").str.to_lowercase(),
    )
    # Secondary emails: HubSpot keeps them `;`-separated; normalised, deduplicated, primary removed.
    secondary = (
        pl.col("secondary_emails")
        .str.replace_all(r"[,\s]+", ";")
        .str.split(";")
        .list.eval(normalize_email_expr(pl.element()))
        .list.eval(pl.element().drop_nulls())
        .list.set_difference(pl.concat_list(pl.col("email")).list.drop_nulls())
        .list.unique(maintain_order=True)
        .fill_null([])
    )
    japanese = (
        has_japanese_script_expr("first_name")
        | has_japanese_script_expr("last_name")
        | (pl.col("country") == "JP")
    )
    # An explicit language preference (hs_language) wins; otherwise infer from country and script.
    locale = (
        pl.when(pl.col("_language").str.starts_with("ja"))
        .then(pl.lit("ja"))
        .when(pl.col("_language").str.starts_with("en"))
        .then(pl.lit("en"))
        .when(japanese)
        .then(pl.lit("ja"))
        .otherwise(pl.lit("en"))
    )
    frame = frame.with_columns(
        secondary.alias("secondary_emails"),
        email_domain_expr("email").alias("email_domain"),
        email_is_role_expr("email").alias("email_is_role"),
        email_is_free_expr("email").alias("email_is_free"),
        name_key_expr("first_name", "last_name").alias("name_key"),
        given_name_key_expr("first_name").alias("given_key"),
        given_name_key_expr("last_name").alias("family_key"),
        name_reading_expr("first_name_reading", "last_name_reading").alias("name_reading"),
        name_romaji(
            frame["first_name"],
            frame["last_name"],
            frame.select(kana_reading_expr("first_name_reading"))["first_name_reading"],
            frame.select(kana_reading_expr("last_name_reading"))["last_name_reading"],
            romaji,
        ),
        company_key_expr("company").alias("company_key"),
        company_domain_expr("email", "_website").alias("company_domain"),
        _empty_to_null(pl.col("source_account_id").str.strip_chars()),
        locale.alias("locale"),
        pl.concat_str("source_system", "source_object", "source_id", separator=":").alias(
            "record_id"
        ),
        pl.col("is_deleted").fill_null(False),
        pl.col("updated_at").fill_null(pl.col("created_at")),
    )
    # Phones are parsed in the record's country, else the locale's home country: a number
    # without "+" is ambiguous, and Japanese records without a country are far more common than
    # foreign ones.
    region = pl.coalesce(
        pl.col("country"),
        pl.when(pl.col("locale") == "ja").then(pl.lit("JP")).otherwise(pl.lit("US")),
    )
    regions = frame.select(region.alias("r"))["r"]
    frame = _choose_phone(frame, regions)
    frame = frame.with_columns(
        pl.col("linked_record_ids")
        .list.eval(pl.element().filter(pl.element().is_not_null()))
        .list.set_difference(pl.concat_list(pl.col("record_id")))
        .list.unique(maintain_order=True)
        .fill_null([])
    )
    return frame.select(pl.col(c).cast(t) for c, t in CANONICAL_LEAD_SCHEMA.items()).unique(
        "record_id", keep="first", maintain_order=True
    )


def _choose_phone(frame: pl.DataFrame, regions: pl.Series) -> pl.DataFrame:
    """`phone` / `phone_type`: the record's best personal number of its phone and mobile fields.

    Rule: the better `phone_rank_expr` wins (mobile over fixed/VoIP/other over toll-free and
    shared-cost lines, so a 0120/0570 switchboard is kept only when nothing else is there); on a
    tie the mobile field wins (it names the person's own line, while the phone field is often the
    office's; in the US and Canada, where numbers do not tell mobile from fixed, it is the only
    hint). Both fields are parsed in one `parse_phones` pass.
    """
    n = frame.height
    parsed = parse_phones(
        pl.concat([frame["phone"].cast(pl.String), frame["_mobile_phone"].cast(pl.String)]),
        pl.concat([regions, regions]),
    )
    main, mobile = parsed.slice(0, n), parsed.slice(n, n)
    both = frame.with_columns(
        main["phone"].alias("_p"),
        main["phone_type"].alias("_p_type"),
        mobile["phone"].alias("_m"),
        mobile["phone_type"].alias("_m_type"),
    )
    take_mobile = pl.col("_m").is_not_null() & (
        pl.col("_p").is_null() | (phone_rank_expr("_m_type") <= phone_rank_expr("_p_type"))
    )
    return both.with_columns(
        pl.when(take_mobile).then(pl.col("_m")).otherwise(pl.col("_p")).alias("phone"),
        pl.when(take_mobile)
        .then(pl.col("_m_type"))
        .otherwise(pl.col("_p_type"))
        .alias("phone_type"),
    ).drop("_p", "_p_type", "_m", "_m_type")


def normalize_leads(
    raw: Mapping[str, pl.DataFrame],
    mappings: Mapping[str, Mapping[str, str]],
    *,
    romaji: MutableMapping[str, str] | None = None,
) -> pl.DataFrame:
    """Raw HubSpot contacts and Salesforce Leads/Contacts -> CANONICAL_LEAD_SCHEMA rows.

    `mappings` is the lead definition's source key -> {CRM field -> canonical column}
    (DEFAULT_LEAD_MAPPINGS is the shipped definition); sources without a mapping or without rows
    contribute nothing. Beyond the mapping: the mobile field (MOBILE_PHONE_FIELDS) competes with
    the mapped phone (`_choose_phone`: mobile first, never a toll-free or shared-cost line when
    another number exists); a Contact takes company, industry, size (and country when missing)
    from its Account, keeps its AccountId as `source_account_id` and falls back to the Account's
    website for `company_domain`; the kana fields mapped to `first_name_reading` /
    `last_name_reading` become `name_reading`; hard links come from HubSpot's Salesforce ids and
    merged ids and Salesforce's ConvertedContactId and MasterRecordId. `romaji` (name part ->
    romaji, see `name_romaji`) is read and extended when given.
    """
    parts: list[pl.DataFrame] = []
    for source_key, field_map in mappings.items():
        df = _frame(raw, source_key)
        # Only person records are leads; a mapping for another object (say, companies for
        # enrichment) must not turn its rows into leads.
        if df is None or source_key not in LEAD_SOURCES:
            continue
        mapped = _mapped_frame(df, source_key, field_map)
        if source_key == "salesforce:Contact":
            # A Contact's AccountId is identity evidence (different Accounts veto a merge).
            mapped = _with_account_fields(mapped, raw).rename({"_account_id": "source_account_id"})
        else:
            mapped = mapped.drop("_account_id")
        parts.append(mapped)
    if not parts:
        return empty_frame(CANONICAL_LEAD_SCHEMA)
    return merged_away_are_deleted(_finish_leads(pl.concat(parts, how="diagonal_relaxed"), romaji))


def merged_away_are_deleted(leads: pl.DataFrame) -> pl.DataFrame:
    """A HubSpot contact merged into another vanishes from HubSpot without being archived; only the
    survivor's `hs_merged_object_ids` tells. A stored copy of it must not stay alive as a lead."""
    merged_away = (
        leads.filter((pl.col("source_system") == HUBSPOT) & ~pl.col("is_deleted"))
        .select(pl.col("linked_record_ids").explode().alias("record_id"))
        .filter(pl.col("record_id").str.starts_with("hubspot:contacts:"))
        .unique()
    )
    if merged_away.is_empty():
        return leads
    return leads.with_columns(
        (
            pl.col("is_deleted") | pl.col("record_id").is_in(merged_away["record_id"].implode())
        ).alias("is_deleted")
    )


# --------------------------------------------------------------------------------------------
# Activities
# --------------------------------------------------------------------------------------------

# Form / conversion-event names -> activity type, first match wins (demo before contact: "Contact
# sales for a demo" is a demo request). Lower-cased, NFKC'd names are searched for the keywords.
FORM_KEYWORDS: tuple[tuple[str, str], ...] = (
    ("demo_request", r"demo|デモ|体験"),
    ("quote_request", r"quote|quotation|pricing request|見積"),
    ("webinar_registration", r"webinar|ウェビナー|セミナー|seminar"),
    ("newsletter_signup", r"newsletter|メルマガ|メールマガジン|ニュースレター"),
    (
        "content_download",
        r"download|ダウンロード|whitepaper|white paper|ebook|case study|事例|資料",
    ),
    ("contact_request", r"contact|inquiry|enquiry|お問い合わせ|お問合せ|問い合わせ|問合せ"),
)


def classify_form_expr(name: str | pl.Expr) -> pl.Expr:
    """A form / conversion event name -> activity type (form_submission when nothing matches)."""
    s = _as_expr(name).str.normalize("NFKC").str.to_lowercase()
    expr: pl.Expr = pl.lit("form_submission")
    for activity_type, pattern in reversed(FORM_KEYWORDS):
        expr = pl.when(s.str.contains(pattern)).then(pl.lit(activity_type)).otherwise(expr)
    return _keep_name(expr, name)


def _activity_frame(df: pl.DataFrame) -> pl.DataFrame:
    return df.select(pl.col(c).cast(t) for c, t in ACTIVITY_SCHEMA.items())


def _hubspot_engagements(raw: Mapping[str, pl.DataFrame]) -> list[pl.DataFrame]:
    """Emails, calls and meetings, one row per (engagement, associated contact). Notes are
    skipped: a rep's note is not evidence that the lead engaged."""
    out: list[pl.DataFrame] = []
    specs = {
        "emails": "hs_email_subject",
        "calls": "hs_call_title",
        "meetings": "hs_meeting_title",
    }
    for obj, title_field in specs.items():
        df = _frame(raw, f"hubspot:{obj}")
        if df is None or "contact_ids" not in df.columns:
            continue
        # An archived engagement (its delete found by reconciliation) is no evidence any more.
        df = df.filter(~parse_bool_expr(_raw_col(df, "archived")).fill_null(False))
        if obj == "emails":
            direction = _raw_col(df, "hs_email_direction").str.to_uppercase()
            activity_type = (
                pl.when(direction == "INCOMING_EMAIL")
                .then(pl.lit("email_reply"))
                .when(direction == "EMAIL")
                .then(pl.lit("sales_email"))
            )
        else:
            activity_type = pl.lit("sales_call" if obj == "calls" else "meeting")
        frame = (
            df.select(
                _raw_col(df, "id").alias("_id"),
                pl.col("contact_ids").cast(pl.List(pl.String)),
                activity_type.alias("activity_type"),
                # hs_timestamp is when it happened; creation time is the fallback.
                parse_timestamp_expr(
                    pl.coalesce(_raw_col(df, "hs_timestamp"), _raw_col(df, "hs_createdate"))
                ).alias("occurred_at"),
                clean_text_expr(_raw_col(df, title_field)).alias("detail"),
            )
            .explode("contact_ids")
            .filter(pl.col("contact_ids").is_not_null() & pl.col("activity_type").is_not_null())
            .with_columns(
                (f"hubspot:{obj}:" + pl.col("_id") + ":" + pl.col("contact_ids")).alias(
                    "activity_id"
                ),
                ("hubspot:contacts:" + pl.col("contact_ids")).alias("record_id"),
                pl.lit(HUBSPOT).alias("source_system"),
            )
        )
        out.append(_activity_frame(frame))
    return out


def _hubspot_contact_activities(
    raw: Mapping[str, pl.DataFrame], event_contacts: pl.Series | None = None
) -> list[pl.DataFrame]:
    """Form conversions and page views carried as contact properties. `event_contacts`: the
    contact ids that have page-view events (default: the ones in raw web_events)."""
    df = _frame(raw, "hubspot:contacts")
    if df is None:
        return []
    base = df.select(
        pl.coalesce(_raw_col(df, "id"), _raw_col(df, "hs_object_id")).alias("_id"),
        clean_text_expr(_raw_col(df, "first_conversion_event_name")).alias("first_name"),
        parse_timestamp_expr(_raw_col(df, "first_conversion_date")).alias("first_at"),
        clean_text_expr(_raw_col(df, "recent_conversion_event_name")).alias("recent_name"),
        parse_timestamp_expr(_raw_col(df, "recent_conversion_date")).alias("recent_at"),
        parse_int_expr(_raw_col(df, "hs_analytics_num_page_views")).alias("views"),
        parse_timestamp_expr(_raw_col(df, "hs_analytics_last_visit_timestamp")).alias("visit_at"),
    ).filter(pl.col("_id").is_not_null())
    record_id = "hubspot:contacts:" + pl.col("_id")
    first = base.filter(pl.col("first_name").is_not_null()).select(
        (record_id + ":first_conversion").alias("activity_id"),
        record_id.alias("record_id"),
        classify_form_expr("first_name").alias("activity_type"),
        pl.col("first_at").alias("occurred_at"),
        pl.col("first_name").alias("detail"),
    )
    # HubSpot only exposes the first and the most recent conversion; when they are the same event
    # (one conversion in total) it is counted once.
    recent = base.filter(
        pl.col("recent_name").is_not_null()
        & ~(
            (pl.col("recent_name") == pl.col("first_name")).fill_null(False)
            & (pl.col("recent_at").eq_missing(pl.col("first_at")))
        )
    ).select(
        (record_id + ":recent_conversion").alias("activity_id"),
        record_id.alias("record_id"),
        classify_form_expr("recent_name").alias("activity_type"),
        pl.col("recent_at").alias("occurred_at"),
        pl.col("recent_name").alias("detail"),
    )
    # Without per-visit events (the Events API is an Enterprise feature) a contact only carries a
    # page-view COUNT and the last visit time: all views become one page_view row at the last
    # visit ("N page views"). Contacts whose visits arrive as events are counted from those.
    if event_contacts is None:
        with_events = _frame(raw, "hubspot:web_events")
        if with_events is not None and "objectId" in with_events.columns:
            event_contacts = with_events["objectId"]
    if event_contacts is not None:
        base = base.join(
            event_contacts.alias("_id").cast(pl.String).unique().to_frame(), on="_id", how="anti"
        )
    views = base.filter(pl.col("views") > 0).select(
        (record_id + ":page_views").alias("activity_id"),
        record_id.alias("record_id"),
        pl.lit("page_view").alias("activity_type"),
        pl.col("visit_at").alias("occurred_at"),
        (pl.col("views").cast(pl.String) + " page views").alias("detail"),
    )
    return [
        _activity_frame(f.with_columns(pl.lit(HUBSPOT).alias("source_system")))
        for f in (first, recent, views)
    ]


# Pages whose visit is a buying signal of its own (pricing, plans, quotes), in English and Japanese.
PRICING_PAGE_PATTERN = r"(?i)/pricing|/plans|/price|料金|価格|プラン"


def _hubspot_web_events(raw: Mapping[str, pl.DataFrame]) -> list[pl.DataFrame]:
    """Page views from HubSpot's Events API, one activity per visit."""
    df = _frame(raw, "hubspot:web_events")
    if df is None or "objectId" not in df.columns:
        return []
    url, title = _raw_col(df, "hs_url"), _raw_col(df, "hs_title")
    pricing = pl.concat_str([url, title], separator=" ", ignore_nulls=True).str.contains(
        PRICING_PAGE_PATTERN
    )
    frame = df.select(
        ("hubspot:web_events:" + _raw_col(df, "id")).alias("activity_id"),
        ("hubspot:contacts:" + _raw_col(df, "objectId")).alias("record_id"),
        pl.when(pricing.fill_null(False))
        .then(pl.lit("pricing_page_view"))
        .otherwise(pl.lit("page_view"))
        .alias("activity_type"),
        parse_timestamp_expr(_raw_col(df, "occurredAt")).alias("occurred_at"),
        pl.coalesce(title, url).alias("detail"),
        pl.lit(HUBSPOT).alias("source_system"),
    )
    return [_activity_frame(frame)]


def _who_record_id(who: pl.Expr) -> pl.Expr:
    """Salesforce WhoId -> lead record id by key prefix (00Q Lead, 003 Contact; else null)."""
    return (
        pl.when(who.str.starts_with("00Q"))
        .then("salesforce:Lead:" + who)
        .when(who.str.starts_with("003"))
        .then("salesforce:Contact:" + who)
    )


def _not_deleted(df: pl.DataFrame) -> pl.Expr:
    return ~parse_bool_expr(_raw_col(df, "IsDeleted")).fill_null(False)


def _salesforce_tasks_events(raw: Mapping[str, pl.DataFrame]) -> list[pl.DataFrame]:
    out: list[pl.DataFrame] = []
    tasks = _frame(raw, "salesforce:Task")
    if tasks is not None:
        subtype = _raw_col(tasks, "TaskSubtype").str.to_lowercase()
        out.append(
            tasks.filter(_not_deleted(tasks))
            .select(
                ("salesforce:Task:" + _raw_col(tasks, "Id")).alias("activity_id"),
                _who_record_id(_raw_col(tasks, "WhoId")).alias("record_id"),
                pl.lit(SALESFORCE).alias("source_system"),
                pl.when(subtype == "email")
                .then(pl.lit("sales_email"))
                .when(subtype == "call")
                .then(pl.lit("sales_call"))
                .alias("activity_type"),
                parse_timestamp_expr(_raw_col(tasks, "CreatedDate")).alias("occurred_at"),
                clean_text_expr(_raw_col(tasks, "Subject")).alias("detail"),
            )
            .pipe(_activity_frame)
        )
    events = _frame(raw, "salesforce:Event")
    if events is not None:
        out.append(
            events.filter(_not_deleted(events))
            .select(
                ("salesforce:Event:" + _raw_col(events, "Id")).alias("activity_id"),
                _who_record_id(_raw_col(events, "WhoId")).alias("record_id"),
                pl.lit(SALESFORCE).alias("source_system"),
                pl.lit("meeting").alias("activity_type"),
                pl.coalesce(
                    parse_timestamp_expr(_raw_col(events, "StartDateTime")),
                    parse_timestamp_expr(_raw_col(events, "ActivityDateTime")),
                    parse_timestamp_expr(_raw_col(events, "ActivityDate")),
                ).alias("occurred_at"),
                clean_text_expr(_raw_col(events, "Subject")).alias("detail"),
            )
            .pipe(_activity_frame)
        )
    return out


def _campaign_activity_type(campaign_type: pl.Expr, status: pl.Expr) -> pl.Expr:
    """(Campaign.Type, CampaignMember.Status) -> activity type; null = not engagement (Sent...)."""
    t = campaign_type.str.to_lowercase().str.strip_chars()
    s = status.str.to_lowercase().str.strip_chars()
    is_event = t.is_in(["seminar / conference", "trade show", "conference", "seminar", "event"])
    is_content = t.is_in(["other", "content", "content syndication"]) | t.is_null()
    return (
        pl.when(s == "sent")
        .then(None)
        .when((t == "webinar") & (s == "attended"))
        .then(pl.lit("webinar_attendance"))
        .when((t == "webinar") & s.is_in(["registered", "responded"]))
        .then(pl.lit("webinar_registration"))
        .when(is_event & s.is_in(["responded", "attended", "scanned"]))
        .then(pl.lit("trade_show_scan"))
        .when((t == "email") & (s == "opened"))
        .then(pl.lit("email_open"))
        .when((t == "email") & (s == "clicked"))
        .then(pl.lit("email_click"))
        .when(is_content & s.is_in(["responded", "downloaded"]))
        .then(pl.lit("content_download"))
    )


def _salesforce_campaigns(raw: Mapping[str, pl.DataFrame]) -> list[pl.DataFrame]:
    members = _frame(raw, "salesforce:CampaignMember")
    if members is None:
        return []
    campaigns = _frame(raw, "salesforce:Campaign")
    if campaigns is None:
        campaigns = pl.DataFrame(schema={"Id": pl.String, "Type": pl.String, "Name": pl.String})
    camp = campaigns.select(
        _raw_col(campaigns, "Id").alias("_campaign_id"),
        _raw_col(campaigns, "Type").alias("_type"),
        clean_text_expr(_raw_col(campaigns, "Name")).alias("_name"),
    ).unique("_campaign_id", keep="first")
    lead_id = _raw_col(members, "LeadId")
    contact_id = _raw_col(members, "ContactId")
    frame = (
        members.filter(_not_deleted(members))
        .select(
            ("salesforce:CampaignMember:" + _raw_col(members, "Id")).alias("activity_id"),
            pl.coalesce(
                pl.when(lead_id != "").then("salesforce:Lead:" + lead_id),
                pl.when(contact_id != "").then("salesforce:Contact:" + contact_id),
            ).alias("record_id"),
            _raw_col(members, "CampaignId").alias("_campaign_id"),
            _raw_col(members, "Status").alias("_status"),
            pl.coalesce(
                parse_timestamp_expr(_raw_col(members, "FirstRespondedDate")),
                parse_timestamp_expr(_raw_col(members, "CreatedDate")),
            ).alias("occurred_at"),
        )
        .join(camp, on="_campaign_id", how="left")
        .with_columns(
            _campaign_activity_type(pl.col("_type"), pl.col("_status")).alias("activity_type"),
            pl.col("_name").alias("detail"),
            pl.lit(SALESFORCE).alias("source_system"),
        )
    )
    return [_activity_frame(frame)]


# The order of the stored activity frame: by lead record, then time; the id breaks ties.
ACTIVITY_ORDER = ("record_id", "occurred_at", "activity_id")


def normalize_activities(
    raw: Mapping[str, pl.DataFrame], *, event_contacts: pl.Series | None = None
) -> pl.DataFrame:
    """Raw engagement frames -> ACTIVITY_SCHEMA, one row per activity per lead record.

    Rows without a lead record, a known activity type or a time are dropped: they cannot be
    attributed or decayed. Deleted Salesforce activities are ignored. `event_contacts` are the
    HubSpot contacts with page-view events, when `raw` holds only some of the events.
    """
    parts = [
        *_hubspot_engagements(raw),
        *_hubspot_contact_activities(raw, event_contacts),
        *_hubspot_web_events(raw),
        *_salesforce_tasks_events(raw),
        *_salesforce_campaigns(raw),
    ]
    if not parts:
        return empty_frame(ACTIVITY_SCHEMA)
    valid = pl.concat(parts, how="vertical").filter(
        pl.col("record_id").is_not_null()
        & pl.col("activity_type").is_not_null()
        & pl.col("occurred_at").is_not_null()
        & pl.col("activity_id").is_not_null()
    )
    # A mask rather than `unique(maintain_order=True)`: the same rows at a quarter of the memory
    # (628,000 page views: 89 MiB against 396 MiB as one lazy query, 126 MiB eager).
    return valid.filter(pl.col("activity_id").is_first_distinct()).sort(*ACTIVITY_ORDER)


def combine_activities(parts: Sequence[pl.DataFrame]) -> pl.DataFrame:
    """Activity frames of disjoint records (from `normalize_activities`) as one, in
    ACTIVITY_ORDER. Their activity ids never collide: each starts with its object's name."""
    if not parts:
        return empty_frame(ACTIVITY_SCHEMA)
    return pl.concat(parts).sort(*ACTIVITY_ORDER)


def activity_origin_expr() -> pl.Expr:
    """The CRM record ("system:object:id") an activity row was made from, read off its id."""
    return pl.col("activity_id").str.extract(r"^([^:]+:[^:]+:[^:]+)", 1)


def update_activities(
    previous: pl.DataFrame,
    raw: Mapping[str, pl.DataFrame],
    origins: pl.Series,
    event_contacts: pl.Series,
) -> pl.DataFrame:
    """`previous` activities with every row made from `origins` (the "system:object:id" of the
    records in `raw`, which hold those records and nothing else) made again from `raw`."""
    fresh = normalize_activities(raw, event_contacts=event_contacts)
    kept = previous.filter(~activity_origin_expr().is_in(origins.implode()))
    return combine_activities([kept, fresh])


# --------------------------------------------------------------------------------------------
# Outcomes
# --------------------------------------------------------------------------------------------


def normalize_outcomes(raw: Mapping[str, pl.DataFrame]) -> pl.DataFrame:
    """Opportunities attached to lead records -> OUTCOME_SCHEMA.

    An opportunity reaches a Contact through OpportunityContactRole (and Opportunity.ContactId
    where the org fills it) and a Lead through the Lead's ConvertedOpportunityId. Deleted
    opportunities and roles are ignored.
    """
    opps = _frame(raw, "salesforce:Opportunity")
    if opps is None:
        return empty_frame(OUTCOME_SCHEMA)
    stage = clean_text_expr(_raw_col(opps, "StageName"))
    stage_lc = stage.str.to_lowercase()
    opp = opps.filter(_not_deleted(opps)).select(
        _raw_col(opps, "Id").alias("opportunity_id"),
        stage.alias("stage_name"),
        # Stage names are the fallback when an export lacks the flags.
        pl.coalesce(parse_bool_expr(_raw_col(opps, "IsClosed")), stage_lc.str.starts_with("closed"))
        .fill_null(False)
        .alias("is_closed"),
        pl.coalesce(parse_bool_expr(_raw_col(opps, "IsWon")), stage_lc == "closed won")
        .fill_null(False)
        .alias("is_won"),
        _raw_col(opps, "Amount")
        .str.replace_all(",", "")
        .cast(pl.Float64, strict=False)
        .alias("amount"),
        parse_date_expr(_raw_col(opps, "CloseDate")).alias("close_date"),
        _raw_col(opps, "ContactId").alias("_contact_id"),
    )
    links: list[pl.DataFrame] = [
        opp.filter(pl.col("_contact_id").is_not_null() & (pl.col("_contact_id") != "")).select(
            ("salesforce:Contact:" + pl.col("_contact_id")).alias("record_id"), "opportunity_id"
        )
    ]
    roles = _frame(raw, "salesforce:OpportunityContactRole")
    if roles is not None:
        links.append(
            roles.filter(_not_deleted(roles)).select(
                ("salesforce:Contact:" + _raw_col(roles, "ContactId")).alias("record_id"),
                _raw_col(roles, "OpportunityId").alias("opportunity_id"),
            )
        )
    leads = _frame(raw, "salesforce:Lead")
    if leads is not None:
        links.append(
            leads.select(
                ("salesforce:Lead:" + _raw_col(leads, "Id")).alias("record_id"),
                _raw_col(leads, "ConvertedOpportunityId").alias("opportunity_id"),
            )
        )
    link = (
        pl.concat(links, how="vertical")
        .filter(pl.col("record_id").is_not_null() & pl.col("opportunity_id").is_not_null())
        .filter(pl.col("opportunity_id") != "")
        .unique(maintain_order=True)
    )
    out = link.join(opp.drop("_contact_id"), on="opportunity_id", how="inner")
    return out.select(pl.col(c).cast(t) for c, t in OUTCOME_SCHEMA.items()).sort(
        "record_id", "opportunity_id"
    )
