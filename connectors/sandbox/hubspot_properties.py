"""Standard HubSpot property definitions and property groups for the CRM emulator.

The catalogue mirrors what `GET /crm/v3/properties/{objectType}` returns on a fresh Professional
portal for the properties leadsync touches (docs/sandbox-data.md) plus the neighbours a real portal
shows next to them. Labels, types, field types and option values follow HubSpot's defaults; the
`readOnlyValue` flags matter most, because HubSpot rejects writes to those properties
(`READ_ONLY_VALUE`) and the worker must learn that against the sandbox, not in production.

Two deliberate deviations, both driven by the project's data contract rather than HubSpot:
* `numemployees` carries the seven ranges the generator uses (HubSpot's own list splits the top
  range into 1000-5000 / 5000-10000 / 10000+).
* `hs_language` lists a realistic subset of HubSpot's ~100 locales that includes `en` and `ja`.
Company `industry` carries a subset of HubSpot's ~150 industry values that covers every value the
generator emits.
"""

from typing import Any

# All standard definitions share one timestamp: HubSpot reports the portal's creation time for
# built-in properties, which is long before any record.
_DEFINED_AT = "2019-08-06T02:41:52.385Z"

OBJECT_TYPES: tuple[str, ...] = (
    "contacts",
    "companies",
    "deals",
    "emails",
    "calls",
    "meetings",
    "notes",
    "tasks",
)

ENGAGEMENT_TYPES: frozenset[str] = frozenset({"emails", "calls", "meetings", "notes", "tasks"})


def _options(*pairs: tuple[str, str]) -> list[dict[str, Any]]:
    return [
        {"label": label, "value": value, "displayOrder": order, "hidden": False}
        for order, (value, label) in enumerate(pairs)
    ]


_BOOLEAN_OPTIONS = (("true", "Yes"), ("false", "No"))


def _custom(prop: dict[str, Any]) -> dict[str, Any]:
    """A portal's own property: not HubSpot-defined, its definition editable and archivable."""
    return {
        **prop,
        "hubspotDefined": False,
        "modificationMetadata": {
            **prop["modificationMetadata"],
            "archivable": True,
            "readOnlyDefinition": False,
        },
    }


def _prop(
    name: str,
    label: str,
    type_: str,
    field_type: str,
    group: str,
    *,
    options: tuple[tuple[str, str], ...] = (),
    read_only: bool = False,
    calculated: bool = False,
    external_options: bool = False,
    referenced_object_type: str | None = None,
    has_unique_value: bool = False,
    form_field: bool = False,
    description: str = "",
    text_hint: str | None = None,
    display_order: int = -1,
) -> dict[str, Any]:
    prop: dict[str, Any] = {
        "updatedAt": _DEFINED_AT,
        "createdAt": _DEFINED_AT,
        "name": name,
        "label": label,
        "type": type_,
        "fieldType": field_type,
        "description": description,
        "groupName": group,
        "options": _options(*options),
        "displayOrder": display_order,
        "calculated": calculated,
        "externalOptions": external_options,
        "hasUniqueValue": has_unique_value,
        "hidden": False,
        "hubspotDefined": True,
        "modificationMetadata": {
            "archivable": False,
            "readOnlyDefinition": True,
            "readOnlyValue": read_only,
        },
        "formField": form_field,
        "dataSensitivity": "non_sensitive",
        "archived": False,
    }
    if referenced_object_type is not None:
        prop["referencedObjectType"] = referenced_object_type
    if text_hint is not None:
        prop["textDisplayHint"] = text_hint
    return prop


def _text(name: str, label: str, group: str, **kw: Any) -> dict[str, Any]:
    return _prop(name, label, "string", "text", group, **kw)


def _ro_datetime(name: str, label: str, group: str) -> dict[str, Any]:
    return _prop(name, label, "datetime", "date", group, read_only=True, calculated=True)


