"""Normalisation: field normalisers, canonical leads, activities and outcomes."""

from collections.abc import Sequence
from datetime import UTC, date, datetime

import polars as pl
import pytest

from orchestration.funnel import normalize
from orchestration.funnel.model import ACTIVITY_SCHEMA, ACTIVITY_TYPES, CANONICAL_LEAD_SCHEMA
from orchestration.funnel.normalize import (
    DEFAULT_LEAD_MAPPINGS,
    OUTCOME_SCHEMA,
    classify_form_expr,
    clean_person_name_expr,
    combine_activities,
    company_domain_expr,
    company_key_expr,
    country_code_expr,
    email_is_free_expr,
    email_is_role_expr,
    kana_reading_expr,
    name_key_expr,
    name_reading_expr,
    normalize_activities,
    normalize_email_expr,
    normalize_leads,
    normalize_outcomes,
    parse_int_expr,
    parse_phones,
    phone_e164,
    phone_rank_expr,
    website_domain_expr,
)


def _apply(expr: pl.Expr, values: Sequence[object]) -> list[object]:
    return pl.DataFrame({"v": list(values)}, schema={"v": pl.String}).select(expr)["v"].to_list()


def _frame(rows: list[dict[str, object]]) -> pl.DataFrame:
    """A raw source frame: every column a nullable String, as the extractors deliver it."""
    columns = sorted({k for r in rows for k in r})
    return pl.DataFrame(
        {c: [r.get(c) for r in rows] for c in columns}, schema=dict.fromkeys(columns, pl.String)
    )


def _engagements(rows: list[dict[str, object]]) -> pl.DataFrame:
    """A raw HubSpot engagement frame with its `contact_ids` association list."""
    columns = sorted({k for r in rows for k in r} - {"contact_ids"})
    schema: dict[str, pl.DataType] = {c: pl.String() for c in columns}
    schema["contact_ids"] = pl.List(pl.String())
    data = {c: [r.get(c) for r in rows] for c in columns}
    data["contact_ids"] = [r.get("contact_ids") for r in rows]
    return pl.DataFrame(data, schema=schema)


def _ts(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# ------------------------------------------------------------------------------- field normalisers


def test_email_nfkc_trim_lower_and_plus_tag() -> None:
    assert _apply(normalize_email_expr("v"), ["ＴＡＲＯ＋news@Example.CO.JP "]) == [
        "taro@example.co.jp"
    ]


def test_email_gmail_dots_folded_only_for_gmail() -> None:
    got = _apply(
        normalize_email_expr("v"),
        ["Taro.Yamada+x@gmail.com", "t.a.r.o@googlemail.com", "taro.yamada@example.co.jp"],
    )
    assert got == ["taroyamada@gmail.com", "taro@gmail.com", "taro.yamada@example.co.jp"]


def test_email_junk_is_null() -> None:
    assert _apply(normalize_email_expr("v"), ["n/a", "", "  ", None, "a@b"]) == [None] * 5


def test_email_normalisation_is_idempotent() -> None:
    once = _apply(normalize_email_expr("v"), ["Ｈａｎａ.Ko+tag@GMAIL.com"])
    assert _apply(normalize_email_expr("v"), once) == once


def test_role_mailboxes() -> None:
    emails = ["info@acme.co.jp", "toiawase@acme.co.jp", "sales-jp@acme.com", "taro@acme.co.jp"]
    assert _apply(email_is_role_expr("v"), emails) == [True, True, True, False]
    assert _apply(email_is_role_expr("v"), ["information.taro@acme.com"]) == [False]


def test_free_mail_domains() -> None:
    emails = ["a@gmail.com", "a@yahoo.co.jp", "a@docomo.ne.jp", "a@i.softbank.jp", "a@acme.co.jp"]
    assert _apply(email_is_free_expr("v"), [*emails, None]) == [True, True, True, True, False, None]


def test_name_key_order_free_honorific_free_itaiji_folded() -> None:
    df = pl.DataFrame(
        {
            "first": ["太郎", "山田", "髙橋", "高橋", "Mr. John", "山田　太郎 様", "齋藤", "渡邊"],
            "last": ["山田", "太郎", "一郎 様", "一郎", "SMITH", None, "花子", "健"],
        }
    )
    keys = df.select(name_key_expr("first", "last"))["first"].to_list()
    assert keys[0] == keys[1] == keys[5]
    assert keys[2] == keys[3]
    assert keys[4] == "john smith"
    assert "斎藤" in keys[6] and "渡辺" in keys[7]


def test_name_key_distinguishes_different_people() -> None:
    df = pl.DataFrame({"first": ["太郎", "次郎"], "last": ["山田", "山田"]})
    keys = df.select(name_key_expr("first", "last"))["first"].to_list()
    assert keys[0] != keys[1]


def test_company_key_japanese_designators() -> None:
    names = [
        "株式会社日立製作所",
        "(株)日立製作所",
        "㈱日立製作所",
        "日立製作所 株式会社",
        "（株）日立製作所",
    ]
    assert set(_apply(company_key_expr("v"), names)) == {"日立製作所"}


def test_company_key_english_designators() -> None:
    names = [
        "Toyota Motor Co., Ltd.",
        "TOYOTA MOTOR CORPORATION",
        "Toyota Motor Co.,Ltd.",
        "Toyota Motor K.K.",
    ]
    assert set(_apply(company_key_expr("v"), names)) == {"toyotamotor"}


def test_company_key_keeps_distinguishing_words() -> None:
    keys = _apply(
        company_key_expr("v"),
        [
            "ソフトバンク株式会社",
            "ｿﾌﾄﾊﾞﾝｸ株式会社",
            "ソフトバンクグループ株式会社",
            "SAP Japan",
            "SAP SE",
        ],
    )
    assert keys[0] == keys[1] == "ソフトバンク"
    assert keys[2] == "ソフトバンクグループ"
    assert keys[3] != keys[4]


def test_company_key_kana_dash_and_itaiji() -> None:
    keys = _apply(
        company_key_expr("v"), ["エヌ・ティ・ティ・デ―タ", "エヌティティデータ", "髙島屋", "高島屋"]
    )
    assert keys[0] == keys[1]
    assert keys[2] == keys[3]


def test_phone_e164() -> None:
    values = pl.Series(["03-1234-5678", "０９０－１２３４－５６７８", "(415) 555-0100", "12", None])
    regions = pl.Series(["JP", "JP", "US", "JP", "JP"])
    assert phone_e164(values, regions).to_list() == [
        "+81312345678",
        "+819012345678",
        "+14155550100",
        None,
        None,
    ]


def test_phone_e164_repeats_and_international_prefix() -> None:
    values = pl.Series(["03-1234-5678", "+81 3 1234 5678", "03-1234-5678"])
    regions = pl.Series(["JP", "US", "JP"])
    assert phone_e164(values, regions).to_list() == ["+81312345678"] * 3


def test_country_codes() -> None:
    got = _apply(
        country_code_expr("v"),
        ["Japan", "日本", "JP", "jp", "United States", "USA", "US", "Narnia"],
    )
    assert got == ["JP", "JP", "JP", "JP", "US", "US", "US", None]


def test_employee_count_ranges() -> None:
    got = _apply(parse_int_expr("v"), ["100-500", "1000+", "120", "120.0", "1,200", "", None])
    assert got == [100, 1000, 120, 120, 1200, None, None]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Demo request", "demo_request"),
        ("デモ依頼", "demo_request"),
        ("Quote request", "quote_request"),
        ("見積依頼", "quote_request"),
        ("Contact us", "contact_request"),
        ("お問い合わせ", "contact_request"),
        ("Webinar registration", "webinar_registration"),
        ("ウェビナー申込", "webinar_registration"),
        ("Whitepaper download", "content_download"),
        ("Case study download", "content_download"),
        ("資料ダウンロード", "content_download"),
        ("事例ダウンロード", "content_download"),
        ("Newsletter signup", "newsletter_signup"),
        ("メルマガ登録", "newsletter_signup"),
        ("Trial signup", "form_submission"),
    ],
)
def test_form_classification(name: str, expected: str) -> None:
    assert _apply(classify_form_expr("v"), [name]) == [expected]


