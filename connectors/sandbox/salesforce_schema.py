"""The sObject field table of the Salesforce sandbox.

One table drives everything the emulator does with fields: SOQL validation, write validation
(unknown / read-only / required / restricted picklist / length / numeric range) and the
``describe`` output. Keeping a single source is the point: a worker that validates its pushes
against ``describe`` sees exactly the rules the emulator enforces on the write.

Picklist values are the Salesforce defaults of a fresh org (contract §B11, "orgs customise
them"), plus the ``LeadSync_*__c`` custom fields every seeded org has (docs/sandbox-data.md).
The module also holds the small value helpers shared by the app and the SOQL engine:
Salesforce id arithmetic (15 → 18 characters) and the wire formats of dates and datetimes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any, Literal

FieldType = Literal[
    "id",
    "string",
    "textarea",
    "email",
    "phone",
    "url",
    "picklist",
    "multipicklist",
    "combobox",
    "boolean",
    "int",
    "double",
    "currency",
    "percent",
    "date",
    "datetime",
    "reference",
    "address",
]

#: Field types whose values are strings on the wire and in storage.
TEXT_TYPES: frozenset[str] = frozenset(
    {"string", "textarea", "email", "phone", "url", "picklist", "multipicklist", "combobox"}
)
NUMBER_TYPES: frozenset[str] = frozenset({"int", "double", "currency", "percent"})
ID_TYPES: frozenset[str] = frozenset({"id", "reference"})

_SOAP_TYPES: dict[str, str] = {
    "id": "tns:ID",
    "reference": "tns:ID",
    "boolean": "xsd:boolean",
    "int": "xsd:int",
    "double": "xsd:double",
    "currency": "xsd:double",
    "percent": "xsd:double",
    "date": "xsd:date",
    "datetime": "xsd:dateTime",
    "address": "urn:address",
}


@dataclass(frozen=True)
class PicklistValue:
    value: str
    default: bool = False
    active: bool = True

    def describe(self) -> dict[str, Any]:
        return {
            "active": self.active,
            "defaultValue": self.default,
            "label": self.value,
            "validFor": None,
            "value": self.value,
        }


@dataclass(frozen=True)
class FieldDef:
    """One field of an sObject, with the attributes ``describe`` reports."""

    name: str
    type: FieldType
    label: str
    length: int = 0
    precision: int = 0
    scale: int = 0
    digits: int = 0
    nillable: bool = True
    createable: bool = True
    updateable: bool = True
    defaulted_on_create: bool = False
    default_value: Any = None
    picklist: tuple[PicklistValue, ...] = ()
    restricted_picklist: bool = False
    reference_to: tuple[str, ...] = ()
    relationship_name: str | None = None
    #: Name of the child relationship on the parent side (e.g. ``Tasks`` for Task.WhoId).
    child_relationship: str | None = None
    cascade_delete: bool = False
    external_id: bool = False
    unique: bool = False
    #: Maintained by the emulator (compound Name, roll-ups, IsClosed...), never written by clients.
    calculated: bool = False
    name_field: bool = False
    id_lookup: bool = False
    compound_field_name: str | None = None

    @property
    def custom(self) -> bool:
        return self.name.endswith("__c")

    @property
    def required_on_create(self) -> bool:
        """Salesforce's rule: not nillable, createable and not defaulted → must be sent."""
        return (
            not self.nillable
            and self.createable
            and not self.defaulted_on_create
            and self.type != "boolean"
        )

    @property
    def filterable(self) -> bool:
        # Long text areas and compound address fields cannot be used in WHERE / ORDER BY.
        if self.type == "address":
            return False
        return not (self.type == "textarea" and self.length > 255)

    @property
    def polymorphic(self) -> bool:
        return len(self.reference_to) > 1

    def picklist_values(self) -> tuple[str, ...]:
        return tuple(p.value for p in self.picklist if p.active)

    def describe(self) -> dict[str, Any]:
        """The field entry of ``GET /sobjects/{name}/describe``."""
        is_text = self.type in TEXT_TYPES
        length = self.length if is_text else 0
        # Salesforce reports ``byteLength`` as three bytes per character (UTF-8 worst case).
        byte_length = length * 3 if is_text else (18 if self.type in ID_TYPES else 0)
        return {
            "aggregatable": self.type not in {"textarea", "address", "multipicklist"},
            "aiPredictionField": False,
            "autoNumber": False,
            "byteLength": byte_length,
            "calculated": self.calculated and self.type != "address",
            "calculatedFormula": None,
            "cascadeDelete": self.cascade_delete,
            "caseSensitive": False,
            "compoundFieldName": self.compound_field_name,
            "controllerName": None,
            "createable": self.createable,
            "custom": self.custom,
            "defaultValue": self.default_value if self.type == "boolean" else None,
            "defaultValueFormula": None,
            "defaultedOnCreate": self.defaulted_on_create,
            "dependentPicklist": False,
            "deprecatedAndHidden": False,
            "digits": self.digits,
            "displayLocationInDecimal": False,
            "encrypted": False,
            "externalId": self.external_id,
            "extraTypeInfo": _extra_type_info(self),
            "filterable": self.filterable,
            "filteredLookupInfo": None,
            "formulaTreatNullNumberAsZero": False,
            "groupable": self.type not in NUMBER_TYPES | {"textarea", "address", "datetime"},
            "highScaleNumber": False,
            "htmlFormatted": False,
            "idLookup": self.id_lookup or self.type == "id" or self.external_id,
            "inlineHelpText": None,
            "label": self.label,
            "length": length,
            "mask": None,
            "maskType": None,
            "name": self.name,
            "nameField": self.name_field,
            "namePointing": self.polymorphic,
            "nillable": self.nillable,
            "permissionable": self.nillable and not self.calculated and self.type != "id",
            "picklistValues": [p.describe() for p in self.picklist],
            "polymorphicForeignKey": self.polymorphic,
            "precision": self.precision,
            "queryByDistance": False,
            "referenceTargetField": None,
            "referenceTo": list(self.reference_to),
            "relationshipName": self.relationship_name,
            "relationshipOrder": None,
            "restrictedDelete": False,
            "restrictedPicklist": self.restricted_picklist,
            "scale": self.scale,
            "searchPrefilterable": self.type == "reference",
            "soapType": _SOAP_TYPES.get(self.type, "xsd:string"),
            "sortable": self.filterable and self.type != "multipicklist",
            "type": self.type,
            "unique": self.unique,
            "updateable": self.updateable,
            "writeRequiresMasterRead": False,
        }