def _ro_number(name: str, label: str, group: str) -> dict[str, Any]:
    return _prop(name, label, "number", "number", group, read_only=True, calculated=True)


def _owner(group: str) -> dict[str, Any]:
    # Owner options come from the owners API, not from the property definition, so HubSpot marks
    # the property `externalOptions` and does not validate values against `options`.
    return _prop(
        "hubspot_owner_id",
        "Owner",
        "enumeration",
        "select",
        group,
        external_options=True,
        referenced_object_type="OWNER",
        form_field=False,
    )


def _record_id(label: str, group: str) -> dict[str, Any]:
    return _prop("hs_object_id", label, "number", "number", group, read_only=True)


def _merged_ids(label: str, group: str) -> dict[str, Any]:
    return _prop(
        "hs_merged_object_ids",
        label,
        "enumeration",
        "checkbox",
        group,
        read_only=True,
        calculated=True,
    )


_LIFECYCLE_STAGES = (
    ("subscriber", "Subscriber"),
    ("lead", "Lead"),
    ("marketingqualifiedlead", "Marketing Qualified Lead"),
    ("salesqualifiedlead", "Sales Qualified Lead"),
    ("opportunity", "Opportunity"),
    ("customer", "Customer"),
    ("evangelist", "Evangelist"),
    ("other", "Other"),
)

_TRAFFIC_SOURCES = (
    ("ORGANIC_SEARCH", "Organic Search"),
    ("PAID_SEARCH", "Paid Search"),
    ("EMAIL_MARKETING", "Email Marketing"),
    ("SOCIAL_MEDIA", "Organic Social"),
    ("REFERRALS", "Referrals"),
    ("OTHER_CAMPAIGNS", "Other Campaigns"),
    ("DIRECT_TRAFFIC", "Direct Traffic"),
    ("OFFLINE", "Offline Sources"),
    ("PAID_SOCIAL", "Paid Social"),
    ("AI_REFERRALS", "AI Referrals"),
)

_LANGUAGES = (
    ("en", "English"),
    ("ja", "Japanese"),
    ("de", "German"),
    ("es", "Spanish"),
    ("fr", "French"),
    ("it", "Italian"),
    ("ko", "Korean"),
    ("nl", "Dutch"),
    ("pt-br", "Portuguese - Brazil"),
    ("zh-cn", "Chinese - China"),
    ("zh-tw", "Chinese - Taiwan"),
)