# ---------------------------------------------------------- issue 5: gaps in the field normalisers


def test_email_full_width_address() -> None:
    assert _apply(normalize_email_expr("v"), ["ｔａｒｏ＠ｅｘａｍｐｌｅ．ｊｐ"]) == [
        "taro@example.jp"
    ]


def test_email_plus_tag_stripped_but_dots_kept_outside_gmail() -> None:
    got = _apply(
        normalize_email_expr("v"),
        ["Taro.Yamada+crm@Yahoo.co.jp", "taro.yamada+a+b@example.co.jp", "t.yamada+x@gmail.com"],
    )
    assert got == ["taro.yamada@yahoo.co.jp", "taro.yamada@example.co.jp", "tyamada@gmail.com"]


@pytest.mark.parametrize(
    "local",
    ["info", "sales", "support", "toiawase", "otoiawase", "soumu", "eigyo", "info-jp", "sales2"],
)
def test_role_local_parts(local: str) -> None:
    assert _apply(email_is_role_expr("v"), [f"{local}@acme.co.jp"]) == [True]


def test_person_local_parts_are_not_role() -> None:
    emails = ["taro.yamada@acme.co.jp", "infotaro@acme.co.jp", "s.sales@acme.com"]
    assert _apply(email_is_role_expr("v"), emails) == [False, False, False]


@pytest.mark.parametrize(
    "domain",
    [
        "docomo.ne.jp",
        "ezweb.ne.jp",
        "au.com",
        "i.softbank.jp",
        "softbank.ne.jp",
        "ymobile.ne.jp",
        "t.vodafone.ne.jp",  # legacy carrier addresses live on sub-domains
        "abc.ocn.ne.jp",  # ISP regional servers
        "icloud.com",
        "outlook.jp",
        "yahoo.co.jp",
    ],
)
def test_free_mail_includes_japanese_carriers_and_isps(domain: str) -> None:
    assert _apply(email_is_free_expr("v"), [f"taro@{domain}"]) == [True]


def test_company_domains_are_not_free_mail() -> None:
    emails = ["a@acme.co.jp", "a@nttdocomo.co.jp", "a@mydocomo.ne.jp", "a@softbank.jp"]
    assert _apply(email_is_free_expr("v"), emails) == [False] * 4


def test_honorifics_removed_from_name_parts() -> None:
    got = _apply(
        clean_person_name_expr("v"),
        [
            "太郎 様",
            "山田様",
            "山田殿",
            "花子さん",
            "山田氏",
            "佐藤先生",
            "Mr. John",
            "Ms.Jane",
            "Dr John",
            "Mrs. Smith",
            "Yamada-san",
            "Drew",
            "Mrinal",
            "Misaki",
        ],
    )
    assert got == [
        "太郎",
        "山田",
        "山田",
        "花子",
        "山田",
        "佐藤",
        "John",
        "Jane",
        "John",
        "Smith",
        "Yamada",
        "Drew",
        "Mrinal",
        "Misaki",
    ]


def test_name_key_order_free_across_fields_and_one_field() -> None:
    df = pl.DataFrame(
        {
            "first": ["太郎", "山田", "山田 太郎", "太郎 山田", "山田　太郎 様", None, "Mr.John"],
            "last": ["山田", "太郎", None, None, None, "山田 太郎 様", "Smith"],
        }
    )
    keys = df.select(name_key_expr("first", "last"))["first"].to_list()
    assert len(set(keys[:6])) == 1
    assert keys[6] == "john smith"


@pytest.mark.parametrize(
    ("variant", "common"), [("髙橋", "高橋"), ("渡邊", "渡辺"), ("齋藤", "斎藤")]
)
def test_name_key_itaiji_folded(variant: str, common: str) -> None:
    df = pl.DataFrame({"first": ["健", "健"], "last": [variant, common]})
    keys = df.select(name_key_expr("first", "last"))["first"].to_list()
    assert keys[0] == keys[1]
    assert common in keys[0]