def _extra_type_info(f: FieldDef) -> str | None:
    if f.type == "textarea":
        return "plaintextarea"
    if f.name in {"Name", "FirstName", "LastName"} and f.compound_field_name == "Name":
        return "personname"
    return None


@dataclass(frozen=True)
class SObjectDef:
    name: str
    label: str
    label_plural: str
    key_prefix: str
    fields: tuple[FieldDef, ...]
    createable: bool = True
    updateable: bool = True
    deletable: bool = True
    _by_lower: dict[str, FieldDef] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self._by_lower.update({f.name.lower(): f for f in self.fields})

    def field(self, name: str) -> FieldDef | None:
        """Case-insensitive lookup: Salesforce API names are case-insensitive everywhere."""
        return self._by_lower.get(name.lower())

    def relationship(self, name: str) -> FieldDef | None:
        """The reference field whose relationship name is ``name`` (``Owner`` → ``OwnerId``)."""
        lowered = name.lower()
        for f in self.fields:
            if f.relationship_name is not None and f.relationship_name.lower() == lowered:
                return f
        return None


# ---------------------------------------------------------------------------------------------
# Field constructors: keep the table below readable.


def _pl(*values: str, default: str | None = None) -> tuple[PicklistValue, ...]:
    return tuple(PicklistValue(v, default=(v == default)) for v in values)


def text(name: str, label: str, length: int = 255, **kw: Any) -> FieldDef:
    return FieldDef(name, "string", label, length=length, **kw)


def area(name: str, label: str, length: int = 32000, **kw: Any) -> FieldDef:
    return FieldDef(name, "textarea", label, length=length, **kw)


def picklist(
    name: str,
    label: str,
    values: tuple[PicklistValue, ...],
    *,
    restricted: bool = False,
    length: int = 255,
    **kw: Any,
) -> FieldDef:
    has_default = any(v.default for v in values)
    return FieldDef(
        name,
        "picklist",
        label,
        length=length,
        picklist=values,
        restricted_picklist=restricted,
        defaulted_on_create=has_default or kw.pop("defaulted_on_create", False),
        **kw,
    )


def boolean(name: str, label: str, default: bool = False, **kw: Any) -> FieldDef:
    return FieldDef(
        name,
        "boolean",
        label,
        nillable=False,
        defaulted_on_create=True,
        default_value=default,
        **kw,
    )


def ref(
    name: str,
    label: str,
    to: tuple[str, ...],
    relationship: str,
    child: str | None = None,
    **kw: Any,
) -> FieldDef:
    return FieldDef(
        name,
        "reference",
        label,
        reference_to=to,
        relationship_name=relationship,
        child_relationship=child,
        **kw,
    )


def number(name: str, label: str, precision: int = 18, scale: int = 0, **kw: Any) -> FieldDef:
    return FieldDef(name, "double", label, precision=precision, scale=scale, **kw)


def currency(name: str, label: str, precision: int = 18, scale: int = 0, **kw: Any) -> FieldDef:
    return FieldDef(name, "currency", label, precision=precision, scale=scale, **kw)


def integer(name: str, label: str, digits: int = 9, **kw: Any) -> FieldDef:
    return FieldDef(name, "int", label, digits=digits, **kw)


def ro(f: FieldDef) -> FieldDef:
    """Read-only variant of a field (system-maintained)."""
    return FieldDef(**{**f.__dict__, "createable": False, "updateable": False})


def _system_fields(prefix_label: str, *, owner: tuple[str, ...] | None) -> list[FieldDef]:
    """Fields every sObject has; ``owner`` gives OwnerId's targets (None: no OwnerId)."""
    fields = [
        FieldDef(
            "Id",
            "id",
            f"{prefix_label} ID",
            length=18,
            nillable=False,
            createable=False,
            updateable=False,
            defaulted_on_create=True,
        ),
        ro(boolean("IsDeleted", "Deleted")),
        ro(FieldDef("CreatedDate", "datetime", "Created Date", nillable=False,
                    defaulted_on_create=True)),
        ro(ref("CreatedById", "Created By ID", ("User",), "CreatedBy", nillable=False,
               defaulted_on_create=True)),
        ro(FieldDef("LastModifiedDate", "datetime", "Last Modified Date", nillable=False,
                    defaulted_on_create=True)),
        ro(ref("LastModifiedById", "Last Modified By ID", ("User",), "LastModifiedBy",
               nillable=False, defaulted_on_create=True)),
        ro(FieldDef("SystemModstamp", "datetime", "System Modstamp", nillable=False,
                    defaulted_on_create=True)),
    ]  # fmt: skip
    if owner is not None:
        fields.append(
            ref(
                "OwnerId",
                "Owner ID",
                owner,
                "Owner",
                nillable=False,
                defaulted_on_create=True,
            )
        )
    return fields