def _contact_properties() -> list[dict[str, Any]]:
    ci = "contactinformation"
    return [
        _text("email", "Email", ci, form_field=True, text_hint="email"),
        _prop(
            "hs_additional_emails",
            "Additional email addresses",
            "enumeration",
            "checkbox",
            ci,
            read_only=True,
            description="A set of additional email addresses for a contact",
        ),
        _text("hs_email_domain", "Email Domain", ci, read_only=True, calculated=True),
        _text("salutation", "Salutation", ci, form_field=True),
        _text("firstname", "First Name", ci, form_field=True),
        _text("lastname", "Last Name", ci, form_field=True),
        # Furigana, as Japanese portals add them: custom properties (hubspotDefined false).
        _custom(_text("lastname_kana", "Last name (kana)", ci, form_field=True)),
        _custom(_text("firstname_kana", "First name (kana)", ci, form_field=True)),
        _text("company", "Company Name", ci, form_field=True),
        _text("jobtitle", "Job Title", ci, form_field=True),
        _text("industry", "Industry", ci, form_field=True),
        _prop(
            "numemployees",
            "Number of Employees",
            "enumeration",
            "select",
            ci,
            form_field=True,
            options=(
                ("1-5", "1-5"),
                ("5-25", "5-25"),
                ("25-50", "25-50"),
                ("50-100", "50-100"),
                ("100-500", "100-500"),
                ("500-1000", "500-1000"),
                ("1000+", "1000+"),
            ),
        ),
        _text("annualrevenue", "Annual Revenue", ci, form_field=True),
        _prop(
            "phone",
            "Phone Number",
            "string",
            "phonenumber",
            ci,
            form_field=True,
            text_hint="phone_number",
        ),
        _prop(
            "mobilephone",
            "Mobile Phone Number",
            "string",
            "phonenumber",
            ci,
            form_field=True,
            text_hint="phone_number",
        ),
        _prop("fax", "Fax Number", "string", "phonenumber", ci, form_field=True),
        _text("address", "Street Address", ci, form_field=True),
        _text("city", "City", ci, form_field=True),
        _text("state", "State/Region", ci, form_field=True),
        _text("zip", "Postal Code", ci, form_field=True, text_hint="postal_code"),
        _text("country", "Country/Region", ci, form_field=True),
        _text("website", "Website URL", ci, form_field=True, text_hint="domain_name"),
        _prop(
            "hs_language",
            "Preferred language",
            "enumeration",
            "select",
            ci,
            options=_LANGUAGES,
            form_field=True,
        ),
        _prop(
            "lifecyclestage",
            "Lifecycle Stage",
            "enumeration",
            "radio",
            ci,
            options=_LIFECYCLE_STAGES,
            form_field=True,
        ),
        _prop(
            "hs_lead_status",
            "Lead Status",
            "enumeration",
            "radio",
            ci,
            form_field=True,
            options=(
                ("NEW", "New"),
                ("OPEN", "Open"),
                ("IN_PROGRESS", "In Progress"),
                ("OPEN_DEAL", "Open Deal"),
                ("UNQUALIFIED", "Unqualified"),
                ("ATTEMPTED_TO_CONTACT", "Attempted to Contact"),
                ("CONNECTED", "Connected"),
                ("BAD_TIMING", "Bad Timing"),
            ),
        ),
        _prop(
            "hs_persona",
            "Persona",
            "enumeration",
            "select",
            ci,
            options=(("persona_1", "Persona 1"), ("persona_2", "Persona 2")),
        ),
        _owner(ci),
        _prop("associatedcompanyid", "Primary Associated Company ID", "number", "number", ci),
        _record_id("Record ID", ci),
        _ro_datetime("createdate", "Create Date", ci),
        _ro_datetime("lastmodifieddate", "Last Modified Date", ci),
        _merged_ids("Merged Contact IDs", ci),
        _text("hs_object_source", "Record source", ci, read_only=True, calculated=True),
        # emailinformation
        _prop(
            "hs_email_optout",
            "Unsubscribed from all email",
            "enumeration",
            "booleancheckbox",
            "emailinformation",
            options=_BOOLEAN_OPTIONS,
            read_only=True,
            calculated=True,
        ),
        _ro_number("hs_email_bounce", "Marketing emails bounced", "emailinformation"),
        _ro_number("hs_email_open", "Marketing emails opened", "emailinformation"),
        _ro_number("hs_email_click", "Marketing emails clicked", "emailinformation"),
        _ro_number("hs_email_delivered", "Marketing emails delivered", "emailinformation"),
        _ro_datetime(
            "hs_email_last_open_date", "Last marketing email open date", "emailinformation"
        ),
        # analyticsinformation
        _prop(
            "hs_analytics_source",
            "Original Traffic Source",
            "enumeration",
            "select",
            "analyticsinformation",
            options=_TRAFFIC_SOURCES,
            read_only=True,
            calculated=True,
        ),
        _text(
            "hs_analytics_source_data_1",
            "Original Traffic Source Drill-Down 1",
            "analyticsinformation",
            read_only=True,
            calculated=True,
        ),
        _text(
            "hs_analytics_source_data_2",
            "Original Traffic Source Drill-Down 2",
            "analyticsinformation",
            read_only=True,
            calculated=True,
        ),
        _prop(
            "hs_latest_source",
            "Latest Traffic Source",
            "enumeration",
            "select",
            "analyticsinformation",
            options=_TRAFFIC_SOURCES,
            read_only=True,
            calculated=True,
        ),
        _ro_number("hs_analytics_num_page_views", "Number of Pageviews", "analyticsinformation"),
        _ro_number("hs_analytics_num_visits", "Number of Sessions", "analyticsinformation"),
        _ro_datetime(
            "hs_analytics_last_visit_timestamp", "Time of Last Session", "analyticsinformation"
        ),
        _ro_datetime(
            "hs_analytics_first_visit_timestamp", "Time of First Session", "analyticsinformation"
        ),
        _ro_datetime("hs_analytics_first_timestamp", "Time First Seen", "analyticsinformation"),
        _text(
            "hs_analytics_last_url",
            "Last Page Seen",
            "analyticsinformation",
            read_only=True,
            calculated=True,
        ),
        # conversioninformation
        _text(
            "recent_conversion_event_name",
            "Recent Conversion",
            "conversioninformation",
            read_only=True,
            calculated=True,
        ),
        _ro_datetime("recent_conversion_date", "Recent Conversion Date", "conversioninformation"),
        _text(
            "first_conversion_event_name",
            "First Conversion",
            "conversioninformation",
            read_only=True,
            calculated=True,
        ),
        _ro_datetime("first_conversion_date", "First Conversion Date", "conversioninformation"),
        _ro_number("num_conversion_events", "Number of Form Submissions", "conversioninformation"),
        _ro_number(
            "num_unique_conversion_events",
            "Number of Unique Forms Submitted",
            "conversioninformation",
        ),
        # contact_activity
        _ro_datetime("notes_last_contacted", "Last Contacted", "contact_activity"),
        _ro_datetime("notes_last_updated", "Last Activity Date", "contact_activity"),
        _ro_number("num_contacted_notes", "Number of times contacted", "contact_activity"),
        _ro_number("num_notes", "Number of Sales Activities", "contact_activity"),
        _ro_datetime(
            "hs_last_sales_activity_timestamp", "Last Engagement Date", "contact_activity"
        ),
        # salesforceinformation: written by HubSpot's own Salesforce integration, read-only to
        # every other API caller.
        _text("salesforceleadid", "Salesforce Lead ID", "salesforceinformation", read_only=True),
        _text(
            "salesforcecontactid",
            "Salesforce Contact ID",
            "salesforceinformation",
            read_only=True,
        ),
        _text(
            "salesforceaccountid",
            "Salesforce Account ID",
            "salesforceinformation",
            read_only=True,
        ),
        _ro_datetime(
            "salesforcelastsynctime", "Last Salesforce Sync Time", "salesforceinformation"
        ),
    ]