def test_company_key_designators_before_or_after() -> None:
    groups = [
        ["株式会社日立製作所", "（株）日立製作所", "㈱日立製作所", "日立製作所 株式会社"],
        ["Toyota Motor Co., Ltd.", "TOYOTA MOTOR CORPORATION"],
        ["Acme GmbH", "Acme", "Acme, Inc.", "ACME Ltd."],
        ["K.K. Foo", "Foo K.K.", "Foo Kabushiki Kaisha", "Kabushiki Kaisha Foo", "Foo KK"],
        ["カ)ヤマダショウテン", "ｶ)ﾔﾏﾀﾞｼｮｳﾃﾝ", "ﾔﾏﾀﾞｼｮｳﾃﾝ(ｶ"],
        ["有限会社 山田商店", "山田商店(有)", "㈲山田商店"],
    ]
    for names in groups:
        assert len(set(_apply(company_key_expr("v"), names))) == 1, names


def test_company_key_keeps_group_holdings_japan_and_name_abbreviations() -> None:
    keys = _apply(
        company_key_expr("v"),
        [
            "ソフトバンク株式会社",
            "ソフトバンクグループ株式会社",
            "Acme",
            "Acme Holdings, Inc.",
            "Acme Group",
            "SAP Japan",
            "SAP SE",
            "KK Wind Solutions",  # "KK" without dots is part of the name, not a designator
            "GK Software SE",
        ],
    )
    assert keys[0] == "ソフトバンク" and keys[1] == "ソフトバンクグループ"
    assert len({keys[2], keys[3], keys[4]}) == 3
    assert (keys[5], keys[6]) == ("sapjapan", "sap")
    assert (keys[7], keys[8]) == ("kkwindsolutions", "gksoftware")


def test_kana_reading_width_script_spaces_honorifics() -> None:
    got = _apply(
        kana_reading_expr("v"),
        ["ヤマダ", "やまだ", "ﾔﾏﾀﾞ", "ヤマダ　様", "サトー", "ヤマ ダ", "ヴァン", "", None],
    )
    assert got == ["やまだ", "やまだ", "やまだ", "やまだ", "さとー", "やまだ", "ゔぁん", None, None]


def test_name_reading_is_order_free() -> None:
    df = pl.DataFrame(
        {
            "first": ["タロウ", "やまだ", "ﾀﾛｳ", None, None, "タロウ"],
            "last": ["ヤマダ", "たろう", "ﾔﾏﾀﾞ", "ヤマダ", None, None],
        }
    )
    keys = df.select(name_reading_expr("first", "last"))["first"].to_list()
    assert keys[:3] == ["たろう やまだ"] * 3
    assert keys[3:] == ["やまだ", None, "たろう"]


def test_website_host() -> None:
    got = _apply(
        website_domain_expr("v"),
        [
            "https://www.Acme.co.jp/ja/",
            "acme.co.jp",
            "http://acme.com:8080/x?y=1",
            "www2.foo.jp",
            "ｗｗｗ．ａｃｍｅ．ｊｐ",
            "n/a",
            "",
            None,
        ],
    )
    assert got == ["acme.co.jp", "acme.co.jp", "acme.com", "foo.jp", "acme.jp", None, None, None]


def test_company_domain_from_email_then_website_never_free_mail() -> None:
    df = pl.DataFrame(
        {
            "email": ["a@acme.jp", "info@acme.jp", "a@gmail.com", "a@gmail.com", None, "a@x.jp"],
            "site": [None, None, "https://www.beta.jp/", "gmail.com", "beta.jp", "beta.jp"],
        }
    )
    got = df.select(company_domain_expr("email", "site").alias("d"))["d"].to_list()
    assert got == ["acme.jp", "acme.jp", "beta.jp", None, "beta.jp", "x.jp"]


def test_parse_phones_e164_and_type() -> None:
    values = pl.Series(
        [
            "03-1234-5678",
            "０９０－１２３４－５６７８",
            "0120-123-456",
            "0570-064-123",  # navi-dial
            "050-1234-5678",
            "(415) 555-0100",  # the US does not tell mobile from fixed
            "12",
            None,
            "03-1234-5678",
        ]
    )
    regions = pl.Series(["JP"] * 5 + ["US", "JP", "JP", "JP"])
    out = parse_phones(values, regions)
    assert out.columns == ["phone", "phone_type"]
    assert out.rows() == [
        ("+81312345678", "fixed"),
        ("+819012345678", "mobile"),
        ("+81120123456", "toll_free"),
        ("+81570064123", "shared_cost"),
        ("+815012345678", "voip"),
        ("+14155550100", "fixed"),
        (None, None),
        (None, None),
        ("+81312345678", "fixed"),
    ]
    ranks = _apply(
        phone_rank_expr("v"), ["mobile", "fixed", "voip", None, "toll_free", "shared_cost"]
    )
    assert ranks == [0, 1, 1, 1, 2, 2]


# ------------------------------------------------------------------------------------------ leads