# ---------------------------------------------------------------------------------------------
# Picklist value sets (Salesforce defaults of a fresh org).

LEAD_SOURCE = _pl("Web", "Phone Inquiry", "Partner Referral", "Purchased List", "Other")
# A fresh org's four statuses, plus the two an admin adds so that Lead.Status can follow the
# lead definition's stages (docs/crm-setup.md): Qualified (SQL) and Nurturing (Recycled).
LEAD_STATUS = _pl(
    "Open - Not Contacted",
    "Working - Contacted",
    "Qualified",
    "Nurturing",
    "Closed - Converted",
    "Closed - Not Converted",
    default="Open - Not Contacted",
)
#: The Lead status a conversion sets (LeadStatus.IsConverted = true in a default org).
CONVERTED_LEAD_STATUS = "Closed - Converted"
INDUSTRY = _pl(
    "Agriculture", "Apparel", "Banking", "Biotechnology", "Chemicals", "Communications",
    "Construction", "Consulting", "Education", "Electronics", "Energy", "Engineering",
    "Entertainment", "Environmental", "Finance", "Food & Beverage", "Government", "Healthcare",
    "Hospitality", "Insurance", "Machinery", "Manufacturing", "Media", "Not For Profit", "Other",
    "Recreation", "Retail", "Shipping", "Technology", "Telecommunications", "Transportation",
    "Utilities",
)  # fmt: skip
RATING = _pl("Hot", "Warm", "Cold")
SALUTATION = _pl("Mr.", "Ms.", "Mrs.", "Dr.", "Prof.", "Mx.")
ACCOUNT_TYPE = _pl(
    "Prospect", "Customer - Direct", "Customer - Channel", "Channel Partner / Reseller",
    "Installation Partner", "Technology Partner", "Other",
)  # fmt: skip
OWNERSHIP = _pl("Public", "Private", "Subsidiary", "Other")
TASK_STATUS = _pl(
    "Not Started",
    "In Progress",
    "Completed",
    "Waiting on someone else",
    "Deferred",
    default="Not Started",
)
#: Task statuses flagged IsClosed in a default org.
CLOSED_TASK_STATUSES = frozenset({"Completed"})
TASK_PRIORITY = _pl("High", "Normal", "Low", default="Normal")
ACTIVITY_TYPE = _pl("Call", "Email", "Meeting", "Other")
TASK_SUBTYPE = _pl("Task", "Email", "ListEmail", "Cadence", "Call", "LinkedIn")
TASK_SUBJECT = _pl("Call", "Send Letter", "Send Quote", "Other")
EVENT_SUBJECT = _pl("Call", "Email", "Meeting", "Send Letter/Quote", "Other")
CALL_TYPE = _pl("Internal", "Inbound", "Outbound")
SHOW_AS = _pl("Busy", "OutOfOffice", "Free", default="Busy")
CAMPAIGN_TYPE = _pl(
    "Advertisement", "Email", "Telemarketing", "Banner Ads", "Seminar / Conference",
    "Public Relations", "Partners", "Referral Program", "Webinar", "Other",
)  # fmt: skip
CAMPAIGN_STATUS = _pl("Planned", "In Progress", "Completed", "Aborted")
CAMPAIGN_MEMBER_STATUS = _pl("Sent", "Responded", default="Sent")
#: CampaignMemberStatus.HasResponded for the default statuses.
RESPONDED_MEMBER_STATUSES = frozenset({"Responded"})
OPPORTUNITY_STAGE = _pl(
    "Prospecting", "Qualification", "Needs Analysis", "Value Proposition",
    "Id. Decision Makers", "Perception Analysis", "Proposal/Price Quote", "Negotiation/Review",
    "Closed Won", "Closed Lost",
)  # fmt: skip
#: OpportunityStage defaults: probability (%), closed, won, forecast category.
STAGE_INFO: dict[str, tuple[float, bool, bool, str]] = {
    "Prospecting": (10, False, False, "Pipeline"),
    "Qualification": (10, False, False, "Pipeline"),
    "Needs Analysis": (20, False, False, "Pipeline"),
    "Value Proposition": (50, False, False, "Pipeline"),
    "Id. Decision Makers": (60, False, False, "Pipeline"),
    "Perception Analysis": (70, False, False, "Pipeline"),
    "Proposal/Price Quote": (75, False, False, "Pipeline"),
    "Negotiation/Review": (90, False, False, "Pipeline"),
    "Closed Won": (100, True, True, "Closed"),
    "Closed Lost": (0, True, False, "Omitted"),
}
OPPORTUNITY_TYPE = _pl(
    "Existing Customer - Upgrade", "Existing Customer - Replacement",
    "Existing Customer - Downgrade", "New Customer",
)  # fmt: skip
FORECAST_CATEGORY = _pl("Omitted", "Pipeline", "Best Case", "Commit", "Closed")
CONTACT_ROLE = _pl(
    "Business User", "Decision Maker", "Economic Buyer", "Economic Decision Maker", "Evaluator",
    "Executive Sponsor", "Influencer", "Technical Buyer", "Other",
)  # fmt: skip
LEADSYNC_STAGE = _pl(
    "Lead", "MAL", "MQL", "SAL", "SQL", "Opportunity", "Customer", "Recycled", "Disqualified"
)
LEADSYNC_TEMPERATURE = _pl("cold", "warm", "hot")
LEADSYNC_SLA_STATUS = _pl("on_track", "breached", "none")
TIME_ZONES = _pl("Asia/Tokyo", "America/Los_Angeles", "America/New_York", "Europe/London", "GMT")
LOCALES = _pl("ja_JP", "en_US", "en_GB")
LANGUAGES = _pl("ja", "en_US")
EMAIL_ENCODINGS = _pl("UTF-8", "ISO-2022-JP", "Shift_JIS", "ISO-8859-1")