def _company_properties() -> list[dict[str, Any]]:
    ci = "companyinformation"
    return [
        _text("name", "Company name", ci, form_field=True),
        _text("domain", "Company Domain Name", ci, text_hint="domain_name"),
        _text("website", "Website URL", ci, text_hint="domain_name"),
        _prop(
            "industry",
            "Industry",
            "enumeration",
            "select",
            ci,
            options=(
                ("ACCOUNTING", "Accounting"),
                ("AUTOMOTIVE", "Automotive"),
                ("BANKING", "Banking"),
                ("CHEMICALS", "Chemicals"),
                ("COMPUTER_SOFTWARE", "Computer Software"),
                ("CONSTRUCTION", "Construction"),
                ("EDUCATION_MANAGEMENT", "Education Management"),
                ("ELECTRICAL_ELECTRONIC_MANUFACTURING", "Electrical/Electronic Manufacturing"),
                ("FINANCIAL_SERVICES", "Financial Services"),
                ("FOOD_BEVERAGES", "Food & Beverages"),
                ("HIGHER_EDUCATION", "Higher Education"),
                ("HOSPITAL_HEALTH_CARE", "Hospital & Health Care"),
                ("INFORMATION_TECHNOLOGY_AND_SERVICES", "Information Technology and Services"),
                ("INSURANCE", "Insurance"),
                ("INTERNET", "Internet"),
                ("LOGISTICS_AND_SUPPLY_CHAIN", "Logistics and Supply Chain"),
                ("MACHINERY", "Machinery"),
                ("MANAGEMENT_CONSULTING", "Management Consulting"),
                ("MARKETING_AND_ADVERTISING", "Marketing and Advertising"),
                ("PHARMACEUTICALS", "Pharmaceuticals"),
                ("REAL_ESTATE", "Real Estate"),
                ("RETAIL", "Retail"),
                ("TELECOMMUNICATIONS", "Telecommunications"),
                ("UTILITIES", "Utilities"),
                ("WHOLESALE", "Wholesale"),
            ),
        ),
        _prop(
            "type",
            "Type",
            "enumeration",
            "select",
            ci,
            options=(
                ("PROSPECT", "Prospect"),
                ("PARTNER", "Partner"),
                ("RESELLER", "Reseller"),
                ("VENDOR", "Vendor"),
                ("OTHER", "Other"),
            ),
        ),
        _prop("phone", "Phone Number", "string", "phonenumber", ci, text_hint="phone_number"),
        _text("address", "Street Address", ci),
        _text("city", "City", ci),
        _text("state", "State/Region", ci),
        _text("zip", "Postal Code", ci, text_hint="postal_code"),
        _text("country", "Country/Region", ci),
        _prop("numberofemployees", "Number of Employees", "number", "number", ci),
        _prop("annualrevenue", "Annual Revenue", "number", "number", ci),
        _prop("description", "Description", "string", "textarea", ci),
        _text("founded_year", "Year Founded", ci),
        _text("linkedin_company_page", "LinkedIn Company Page", ci),
        _prop(
            "lifecyclestage",
            "Lifecycle Stage",
            "enumeration",
            "radio",
            ci,
            options=_LIFECYCLE_STAGES,
        ),
        _owner(ci),
        _record_id("Record ID", ci),
        _ro_datetime("createdate", "Create Date", ci),
        _ro_datetime("hs_lastmodifieddate", "Last Modified Date", ci),
        _merged_ids("Merged Company IDs", ci),
        _ro_number("num_associated_contacts", "Number of Associated Contacts", ci),
        _text(
            "salesforceaccountid",
            "Salesforce Account ID",
            "salesforceinformation",
            read_only=True,
        ),
    ]