def _raw_leads() -> dict[str, pl.DataFrame]:
    return {
        "hubspot:contacts": _frame(
            [
                {
                    "id": "1001",
                    "email": "Taro.Yamada@Example.co.jp",
                    "hs_additional_emails": "taro@gmail.com;TARO.YAMADA@example.co.jp",
                    "firstname": "太郎",
                    "lastname": "山田 様",
                    "company": "㈱エグザンプル",
                    "numemployees": "100-500",
                    "country": "日本",
                    "mobilephone": "０９０－１２３４－５６７８",
                    "hs_email_optout": "true",
                    "hs_email_bounce": "0",
                    "lifecyclestage": "lead",
                    "createdate": "2024-09-11T13:27:39.356Z",
                    "lastmodifieddate": "2024-10-01T00:00:00Z",
                    "salesforceleadid": "00Q000000000001AAA",
                    "salesforcecontactid": "003000000000001AAA",
                    "hs_merged_object_ids": "998;999",
                },
                {
                    "id": "1002",
                    "email": "info@acme.com",
                    "firstname": "John",
                    "lastname": "Smith",
                    "phone": "(415) 555-0100",
                    "numemployees": "1000+",
                    "country": "United States",
                    "hs_language": "en",
                    "hs_email_bounce": "2",
                },
            ]
        ),
        "salesforce:Lead": _frame(
            [
                {
                    "Id": "00Q000000000001AAA",
                    "Email": "taro.yamada@example.co.jp",
                    "FirstName": "太郎",
                    "LastName": "山田",
                    "Company": "株式会社エグザンプル",
                    "NumberOfEmployees": "120.0",
                    "Phone": "03-1234-5678",
                    "Status": "Qualified",
                    "IsConverted": "true",
                    "ConvertedContactId": "003000000000001AAA",
                    "EmailBouncedReason": "550 mailbox unavailable",
                    "DoNotCall": "false",
                    "CreatedDate": "2024-01-01T00:00:00.000+0000",
                    "SystemModstamp": "2024-02-01T00:00:00.000+0000",
                    "IsDeleted": "false",
                },
                {
                    "Id": "00Q000000000002AAA",
                    "Email": "taro.yamada@example.co.jp",
                    "LastName": "山田",
                    "MasterRecordId": "00Q000000000001AAA",
                    "IsDeleted": "true",
                },
            ]
        ),
        "salesforce:Contact": _frame(
            [
                {
                    "Id": "003000000000001AAA",
                    "Email": "taro.yamada@example.co.jp",
                    "FirstName": "Taro",
                    "LastName": "Yamada",
                    "AccountId": "001000000000001AAA",
                    "OwnerId": "005000000000001AAA",
                    "HasOptedOutOfEmail": "false",
                    "DoNotCall": "true",
                }
            ]
        ),
        "salesforce:Account": _frame(
            [
                {
                    "Id": "001000000000001AAA",
                    "Name": "Example K.K.",
                    "Industry": "Software",
                    "NumberOfEmployees": "300",
                    "BillingCountry": "Japan",
                }
            ]
        ),
    }


def _by_id(df: pl.DataFrame) -> dict[str, dict[str, object]]:
    return {r["record_id"]: r for r in df.iter_rows(named=True)}


def test_normalize_leads_exact_schema() -> None:
    leads = normalize_leads(_raw_leads(), DEFAULT_LEAD_MAPPINGS)
    assert leads.schema == pl.Schema(CANONICAL_LEAD_SCHEMA)
    assert sorted(leads["record_id"].to_list()) == [
        "hubspot:contacts:1001",
        "hubspot:contacts:1002",
        "salesforce:Contact:003000000000001AAA",
        "salesforce:Lead:00Q000000000001AAA",
        "salesforce:Lead:00Q000000000002AAA",
    ]


def test_normalize_leads_hard_links() -> None:
    rows = _by_id(normalize_leads(_raw_leads(), DEFAULT_LEAD_MAPPINGS))
    assert rows["hubspot:contacts:1001"]["linked_record_ids"] == [
        "salesforce:Lead:00Q000000000001AAA",
        "salesforce:Contact:003000000000001AAA",
        "hubspot:contacts:998",
        "hubspot:contacts:999",
    ]
    assert rows["salesforce:Lead:00Q000000000001AAA"]["linked_record_ids"] == [
        "salesforce:Contact:003000000000001AAA"
    ]
    assert rows["salesforce:Lead:00Q000000000002AAA"]["linked_record_ids"] == [
        "salesforce:Lead:00Q000000000001AAA"
    ]
    assert rows["hubspot:contacts:1002"]["linked_record_ids"] == []


def test_normalize_leads_hubspot_fields() -> None:
    taro = _by_id(normalize_leads(_raw_leads(), DEFAULT_LEAD_MAPPINGS))["hubspot:contacts:1001"]
    assert taro["source_system"] == "hubspot"
    assert taro["source_object"] == "contacts"
    assert taro["source_id"] == "1001"
    assert taro["email"] == "taro.yamada@example.co.jp"
    assert taro["email_raw"] == "Taro.Yamada@Example.co.jp"
    assert taro["secondary_emails"] == ["taro@gmail.com"]  # the primary is not repeated
    assert taro["email_domain"] == "example.co.jp"
    assert taro["email_is_role"] is False and taro["email_is_free"] is False
    assert (taro["first_name"], taro["last_name"]) == ("太郎", "山田")
    assert taro["company"] == "(株)エグザンプル"
    assert taro["company_key"] == "エグザンプル"
    assert taro["phone"] == "+819012345678"  # mobilephone fallback
    assert taro["employee_count"] == 100
    assert taro["country"] == "JP" and taro["locale"] == "ja"
    assert taro["opted_out"] is True and taro["bounced"] is False
    assert taro["hs_lifecyclestage"] == "lead"
    assert taro["created_at"] == _ts("2024-09-11T13:27:39.356")
    assert taro["updated_at"] == _ts("2024-10-01T00:00:00")
    assert taro["is_deleted"] is False


def test_normalize_leads_booleans_locale_and_numbers() -> None:
    rows = _by_id(normalize_leads(_raw_leads(), DEFAULT_LEAD_MAPPINGS))
    john = rows["hubspot:contacts:1002"]
    assert john["bounced"] is True  # hs_email_bounce count > 0
    assert john["email_is_role"] is True
    assert john["employee_count"] == 1000 and john["country"] == "US" and john["locale"] == "en"
    assert john["phone"] == "+14155550100"
    lead = rows["salesforce:Lead:00Q000000000001AAA"]
    assert lead["bounced"] is True  # a non-empty bounce reason
    assert lead["sf_is_converted"] is True and lead["sf_status"] == "Qualified"
    assert lead["employee_count"] == 120
    assert lead["locale"] == "ja"  # Japanese script in the name, no country
    assert lead["phone"] == "+81312345678"
    assert lead["created_at"] == _ts("2024-01-01T00:00:00")
    assert rows["salesforce:Lead:00Q000000000002AAA"]["is_deleted"] is True


def test_normalize_leads_contact_takes_account_fields() -> None:
    contact = _by_id(normalize_leads(_raw_leads(), DEFAULT_LEAD_MAPPINGS))[
        "salesforce:Contact:003000000000001AAA"
    ]
    assert contact["company"] == "Example K.K."
    assert contact["company_key"] == "example"
    assert contact["industry"] == "Software"
    assert contact["employee_count"] == 300
    assert contact["country"] == "JP"
    assert contact["do_not_contact"] is True and contact["opted_out"] is False
    assert contact["owner_id"] == "005000000000001AAA"