def _leadsync_fields() -> list[FieldDef]:
    """The custom fields an admin created for leadsync on Lead and Contact.

    ``LeadSync_Unified_Id__c`` is flagged External ID so the worker can upsert / look up by it
    (an admin creating a sync key would tick that box; docs/sandbox-data.md only says Text 64).
    Custom picklists created in Lightning are restricted by default.
    """
    return [
        text("LeadSync_Unified_Id__c", "LeadSync Unified Id", 64, external_id=True),
        picklist("LeadSync_Stage__c", "LeadSync Stage", LEADSYNC_STAGE, restricted=True),
        number("LeadSync_Fit_Score__c", "LeadSync Fit Score", 5, 0),
        number("LeadSync_Engagement_Score__c", "LeadSync Engagement Score", 5, 0),
        number("LeadSync_Score__c", "LeadSync Score", 5, 0),
        picklist(
            "LeadSync_Temperature__c", "LeadSync Temperature", LEADSYNC_TEMPERATURE, restricted=True
        ),
        text("LeadSync_Next_Content__c", "LeadSync Next Content", 255),
        text("LeadSync_Next_Content_Subject__c", "LeadSync Next Content Subject", 255),
        FieldDef("LeadSync_Next_Content_Url__c", "url", "LeadSync Next Content URL", length=255),
        picklist(
            "LeadSync_SLA_Status__c", "LeadSync SLA Status", LEADSYNC_SLA_STATUS, restricted=True
        ),
        FieldDef("LeadSync_Synced_At__c", "datetime", "LeadSync Synced At"),
    ]


def _kana_fields() -> list[FieldDef]:
    """Furigana of the name, as Japanese orgs add them (custom fields; the org's own choice of
    API names, here the common LastNameKana__c / FirstNameKana__c)."""
    return [
        text("LastNameKana__c", "Last Name (Kana)", 80),
        text("FirstNameKana__c", "First Name (Kana)", 40),
    ]


def _bant_fields() -> list[FieldDef]:
    """BANT(C) checkboxes an admin added to Lead (docs/crm-setup.md): sales ticks each one when
    that criterion is confirmed. Checkbox custom fields are never null and default to unticked."""
    return [
        boolean("BANT_Budget__c", "BANT: Budget Confirmed"),
        boolean("BANT_Authority__c", "BANT: Authority Confirmed"),
        boolean("BANT_Need__c", "BANT: Need Confirmed"),
        boolean("BANT_Timeline__c", "BANT: Timeline Confirmed"),
        boolean("BANT_Competitor__c", "BANT: Competitor Known"),
    ]


def _address(prefix: str, label: str) -> list[FieldDef]:
    compound = f"{prefix}Address" if prefix else "Address"
    return [
        area(f"{prefix}Street", f"{label} Street", 255, compound_field_name=compound),
        text(f"{prefix}City", f"{label} City", 40, compound_field_name=compound),
        text(f"{prefix}State", f"{label} State/Province", 80, compound_field_name=compound),
        text(f"{prefix}PostalCode", f"{label} Zip/Postal Code", 20, compound_field_name=compound),
        text(f"{prefix}Country", f"{label} Country", 80, compound_field_name=compound),
        ro(FieldDef(compound, "address", f"{label} Address", calculated=True)),
    ]


def _person_name() -> list[FieldDef]:
    return [
        picklist("Salutation", "Salutation", SALUTATION, length=40, compound_field_name="Name"),
        text("FirstName", "First Name", 40, compound_field_name="Name"),
        text("LastName", "Last Name", 80, nillable=False, compound_field_name="Name"),
        ro(text("Name", "Full Name", 121, calculated=True, name_field=True)),
    ]


_USER = SObjectDef(
    "User",
    "User",
    "Users",
    "005",
    (
        *_system_fields("User", owner=None),
        text("Username", "Username", 80, nillable=False, unique=True, id_lookup=True),
        text("FirstName", "First Name", 40, compound_field_name="Name"),
        text("LastName", "Last Name", 80, nillable=False, compound_field_name="Name"),
        ro(text("Name", "Full Name", 121, calculated=True, name_field=True)),
        text("Alias", "Alias", 8, nillable=False),
        FieldDef("Email", "email", "Email", length=128, nillable=False),
        boolean("IsActive", "Active", default=True),
        text("Title", "Title", 80),
        text("Department", "Department", 80),
        text("CompanyName", "Company Name", 80),
        FieldDef("Phone", "phone", "Phone", length=40),
        picklist("TimeZoneSidKey", "Time Zone", TIME_ZONES, length=40, nillable=False),
        picklist("LocaleSidKey", "Locale", LOCALES, length=40, nillable=False),
        picklist("LanguageLocaleKey", "Language", LANGUAGES, length=40, nillable=False),
        picklist("EmailEncodingKey", "Email Encoding", EMAIL_ENCODINGS, length=40, nillable=False),
        ref("ProfileId", "Profile ID", ("Profile",), "Profile", nillable=False),
        ref("ManagerId", "Manager ID", ("User",), "Manager"),
        ro(picklist("UserType", "User Type", _pl("Standard", default="Standard"), length=40)),
    ),
    deletable=False,
)