def _deal_properties() -> list[dict[str, Any]]:
    di = "dealinformation"
    return [
        _text("dealname", "Deal Name", di),
        _prop("amount", "Amount", "number", "number", di),
        _prop("closedate", "Close Date", "datetime", "date", di),
        _prop(
            "pipeline",
            "Pipeline",
            "enumeration",
            "select",
            di,
            options=(("default", "Sales Pipeline"),),
        ),
        _prop(
            "dealstage",
            "Deal Stage",
            "enumeration",
            "radio",
            di,
            options=(
                ("appointmentscheduled", "Appointment Scheduled"),
                ("qualifiedtobuy", "Qualified To Buy"),
                ("presentationscheduled", "Presentation Scheduled"),
                ("decisionmakerboughtin", "Decision Maker Bought-In"),
                ("contractsent", "Contract Sent"),
                ("closedwon", "Closed Won"),
                ("closedlost", "Closed Lost"),
            ),
        ),
        _prop(
            "dealtype",
            "Deal Type",
            "enumeration",
            "radio",
            di,
            options=(("newbusiness", "New Business"), ("existingbusiness", "Existing Business")),
        ),
        _owner(di),
        _record_id("Record ID", di),
        _ro_datetime("createdate", "Create Date", di),
        _ro_datetime("hs_lastmodifieddate", "Last Modified Date", di),
        _merged_ids("Merged Deal IDs", di),
    ]