def test_normalize_leads_tolerates_missing_and_empty_sources() -> None:
    raw = {
        "hubspot:contacts": _frame([{"id": "7"}]),
        "salesforce:Lead": pl.DataFrame(schema={"Id": pl.String}),
    }
    leads = normalize_leads(raw, DEFAULT_LEAD_MAPPINGS)
    assert leads.schema == pl.Schema(CANONICAL_LEAD_SCHEMA)
    assert leads["record_id"].to_list() == ["hubspot:contacts:7"]
    assert leads["locale"].to_list() == ["en"]
    empty = normalize_leads({}, DEFAULT_LEAD_MAPPINGS)
    assert empty.height == 0 and empty.schema == pl.Schema(CANONICAL_LEAD_SCHEMA)


def _raw_issue5() -> dict[str, pl.DataFrame]:
    """Kana readings, mobile vs fixed vs company lines, and company domains."""
    return {
        "hubspot:contacts": _frame(
            [
                {
                    "id": "1",
                    "email": "taro@gmail.com",
                    "firstname": "太郎",
                    "lastname": "髙橋 様",
                    "firstname_kana": "ﾀﾛｳ",
                    "lastname_kana": "タカハシ",
                    "phone": "03-1234-5678",
                    "mobilephone": "090-1111-2222",
                    "country": "Japan",
                },
                {
                    "id": "2",
                    "email": "info@acme.co.jp",
                    "firstname": "山田",  # family name typed into the first-name field
                    "lastname": "花子",
                    "phone": "0570-064-123",
                    "country": "JP",
                },
                {
                    "id": "3",
                    "email": "john@acme.com",
                    "firstname": "John",
                    "lastname": "Smith",
                    "phone": "(415) 555-0100",
                    "mobilephone": "(415) 555-0199",
                    "country": "US",
                },
            ]
        ),
        "salesforce:Lead": _frame(
            [
                {
                    "Id": "00Q1",
                    "Email": "hanako@yamada.co.jp",
                    "FirstName": "花子",
                    "LastName": "山田",
                    "FirstNameKana__c": "はなこ",
                    "Phone": "0120-123-456",
                    "MobilePhone": "03-9999-0000",
                    "Country": "JP",
                }
            ]
        ),
        "salesforce:Contact": _frame(
            [
                {
                    "Id": "0031",
                    "Email": "ichiro@docomo.ne.jp",
                    "FirstName": "一郎",
                    "LastName": "鈴木",
                    "LastNameKana__c": "スズキ",
                    "FirstNameKana__c": "イチロウ",
                    "Phone": "0120-000-111",
                    "AccountId": "0011",
                },
                {
                    "Id": "0032",
                    "Email": "jiro@beta.co.jp",
                    "LastName": "佐藤",
                    "AccountId": "0011",
                },
                {"Id": "0033", "LastName": "田中", "AccountId": ""},
            ]
        ),
        "salesforce:Account": _frame(
            [
                {
                    "Id": "0011",
                    "Name": "株式会社ベータ",
                    "Website": "https://www.Beta.co.jp/ja/",
                    "BillingCountry": "Japan",
                }
            ]
        ),
    }


def test_normalize_leads_name_reading_and_keys() -> None:
    rows = _by_id(normalize_leads(_raw_issue5(), DEFAULT_LEAD_MAPPINGS))
    hs = rows["hubspot:contacts:1"]
    assert hs["name_reading"] == "たかはし たろう"
    assert (hs["given_key"], hs["family_key"]) == ("太郎", "高橋")  # honorific gone, itaiji folded
    swapped = rows["hubspot:contacts:2"]
    assert (swapped["given_key"], swapped["family_key"]) == ("山田", "花子")  # kept as typed
    assert swapped["name_key"] == rows["salesforce:Lead:00Q1"]["name_key"]
    assert swapped["name_reading"] is None
    assert rows["salesforce:Lead:00Q1"]["name_reading"] == "はなこ"  # only the given reading
    assert rows["salesforce:Contact:0031"]["name_reading"] == "いちろう すずき"
    assert rows["hubspot:contacts:3"]["given_key"] == "john"


def test_normalize_leads_phone_choice_and_type() -> None:
    rows = _by_id(normalize_leads(_raw_issue5(), DEFAULT_LEAD_MAPPINGS))

    def phone(record_id: str) -> tuple[object, object]:
        return rows[record_id]["phone"], rows[record_id]["phone_type"]

    assert phone("hubspot:contacts:1") == ("+819011112222", "mobile")  # mobile over fixed
    # a navi-dial switchboard is kept only because the record has nothing else
    assert phone("hubspot:contacts:2") == ("+81570064123", "shared_cost")
    # US numbers do not tell mobile from fixed: the mobile field names the person's own line
    assert phone("hubspot:contacts:3") == ("+14155550199", "fixed")
    # never the free dial when another number exists, even a fixed one in the mobile field
    assert phone("salesforce:Lead:00Q1") == ("+81399990000", "fixed")
    assert phone("salesforce:Contact:0031") == ("+81120000111", "toll_free")
    assert phone("salesforce:Contact:0032") == (None, None)


def test_normalize_leads_company_domain_and_account_id() -> None:
    rows = _by_id(normalize_leads(_raw_issue5(), DEFAULT_LEAD_MAPPINGS))
    assert rows["hubspot:contacts:1"]["company_domain"] is None  # free mail, no Account
    assert rows["hubspot:contacts:2"]["company_domain"] == "acme.co.jp"  # role still names it
    assert rows["salesforce:Lead:00Q1"]["company_domain"] == "yamada.co.jp"
    # carrier mail: the Account's website instead
    assert rows["salesforce:Contact:0031"]["company_domain"] == "beta.co.jp"
    assert rows["salesforce:Contact:0032"]["company_domain"] == "beta.co.jp"
    assert rows["salesforce:Contact:0033"]["company_domain"] is None
    assert rows["salesforce:Contact:0031"]["source_account_id"] == "0011"
    assert rows["salesforce:Contact:0033"]["source_account_id"] is None  # empty AccountId
    assert rows["salesforce:Lead:00Q1"]["source_account_id"] is None
    assert rows["hubspot:contacts:1"]["source_account_id"] is None