_ACCOUNT = SObjectDef(
    "Account",
    "Account",
    "Accounts",
    "001",
    (
        *_system_fields("Account", owner=("User",)),
        ro(ref("MasterRecordId", "Master Record ID", ("Account",), "MasterRecord")),
        text("Name", "Account Name", 255, nillable=False, name_field=True),
        picklist("Type", "Account Type", ACCOUNT_TYPE),
        ref("ParentId", "Parent Account ID", ("Account",), "Parent", child="ChildAccounts"),
        *_address("Billing", "Billing"),
        *_address("Shipping", "Shipping"),
        FieldDef("Phone", "phone", "Account Phone", length=40),
        FieldDef("Fax", "phone", "Account Fax", length=40),
        text("AccountNumber", "Account Number", 40),
        FieldDef("Website", "url", "Website", length=255),
        text("Sic", "SIC Code", 20),
        picklist("Industry", "Industry", INDUSTRY),
        currency("AnnualRevenue", "Annual Revenue"),
        integer("NumberOfEmployees", "Employees", digits=8),
        picklist("Ownership", "Ownership", OWNERSHIP),
        text("TickerSymbol", "Ticker Symbol", 20),
        area("Description", "Account Description"),
        picklist("Rating", "Account Rating", RATING),
        text("Site", "Account Site", 80),
        picklist("AccountSource", "Account Source", LEAD_SOURCE),
        ro(FieldDef("LastActivityDate", "date", "Last Activity")),
    ),
)

_LEAD = SObjectDef(
    "Lead",
    "Lead",
    "Leads",
    "00Q",
    (
        *_system_fields("Lead", owner=("Group", "User")),
        ro(ref("MasterRecordId", "Master Record ID", ("Lead",), "MasterRecord")),
        *_person_name(),
        text("Title", "Title", 128),
        text("Company", "Company", 255, nillable=False),
        *_address("", ""),
        FieldDef("Phone", "phone", "Phone", length=40),
        FieldDef("MobilePhone", "phone", "Mobile Phone", length=40),
        FieldDef("Email", "email", "Email", length=80, id_lookup=True),
        FieldDef("Website", "url", "Website", length=255),
        area("Description", "Description"),
        picklist("LeadSource", "Lead Source", LEAD_SOURCE),
        picklist("Status", "Status", LEAD_STATUS, restricted=True, length=40, nillable=False),
        picklist("Industry", "Industry", INDUSTRY),
        picklist("Rating", "Rating", RATING),
        currency("AnnualRevenue", "Annual Revenue"),
        integer("NumberOfEmployees", "Employees", digits=8),
        ro(boolean("IsConverted", "Converted")),
        ro(FieldDef("ConvertedDate", "date", "Converted Date")),
        ro(ref("ConvertedAccountId", "Converted Account ID", ("Account",), "ConvertedAccount")),
        ro(ref("ConvertedContactId", "Converted Contact ID", ("Contact",), "ConvertedContact")),
        ro(
            ref(
                "ConvertedOpportunityId",
                "Converted Opportunity ID",
                ("Opportunity",),
                "ConvertedOpportunity",
            )
        ),
        boolean("IsUnreadByOwner", "Unread By Owner"),
        boolean("HasOptedOutOfEmail", "Email Opt Out"),
        boolean("DoNotCall", "Do Not Call"),
        ro(FieldDef("LastActivityDate", "date", "Last Activity")),
        text("EmailBouncedReason", "Email Bounced Reason", 255),
        FieldDef("EmailBouncedDate", "datetime", "Email Bounced Date"),
        *_leadsync_fields(),
        *_kana_fields(),
        *_bant_fields(),
    ),
)

_CONTACT = SObjectDef(
    "Contact",
    "Contact",
    "Contacts",
    "003",
    (
        *_system_fields("Contact", owner=("User",)),
        ro(ref("MasterRecordId", "Master Record ID", ("Contact",), "MasterRecord")),
        ref("AccountId", "Account ID", ("Account",), "Account", child="Contacts"),
        *_person_name(),
        *_address("Mailing", "Mailing"),
        FieldDef("Phone", "phone", "Business Phone", length=40),
        FieldDef("MobilePhone", "phone", "Mobile Phone", length=40),
        FieldDef("Email", "email", "Email", length=80, id_lookup=True),
        text("Title", "Title", 128),
        text("Department", "Department", 80),
        ref("ReportsToId", "Reports To ID", ("Contact",), "ReportsTo"),
        picklist("LeadSource", "Lead Source", LEAD_SOURCE),
        FieldDef("Birthdate", "date", "Birthdate"),
        area("Description", "Contact Description"),
        boolean("HasOptedOutOfEmail", "Email Opt Out"),
        boolean("DoNotCall", "Do Not Call"),
        ro(FieldDef("LastActivityDate", "date", "Last Activity")),
        text("EmailBouncedReason", "Email Bounced Reason", 255),
        FieldDef("EmailBouncedDate", "datetime", "Email Bounced Date"),
        *_leadsync_fields(),
        *_kana_fields(),
    ),
)