def _engagement_common(group: str) -> list[dict[str, Any]]:
    return [
        _prop(
            "hs_timestamp",
            "Activity date",
            "datetime",
            "date",
            group,
            description="The time the activity happened; for tasks, the due date.",
        ),
        _owner(group),
        _record_id("Record ID", group),
        _ro_datetime("hs_createdate", "Created at", group),
        _ro_datetime("hs_lastmodifieddate", "Last modified date", group),
        _merged_ids("Merged record IDs", group),
        _text("hs_body_preview", "Body preview", group, read_only=True, calculated=True),
        _prop(
            "hs_attachment_ids",
            "Attached file IDs",
            "enumeration",
            "checkbox",
            group,
            external_options=True,
        ),
    ]


def _email_properties() -> list[dict[str, Any]]:
    g = "email"
    return [
        *_engagement_common(g),
        _prop(
            "hs_email_direction",
            "Email direction",
            "enumeration",
            "select",
            g,
            options=(
                ("EMAIL", "Email sent from CRM"),
                ("INCOMING_EMAIL", "Reply from contact"),
                ("FORWARDED_EMAIL", "Forwarded email"),
            ),
        ),
        _text("hs_email_subject", "Email subject", g),
        _prop("hs_email_text", "Email body (text)", "string", "textarea", g),
        _prop("hs_email_html", "Email body (HTML)", "string", "html", g),
        _prop(
            "hs_email_status",
            "Email send status",
            "enumeration",
            "select",
            g,
            options=(
                ("SENT", "Sent"),
                ("BOUNCED", "Bounced"),
                ("FAILED", "Failed"),
                ("SCHEDULED", "Scheduled"),
                ("SENDING", "Sending"),
            ),
        ),
        _prop("hs_email_headers", "Email headers", "string", "textarea", g),
        _text("hs_email_from_email", "From email", g, read_only=True, calculated=True),
        _text("hs_email_to_email", "To email", g, read_only=True, calculated=True),
    ]


def _call_properties() -> list[dict[str, Any]]:
    g = "call"
    return [
        *_engagement_common(g),
        _text("hs_call_title", "Call title", g),
        _prop("hs_call_body", "Call notes", "string", "html", g),
        _prop(
            "hs_call_direction",
            "Call direction",
            "enumeration",
            "select",
            g,
            options=(("INBOUND", "Inbound"), ("OUTBOUND", "Outbound")),
        ),
        _prop(
            "hs_call_duration",
            "Call duration",
            "number",
            "number",
            g,
            description="Duration of the call in milliseconds.",
        ),
        _prop(
            "hs_call_status",
            "Call status",
            "enumeration",
            "select",
            g,
            options=(
                ("COMPLETED", "Completed"),
                ("BUSY", "Busy"),
                ("NO_ANSWER", "No answer"),
                ("FAILED", "Failed"),
                ("CANCELED", "Canceled"),
                ("IN_PROGRESS", "In progress"),
                ("QUEUED", "Queued"),
                ("RINGING", "Ringing"),
                ("CONNECTING", "Connecting"),
                ("CALLING_CRM_USER", "Calling CRM user"),
            ),
        ),
        _prop(
            "hs_call_disposition",
            "Call outcome",
            "enumeration",
            "select",
            g,
            external_options=True,
        ),
        _prop("hs_call_from_number", "From number", "string", "phonenumber", g),
        _prop("hs_call_to_number", "To number", "string", "phonenumber", g),
        _text("hs_call_recording_url", "Recording URL", g),
    ]