def test_normalize_leads_without_kana_or_mobile_fields() -> None:
    """An org or portal without the custom kana fields (nothing pulled) still normalises."""
    raw = {
        "salesforce:Contact": _frame(
            [
                {
                    "Id": "0039",
                    "Email": "a@acme.jp",
                    "LastName": "Lee",
                    "Phone": "03-1234-5678",
                    "MailingCountry": "Japan",
                }
            ]
        )
    }
    row = normalize_leads(raw, DEFAULT_LEAD_MAPPINGS).row(0, named=True)
    assert row["name_reading"] is None
    assert (row["phone"], row["phone_type"]) == ("+81312345678", "fixed")
    assert row["company_domain"] == "acme.jp"


# ------------------------------------------------------------------------------------- activities


def _raw_activities() -> dict[str, pl.DataFrame]:
    return {
        "hubspot:contacts": _frame(
            [
                {
                    "id": "1001",
                    "first_conversion_event_name": "お問い合わせ",
                    "first_conversion_date": "2024-09-01T00:00:00Z",
                    "recent_conversion_event_name": "資料ダウンロード",
                    "recent_conversion_date": "2024-09-05T00:00:00Z",
                    "hs_analytics_num_page_views": "12",
                    "hs_analytics_last_visit_timestamp": "2024-09-06T00:00:00Z",
                },
                {
                    "id": "1002",
                    "first_conversion_event_name": "Demo request",
                    "first_conversion_date": "2024-08-01T00:00:00Z",
                    "recent_conversion_event_name": "Demo request",
                    "recent_conversion_date": "2024-08-01T00:00:00Z",
                    "hs_analytics_num_page_views": "0",
                },
            ]
        ),
        "hubspot:emails": _engagements(
            [
                {
                    "id": "e1",
                    "hs_email_direction": "EMAIL",
                    "hs_email_subject": "Hello",
                    "hs_timestamp": "2024-09-02T00:00:00Z",
                    "contact_ids": ["1001", "1002"],
                },
                {
                    "id": "e2",
                    "hs_email_direction": "INCOMING_EMAIL",
                    "hs_timestamp": "2024-09-03T00:00:00Z",
                    "contact_ids": ["1001"],
                },
                {"id": "e3", "hs_timestamp": "2024-09-03T00:00:00Z", "contact_ids": []},
            ]
        ),
        "hubspot:calls": _engagements(
            [{"id": "c1", "hs_timestamp": "2024-09-04T00:00:00Z", "contact_ids": ["1001"]}]
        ),
        "hubspot:meetings": _engagements(
            [{"id": "m1", "hs_timestamp": "2024-09-04T00:00:00Z", "contact_ids": ["1002"]}]
        ),
        "hubspot:notes": _engagements(
            [{"id": "n1", "hs_timestamp": "2024-09-04T00:00:00Z", "contact_ids": ["1001"]}]
        ),
        "salesforce:Task": _frame(
            [
                {
                    "Id": "00T1",
                    "WhoId": "00Q000000000001AAA",
                    "TaskSubtype": "Email",
                    "Subject": "Follow up",
                    "CreatedDate": "2024-09-10T00:00:00.000+0000",
                },
                {
                    "Id": "00T2",
                    "WhoId": "003000000000001AAA",
                    "TaskSubtype": "Call",
                    "CreatedDate": "2024-09-11T00:00:00.000+0000",
                },
                {
                    "Id": "00T3",
                    "WhoId": "003000000000001AAA",
                    "TaskSubtype": "Task",
                    "CreatedDate": "2024-09-11T00:00:00.000+0000",
                },
                {
                    "Id": "00T4",
                    "WhoId": "001000000000001AAA",
                    "TaskSubtype": "Call",
                    "CreatedDate": "2024-09-11T00:00:00.000+0000",
                },
            ]
        ),
        "salesforce:Event": _frame(
            [
                {
                    "Id": "00U1",
                    "WhoId": "003000000000001AAA",
                    "StartDateTime": "2024-09-12T01:00:00.000+0000",
                    "Subject": "Demo",
                },
                {"Id": "00U2", "WhoId": "00Q000000000001AAA", "ActivityDateTime": "2024-09-13"},
            ]
        ),
        "salesforce:Campaign": _frame(
            [
                {"Id": "701W", "Type": "Webinar", "Name": "AI ウェビナー"},
                {"Id": "701T", "Type": "Trade Show", "Name": "Japan IT Week"},
                {"Id": "701S", "Type": "Seminar / Conference", "Name": "Seminar"},
                {"Id": "701E", "Type": "Email", "Name": "Newsletter Oct"},
                {"Id": "701O", "Type": "Other", "Name": "Whitepaper"},
            ]
        ),
        "salesforce:CampaignMember": _frame(
            [
                {
                    "Id": "00v1",
                    "CampaignId": "701W",
                    "LeadId": "00Q1",
                    "Status": "Attended",
                    "CreatedDate": "2024-06-01",
                },
                {
                    "Id": "00v2",
                    "CampaignId": "701W",
                    "LeadId": "00Q2",
                    "Status": "Registered",
                    "CreatedDate": "2024-06-01",
                },
                {
                    "Id": "00v3",
                    "CampaignId": "701T",
                    "ContactId": "0031",
                    "Status": "Scanned",
                    "CreatedDate": "2024-06-01",
                },
                {
                    "Id": "00v4",
                    "CampaignId": "701S",
                    "ContactId": "0032",
                    "Status": "Attended",
                    "CreatedDate": "2024-06-01",
                },
                {
                    "Id": "00v5",
                    "CampaignId": "701E",
                    "LeadId": "00Q3",
                    "Status": "Opened",
                    "CreatedDate": "2024-06-01",
                },
                {
                    "Id": "00v6",
                    "CampaignId": "701E",
                    "LeadId": "00Q4",
                    "Status": "Clicked",
                    "CreatedDate": "2024-06-01",
                },
                {
                    "Id": "00v7",
                    "CampaignId": "701E",
                    "LeadId": "00Q5",
                    "Status": "Sent",
                    "CreatedDate": "2024-06-01",
                },
                {
                    "Id": "00v8",
                    "CampaignId": "701O",
                    "LeadId": "00Q6",
                    "Status": "Downloaded",
                    "CreatedDate": "2024-06-01",
                },
                {
                    "Id": "00v9",
                    "CampaignId": "701W",
                    "LeadId": "00Q7",
                    "Status": "Sent",
                    "CreatedDate": "2024-06-01",
                },
            ]
        ),
    }