_WHO = ("Contact", "Lead")
_WHAT = ("Account", "Campaign", "Opportunity")


def _activity_links(child: str) -> list[FieldDef]:
    return [
        ref("WhoId", "Name ID", _WHO, "Who", child=child, cascade_delete=True),
        ref("WhatId", "Related To ID", _WHAT, "What", child=child, cascade_delete=True),
        ro(ref("AccountId", "Account ID", ("Account",), "Account", calculated=True)),
    ]


_TASK = SObjectDef(
    "Task",
    "Task",
    "Tasks",
    "00T",
    (
        *_system_fields("Activity", owner=("Group", "User")),
        *_activity_links("Tasks"),
        FieldDef("Subject", "combobox", "Subject", length=255, picklist=TASK_SUBJECT),
        FieldDef("ActivityDate", "date", "Due Date Only"),
        picklist("Status", "Status", TASK_STATUS, restricted=True, length=40, nillable=False),
        picklist("Priority", "Priority", TASK_PRIORITY, restricted=True, length=40, nillable=False),
        ro(boolean("IsHighPriority", "High Priority", calculated=True)),
        picklist("Type", "Type", ACTIVITY_TYPE, length=40),
        FieldDef(
            "TaskSubtype",
            "picklist",
            "Task Subtype",
            length=40,
            picklist=TASK_SUBTYPE,
            restricted_picklist=True,
            updateable=False,
        ),
        ro(boolean("IsClosed", "Closed", calculated=True)),
        area("Description", "Description"),
        picklist("CallType", "Call Type", CALL_TYPE, restricted=True, length=40),
        integer("CallDurationInSeconds", "Call Duration", digits=8),
        text("CallDisposition", "Call Result", 255),
        ro(FieldDef("CompletedDateTime", "datetime", "Completed Date/Time", calculated=True)),
        ro(boolean("IsArchived", "Archived")),
    ),
)

_EVENT = SObjectDef(
    "Event",
    "Event",
    "Events",
    "00U",
    (
        *_system_fields("Activity", owner=("Group", "User")),
        *_activity_links("Events"),
        FieldDef("Subject", "combobox", "Subject", length=255, picklist=EVENT_SUBJECT),
        FieldDef("StartDateTime", "datetime", "Start Date Time"),
        FieldDef("EndDateTime", "datetime", "End Date Time"),
        FieldDef("ActivityDateTime", "datetime", "Due Date Time"),
        FieldDef("ActivityDate", "date", "Due Date Only"),
        integer("DurationInMinutes", "Duration", digits=8),
        boolean("IsAllDayEvent", "All-Day Event"),
        text("Location", "Location", 255),
        picklist("Type", "Type", ACTIVITY_TYPE, length=40),
        FieldDef(
            "EventSubtype",
            "picklist",
            "Event Subtype",
            length=40,
            picklist=_pl("Event"),
            updateable=False,
        ),
        area("Description", "Description"),
        picklist("ShowAs", "Show Time As", SHOW_AS, restricted=True, length=40),
        ro(boolean("IsArchived", "Archived")),
    ),
)

_CAMPAIGN = SObjectDef(
    "Campaign",
    "Campaign",
    "Campaigns",
    "701",
    (
        *_system_fields("Campaign", owner=("User",)),
        text("Name", "Name", 80, nillable=False, name_field=True),
        ref("ParentId", "Parent Campaign ID", ("Campaign",), "Parent", child="ChildCampaigns"),
        picklist("Type", "Type", CAMPAIGN_TYPE),
        picklist("Status", "Status", CAMPAIGN_STATUS),
        FieldDef("StartDate", "date", "Start Date"),
        FieldDef("EndDate", "date", "End Date"),
        currency("ExpectedRevenue", "Expected Revenue in Campaign"),
        currency("BudgetedCost", "Budgeted Cost in Campaign"),
        currency("ActualCost", "Actual Cost in Campaign"),
        boolean("IsActive", "Active"),
        area("Description", "Description"),
        ro(integer("NumberOfLeads", "Leads in Campaign", calculated=True)),
        ro(integer("NumberOfConvertedLeads", "Converted Leads in Campaign", calculated=True)),
        ro(integer("NumberOfContacts", "Contacts in Campaign", calculated=True)),
        ro(integer("NumberOfResponses", "Responses in Campaign", calculated=True)),
    ),
)

_CAMPAIGN_MEMBER = SObjectDef(
    "CampaignMember",
    "Campaign Member",
    "Campaign Members",
    "00v",
    (
        *_system_fields("Campaign Member", owner=None),
        FieldDef(
            "CampaignId",
            "reference",
            "Campaign ID",
            reference_to=("Campaign",),
            relationship_name="Campaign",
            child_relationship="CampaignMembers",
            nillable=False,
            updateable=False,
            cascade_delete=True,
        ),
        FieldDef(
            "LeadId",
            "reference",
            "Lead ID",
            reference_to=("Lead",),
            relationship_name="Lead",
            child_relationship="CampaignMembers",
            updateable=False,
            cascade_delete=True,
        ),
        FieldDef(
            "ContactId",
            "reference",
            "Contact ID",
            reference_to=("Contact",),
            relationship_name="Contact",
            child_relationship="CampaignMembers",
            updateable=False,
            cascade_delete=True,
        ),
        picklist("Status", "Status", CAMPAIGN_MEMBER_STATUS, length=40),
        ro(boolean("HasResponded", "Responded", calculated=True)),
        ro(FieldDef("FirstRespondedDate", "date", "First Responded Date", calculated=True)),
        ro(picklist("Type", "Type", _pl("Lead", "Contact"), length=40, calculated=True)),
        ro(ref("LeadOrContactId", "Lead or Contact ID", _WHO, "LeadOrContact", calculated=True)),
    ),
)