def _meeting_properties() -> list[dict[str, Any]]:
    g = "meeting"
    return [
        *_engagement_common(g),
        _text("hs_meeting_title", "Meeting name", g),
        _prop("hs_meeting_body", "Meeting description", "string", "html", g),
        _prop("hs_internal_meeting_notes", "Internal notes", "string", "html", g),
        _prop("hs_meeting_start_time", "Start time", "datetime", "date", g),
        _prop("hs_meeting_end_time", "End time", "datetime", "date", g),
        _text("hs_meeting_location", "Location", g),
        _prop(
            "hs_meeting_outcome",
            "Meeting outcome",
            "enumeration",
            "select",
            g,
            options=(
                ("SCHEDULED", "Scheduled"),
                ("COMPLETED", "Completed"),
                ("RESCHEDULED", "Rescheduled"),
                ("NO_SHOW", "No Show"),
                ("CANCELED", "Canceled"),
            ),
        ),
    ]


def _note_properties() -> list[dict[str, Any]]:
    g = "note"
    return [
        *_engagement_common(g),
        _prop("hs_note_body", "Note body", "string", "html", g),
    ]


def _task_properties() -> list[dict[str, Any]]:
    g = "task"
    return [
        *_engagement_common(g),
        _text("hs_task_subject", "Task title", g),
        _prop("hs_task_body", "Task notes", "string", "html", g),
        _prop(
            "hs_task_status",
            "Task status",
            "enumeration",
            "select",
            g,
            options=(
                ("NOT_STARTED", "Not started"),
                ("IN_PROGRESS", "In progress"),
                ("WAITING", "Waiting"),
                ("DEFERRED", "Deferred"),
                ("COMPLETED", "Completed"),
            ),
        ),
        _prop(
            "hs_task_priority",
            "Priority",
            "enumeration",
            "select",
            g,
            options=(("NONE", "None"), ("LOW", "Low"), ("MEDIUM", "Medium"), ("HIGH", "High")),
        ),
        _prop(
            "hs_task_type",
            "Task type",
            "enumeration",
            "select",
            g,
            options=(
                ("TODO", "To-do"),
                ("CALL", "Call"),
                ("EMAIL", "Email"),
                ("LINKED_IN", "LinkedIn"),
            ),
        ),
        _ro_datetime("hs_task_completion_date", "Completed at", g),
        _ro_number("hs_task_is_completed", "Number of completed tasks", g),
    ]


def _groups(*pairs: tuple[str, str]) -> list[dict[str, Any]]:
    return [
        {"name": name, "label": label, "displayOrder": order, "archived": False}
        for order, (name, label) in enumerate(pairs)
    ]


def standard_properties() -> dict[str, list[dict[str, Any]]]:
    """Fresh (mutable) copies of the standard property definitions, per object type."""
    return {
        "contacts": _contact_properties(),
        "companies": _company_properties(),
        "deals": _deal_properties(),
        "emails": _email_properties(),
        "calls": _call_properties(),
        "meetings": _meeting_properties(),
        "notes": _note_properties(),
        "tasks": _task_properties(),
    }


def standard_groups() -> dict[str, list[dict[str, Any]]]:
    """Fresh (mutable) copies of the standard property groups, per object type."""
    return {
        "contacts": _groups(
            ("contactinformation", "Contact information"),
            ("emailinformation", "Email information"),
            ("analyticsinformation", "Web analytics history"),
            ("conversioninformation", "Conversion information"),
            ("contact_activity", "Contact activity"),
            ("salesforceinformation", "Salesforce information"),
            ("sales_properties", "Sales properties"),
        ),
        "companies": _groups(
            ("companyinformation", "Company information"),
            ("company_activity", "Company activity"),
            ("salesforceinformation", "Salesforce information"),
        ),
        "deals": _groups(
            ("dealinformation", "Deal information"), ("deal_activity", "Deal activity")
        ),
        "emails": _groups(("email", "Email information"), ("engagement", "Engagement")),
        "calls": _groups(("call", "Call information"), ("engagement", "Engagement")),
        "meetings": _groups(("meeting", "Meeting information"), ("engagement", "Engagement")),
        "notes": _groups(("note", "Note information"), ("engagement", "Engagement")),
        "tasks": _groups(("task", "Task information"), ("engagement", "Engagement")),
    }