def _activity_types(df: pl.DataFrame) -> dict[str, str]:
    return dict(zip(df["activity_id"].to_list(), df["activity_type"].to_list(), strict=True))


def test_normalize_activities_schema_and_unique_ids() -> None:
    acts = normalize_activities(_raw_activities())
    assert acts.schema == pl.Schema(ACTIVITY_SCHEMA)
    assert acts["activity_id"].n_unique() == acts.height
    assert set(acts["activity_type"].to_list()) <= set(ACTIVITY_TYPES)
    assert acts["occurred_at"].null_count() == 0


def test_activities_made_object_by_object_equal_activities_made_at_once() -> None:
    # leads/normalized makes activity rows one object at a time (so it can let go of each
    # object's records before reading the next); the rows must be those of one call over all.
    view: dict[str, object] = {
        "id": "w1",
        "objectId": "1001",
        "eventType": "e_visited_page",
        "occurredAt": "2024-09-07T00:00:00Z",
        "hs_url": "https://www.example.com/pricing",
        "hs_title": "Pricing",
    }
    raw = {**_raw_activities(), "hubspot:web_events": _frame([view])}
    whole = normalize_activities(raw)
    parts = []
    for key, frame in raw.items():
        if key in ("hubspot:contacts", "salesforce:Campaign"):
            continue
        one = {key: frame}
        if key == "salesforce:CampaignMember":
            one["salesforce:Campaign"] = raw["salesforce:Campaign"]
        parts.append(normalize_activities(one))
    with_events = raw["hubspot:web_events"]["objectId"].unique()
    contacts = {"hubspot:contacts": raw["hubspot:contacts"]}
    parts.append(normalize_activities(contacts, event_contacts=with_events))

    assert combine_activities(parts).equals(whole)
    ids = set(whole["activity_id"].to_list())
    assert "hubspot:web_events:w1" in ids and "salesforce:CampaignMember:00v8" in " ".join(ids)
    # The contact has page-view events, so its page-view count row gives way to them.
    assert "hubspot:contacts:1001:page_views" not in ids
    assert combine_activities([]).schema == pl.Schema(ACTIVITY_SCHEMA)


def test_normalize_activities_hubspot() -> None:
    acts = normalize_activities(_raw_activities())
    hs = acts.filter(pl.col("source_system") == "hubspot")
    types = _activity_types(hs)
    assert types == {
        "hubspot:emails:e1:1001": "sales_email",
        "hubspot:emails:e1:1002": "sales_email",
        "hubspot:emails:e2:1001": "email_reply",
        "hubspot:calls:c1:1001": "sales_call",
        "hubspot:meetings:m1:1002": "meeting",
        "hubspot:contacts:1001:first_conversion": "contact_request",
        "hubspot:contacts:1001:recent_conversion": "content_download",
        "hubspot:contacts:1001:page_views": "page_view",
        "hubspot:contacts:1002:first_conversion": "demo_request",  # recent == first: once
    }
    rows = {r["activity_id"]: r for r in hs.iter_rows(named=True)}
    assert rows["hubspot:emails:e1:1002"]["record_id"] == "hubspot:contacts:1002"
    assert rows["hubspot:emails:e1:1002"]["occurred_at"] == _ts("2024-09-02T00:00:00")
    assert rows["hubspot:emails:e1:1002"]["detail"] == "Hello"
    views = rows["hubspot:contacts:1001:page_views"]
    assert views["detail"] == "12 page views"
    assert views["occurred_at"] == _ts("2024-09-06T00:00:00")


def test_normalize_activities_salesforce_tasks_and_events() -> None:
    acts = normalize_activities(_raw_activities())
    rows = {r["activity_id"]: r for r in acts.iter_rows(named=True)}
    assert rows["salesforce:Task:00T1"]["activity_type"] == "sales_email"
    assert rows["salesforce:Task:00T1"]["record_id"] == "salesforce:Lead:00Q000000000001AAA"
    assert rows["salesforce:Task:00T2"]["activity_type"] == "sales_call"
    assert rows["salesforce:Task:00T2"]["record_id"] == "salesforce:Contact:003000000000001AAA"
    assert "salesforce:Task:00T3" not in rows  # plain task: not engagement
    assert "salesforce:Task:00T4" not in rows  # WhoId is not a Lead or Contact
    assert rows["salesforce:Event:00U1"]["activity_type"] == "meeting"
    assert rows["salesforce:Event:00U1"]["occurred_at"] == _ts("2024-09-12T01:00:00")
    assert rows["salesforce:Event:00U2"]["occurred_at"] == _ts("2024-09-13T00:00:00")


def test_normalize_activities_campaign_members() -> None:
    acts = normalize_activities(_raw_activities())
    cm = acts.filter(pl.col("activity_id").str.starts_with("salesforce:CampaignMember:"))
    assert _activity_types(cm) == {
        "salesforce:CampaignMember:00v1": "webinar_attendance",
        "salesforce:CampaignMember:00v2": "webinar_registration",
        "salesforce:CampaignMember:00v3": "trade_show_scan",
        "salesforce:CampaignMember:00v4": "trade_show_scan",
        "salesforce:CampaignMember:00v5": "email_open",
        "salesforce:CampaignMember:00v6": "email_click",
        "salesforce:CampaignMember:00v8": "content_download",
    }
    rows = {r["activity_id"]: r for r in cm.iter_rows(named=True)}
    assert rows["salesforce:CampaignMember:00v1"]["record_id"] == "salesforce:Lead:00Q1"
    assert rows["salesforce:CampaignMember:00v3"]["record_id"] == "salesforce:Contact:0031"
    assert rows["salesforce:CampaignMember:00v1"]["detail"] == "AI ウェビナー"