_OPPORTUNITY = SObjectDef(
    "Opportunity",
    "Opportunity",
    "Opportunities",
    "006",
    (
        *_system_fields("Opportunity", owner=("User",)),
        ref(
            "AccountId",
            "Account ID",
            ("Account",),
            "Account",
            child="Opportunities",
            cascade_delete=True,
        ),
        text("Name", "Name", 120, nillable=False, name_field=True),
        area("Description", "Description"),
        picklist(
            "StageName", "Stage", OPPORTUNITY_STAGE, restricted=True, length=255, nillable=False
        ),
        currency("Amount", "Amount"),
        FieldDef(
            "Probability",
            "percent",
            "Probability (%)",
            precision=3,
            scale=0,
            defaulted_on_create=True,
        ),
        FieldDef("CloseDate", "date", "Close Date", nillable=False),
        picklist("Type", "Opportunity Type", OPPORTUNITY_TYPE),
        text("NextStep", "Next Step", 255),
        picklist("LeadSource", "Lead Source", LEAD_SOURCE),
        ro(boolean("IsClosed", "Closed", calculated=True)),
        ro(boolean("IsWon", "Won", calculated=True)),
        picklist(
            "ForecastCategoryName", "Forecast Category", FORECAST_CATEGORY, defaulted_on_create=True
        ),
        ref("CampaignId", "Campaign ID", ("Campaign",), "Campaign", child="Opportunities"),
        ref("ContactId", "Contact ID", ("Contact",), "Contact"),
        ro(FieldDef("LastActivityDate", "date", "Last Activity")),
    ),
)

_OPPORTUNITY_CONTACT_ROLE = SObjectDef(
    "OpportunityContactRole",
    "Opportunity Contact Role",
    "Opportunity Contact Role",
    "00K",
    (
        *_system_fields("Opportunity Contact Role", owner=None),
        FieldDef(
            "OpportunityId",
            "reference",
            "Opportunity ID",
            reference_to=("Opportunity",),
            relationship_name="Opportunity",
            child_relationship="OpportunityContactRoles",
            nillable=False,
            updateable=False,
            cascade_delete=True,
        ),
        FieldDef(
            "ContactId",
            "reference",
            "Contact ID",
            reference_to=("Contact",),
            relationship_name="Contact",
            child_relationship="OpportunityContactRoles",
            nillable=False,
            cascade_delete=True,
        ),
        picklist("Role", "Role", CONTACT_ROLE, length=40),
        boolean("IsPrimary", "Primary"),
    ),
)

SOBJECTS: dict[str, SObjectDef] = {
    s.name: s
    for s in (
        _USER,
        _ACCOUNT,
        _LEAD,
        _CONTACT,
        _TASK,
        _EVENT,
        _CAMPAIGN,
        _CAMPAIGN_MEMBER,
        _OPPORTUNITY,
        _OPPORTUNITY_CONTACT_ROLE,
    )
}
_SOBJECTS_LOWER: dict[str, SObjectDef] = {name.lower(): s for name, s in SOBJECTS.items()}
PREFIX_TO_SOBJECT: dict[str, str] = {s.key_prefix: s.name for s in SOBJECTS.values()}
#: Key prefixes of objects the sandbox references but does not model (queues, profiles): an
#: OwnerId of a Lead, Task or Event may name a lead queue (a Group of Type Queue, prefix 00G).
FOREIGN_PREFIXES: dict[str, str] = {"00G": "Group", "00e": "Profile"}

#: Fields a polymorphic relationship (Who, What, Owner on Lead/Task) exposes in SOQL: the
#: relationship resolves to the ``Name`` pseudo-object, not to the concrete target.
NAME_OBJECT_FIELDS: tuple[str, ...] = (
    "Id", "Name", "Type", "FirstName", "LastName", "Alias", "Email", "Phone", "Title",
    "IsActive", "Username",
)  # fmt: skip


def sobject(name: str) -> SObjectDef | None:
    """Case-insensitive sObject lookup (SOQL ``FROM lead`` works in Salesforce)."""
    return _SOBJECTS_LOWER.get(name.lower())


def child_relationships(parent: str) -> list[dict[str, Any]]:
    """``childRelationships`` of ``describe``, derived from every reference field in the table."""
    result: list[dict[str, Any]] = []
    for child in SOBJECTS.values():
        for f in child.fields:
            if f.type != "reference" or parent not in f.reference_to:
                continue
            result.append(
                {
                    "cascadeDelete": f.cascade_delete,
                    "childSObject": child.name,
                    "deprecatedAndHidden": False,
                    "field": f.name,
                    "junctionIdListNames": [],
                    "junctionReferenceTo": [],
                    "relationshipName": f.child_relationship,
                    "restrictedDelete": False,
                }
            )
    return result


def references_to(target: str) -> Iterable[tuple[SObjectDef, FieldDef]]:
    """All (object, field) pairs whose reference field can point at ``target``."""
    for obj in SOBJECTS.values():
        for f in obj.fields:
            if f.type == "reference" and target in f.reference_to:
                yield obj, f


# ---------------------------------------------------------------------------------------------
# Ids. 15-character ids are case-sensitive; the 18-character form appends a 3-character
# checksum of the upper-case positions so it survives case-insensitive systems.