def test_campaign_member_occurred_at_prefers_first_responded_date() -> None:
    raw = {
        "salesforce:Campaign": _frame([{"Id": "701W", "Type": "Webinar", "Name": "W"}]),
        "salesforce:CampaignMember": _frame(
            [
                {
                    "Id": "00v1",
                    "CampaignId": "701W",
                    "LeadId": "00Q1",
                    "Status": "Responded",
                    "FirstRespondedDate": "2024-05-02",
                    "CreatedDate": "2024-05-01T00:00:00.000+0000",
                },
                {
                    "Id": "00v2",
                    "CampaignId": "701W",
                    "LeadId": "00Q2",
                    "Status": "Registered",
                    "CreatedDate": "2024-05-01T00:00:00.000+0000",
                },
            ]
        ),
    }
    acts = normalize_activities(raw)
    assert acts["occurred_at"].to_list() == [_ts("2024-05-02T00:00:00"), _ts("2024-05-01T00:00:00")]


def test_normalize_activities_empty() -> None:
    acts = normalize_activities({})
    assert acts.height == 0 and acts.schema == pl.Schema(ACTIVITY_SCHEMA)


# --------------------------------------------------------------------------------------- outcomes


def test_normalize_outcomes_through_contact_roles_and_converted_leads() -> None:
    raw = {
        "salesforce:Opportunity": _frame(
            [
                {
                    "Id": "0061",
                    "StageName": "Closed Won",
                    "IsClosed": "true",
                    "IsWon": "true",
                    "Amount": "120.0",
                    "CloseDate": "2024-03-31",
                },
                {"Id": "0062", "StageName": "Prospecting", "IsClosed": "false", "IsWon": "false"},
                {"Id": "0063", "StageName": "Closed Lost", "IsDeleted": "true"},
            ]
        ),
        "salesforce:OpportunityContactRole": _frame(
            [
                {"Id": "00K1", "OpportunityId": "0062", "ContactId": "0031"},
                {"Id": "00K2", "OpportunityId": "0063", "ContactId": "0031"},
            ]
        ),
        "salesforce:Lead": _frame(
            [
                {"Id": "00Q1", "ConvertedOpportunityId": "0061"},
                {"Id": "00Q2"},
            ]
        ),
    }
    out = normalize_outcomes(raw)
    assert out.schema == pl.Schema(OUTCOME_SCHEMA)
    assert out.rows() == [
        ("salesforce:Contact:0031", "0062", "Prospecting", False, False, None, None),
        ("salesforce:Lead:00Q1", "0061", "Closed Won", True, True, 120.0, date(2024, 3, 31)),
    ]


def test_normalize_outcomes_empty() -> None:
    out = normalize_outcomes({"salesforce:Lead": _frame([{"Id": "00Q1"}])})
    assert out.height == 0 and out.schema == pl.Schema(OUTCOME_SCHEMA)


def test_a_contact_merged_into_another_is_deleted_not_alive() -> None:
    contacts = pl.DataFrame(
        {
            "id": ["1001", "1002", "1003"],
            "email": ["a@example.com", "b@example.com", "c@example.com"],
            "lastname": ["A", "B", "C"],
            "createdate": ["2026-01-01T00:00:00.000Z"] * 3,
            # 1001 survived a merge with 1002 (which HubSpot no longer returns, but we stored it).
            "hs_merged_object_ids": ["1002", None, None],
        }
    )
    leads = normalize_leads({"hubspot:contacts": contacts}, DEFAULT_LEAD_MAPPINGS)
    deleted = dict(zip(leads["source_id"], leads["is_deleted"], strict=True))
    assert deleted == {"1001": False, "1002": True, "1003": False}


def test_archived_hubspot_engagement_is_no_activity() -> None:
    raw = _raw_activities()
    raw["hubspot:calls"] = _engagements(
        [
            {"id": "c1", "hs_timestamp": "2024-09-04T00:00:00Z", "contact_ids": ["1001"]},
            {
                "id": "c2",
                "hs_timestamp": "2024-09-04T00:00:00Z",
                "contact_ids": ["1001"],
                "archived": "true",
            },
        ]
    )
    ids = set(normalize_activities(raw)["activity_id"].to_list())
    assert "hubspot:calls:c1:1001" in ids and "hubspot:calls:c2:1001" not in ids


def test_bant_checkboxes_parse_as_booleans_and_are_null_where_the_org_has_none() -> None:
    raw = {
        "salesforce:Lead": _frame(
            [
                {
                    "Id": "00Q1",
                    "LastName": "Sato",
                    "BANT_Need__c": "true",
                    "BANT_Timeline__c": "True",
                    "BANT_Budget__c": "false",
                },
            ]
        ),
        # A Contact (and a Lead from an org without the fields) has no BANT(C) columns.
        "salesforce:Contact": _frame([{"Id": "0031", "LastName": "Lee"}]),
    }
    rows = {r["record_id"]: r for r in normalize_leads(raw, DEFAULT_LEAD_MAPPINGS).to_dicts()}
    lead, contact = rows["salesforce:Lead:00Q1"], rows["salesforce:Contact:0031"]
    assert (lead["bant_need"], lead["bant_timeline"], lead["bant_budget"]) == (True, True, False)
    assert lead["bant_authority"] is None and lead["bant_competitor"] is None
    assert all(contact[f"bant_{c}"] is None for c in ("budget", "authority", "need", "timeline"))


def test_name_romaji_reads_and_extends_the_memo_it_is_given() -> None:
    def series(*values: str | None) -> pl.Series:
        return pl.Series(values=list(values), dtype=pl.String)

    # "鈴木" is known (a stand-in answer proves the memo is read, not pykakasi); "雄一" is new.
    memo = {"鈴木": "suzukii"}
    key = normalize.name_romaji(series("雄一"), series("鈴木"), series(None), series(None), memo)
    assert key.to_list() == ["suzukii yuichi"]
    assert memo == {"鈴木": "suzukii", "雄一": "yuuichi"}  # long vowels are folded after it
    # Without a memo, the same name is romanised from scratch.
    plain = normalize.name_romaji(series("雄一"), series("鈴木"), series(None), series(None))
    assert plain.to_list() == ["suzuki yuichi"]