_ID_RE = re.compile(r"^[a-zA-Z0-9]{15}(?:[a-zA-Z0-9]{3})?$")
_SUFFIX_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_UPPER_BITS = str.maketrans({chr(c): "1" if ord("A") <= c <= ord("Z") else "0" for c in range(128)})


def is_id(value: str) -> bool:
    return bool(_ID_RE.match(value))


def id18(id15: str) -> str:
    """Append Salesforce's case-safe checksum to a 15-character id (18-char ids pass through)."""
    if len(id15) == 18:
        return id15
    # Bit i of chunk k is set when character 5k+i is an upper-case letter; translate() maps the
    # whole id to a bit string in C, which keeps this cheap enough for loading millions of ids.
    bits = id15.translate(_UPPER_BITS)
    if not bits.isascii():  # not an id at all (non-ASCII); only upper-case A-Z sets a bit
        bits = "".join("1" if "A" <= ch <= "Z" else "0" for ch in id15)
    return (
        id15
        + _SUFFIX_ALPHABET[int(bits[4::-1] or "0", 2)]
        + _SUFFIX_ALPHABET[int(bits[9:4:-1] or "0", 2)]
        + _SUFFIX_ALPHABET[int(bits[14:9:-1] or "0", 2)]
    )


def restore_id_case(value: str) -> str | None:
    """The case-sensitive form of an 18-character id typed in any case, or None.

    The checksum suffix records which of the first 15 characters are upper case, which is what
    makes 18-character ids safe for case-insensitive systems (Excel, VLOOKUP, email).
    """
    if len(value) != 18:
        return None
    chars: list[str] = []
    for chunk, code in enumerate(value[15:].upper()):
        bits = _SUFFIX_ALPHABET.find(code)
        if bits < 0:
            return None
        for position, char in enumerate(value[chunk * 5 : chunk * 5 + 5]):
            chars.append(char.upper() if bits >> position & 1 else char.lower())
    return "".join(chars) + value[15:].upper()


def make_id(prefix: str, serial: int, pod: str = "5g") -> str:
    """A new 18-character id: key prefix + pod + base-62 serial + checksum."""
    body = ""
    n = serial
    width = 15 - len(prefix) - len(pod)
    for _ in range(width):
        n, digit = divmod(n, 62)
        body = _BASE62[digit] + body
    return id18(prefix + pod + body)


# ---------------------------------------------------------------------------------------------
# Wire formats.


def format_datetime(value: datetime) -> str:
    """Salesforce's JSON datetime: milliseconds and a ``+0000`` offset without a colon."""
    if value.tzinfo is UTC:
        # Stored values are UTC already; isoformat() is C code and ~5x faster than strftime,
        # which matters when a query page formats thousands of timestamps.
        return value.isoformat(timespec="milliseconds")[:-6] + "+0000"
    utc = value.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}+0000"


def format_datetime_bulk(value: datetime) -> str:
    """The datetime form of Bulk API CSV results: milliseconds and ``Z``."""
    utc = value if value.tzinfo is UTC else value.astimezone(UTC)
    return utc.isoformat(timespec="milliseconds")[:-6] + "Z"


_DATETIME_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?"
    r"(Z|[+-]\d{2}:?\d{2})?)?$"
)


def parse_datetime(text_value: str) -> datetime:
    """Parse the datetime strings Salesforce accepts on writes (ISO 8601, ``Z`` or offsets).

    A bare date means midnight UTC; a missing offset means UTC (what the REST API does).
    """
    m = _DATETIME_RE.match(text_value.strip())
    if not m:
        raise ValueError(f"not a datetime: {text_value!r}")
    year, month, day, hh, mm, ss, frac, tz = m.groups()
    micro = int((frac or "0")[:6].ljust(6, "0"))
    naive = datetime(
        int(year), int(month), int(day), int(hh or 0), int(mm or 0), int(ss or 0), micro
    )
    if tz in (None, "Z"):
        return naive.replace(tzinfo=UTC)
    sign = 1 if tz[0] == "+" else -1
    digits = tz[1:].replace(":", "")
    offset_minutes = sign * (int(digits[:2]) * 60 + int(digits[2:]))
    return naive.replace(tzinfo=timezone(timedelta(minutes=offset_minutes))).astimezone(UTC)


def parse_date(text_value: str) -> date:
    value = text_value.strip()
    if "T" in value or " " in value:
        return parse_datetime(value).date()
    return date.fromisoformat(value)


def to_wire(f: FieldDef, value: Any) -> Any:
    """Python storage value → JSON value as Salesforce sends it."""
    if value is None:
        return None
    if f.type == "datetime":
        return format_datetime(value)
    if f.type == "date":
        return value.isoformat()
    if f.type in {"double", "currency", "percent"}:
        return float(value)
    if f.type == "int":
        return int(value)
    return value


def compound_address(f: FieldDef, record: Mapping[str, Any]) -> dict[str, Any] | None:
    """The value of a compound address field (``Address``, ``MailingAddress``...)."""
    prefix = f.name[: -len("Address")]
    parts = {
        "city": record.get(f"{prefix}City"),
        "country": record.get(f"{prefix}Country"),
        "geocodeAccuracy": None,
        "latitude": None,
        "longitude": None,
        "postalCode": record.get(f"{prefix}PostalCode"),
        "state": record.get(f"{prefix}State"),
        "street": record.get(f"{prefix}Street"),
    }
    if all(v is None for v in parts.values()):
        return None
    return parts
