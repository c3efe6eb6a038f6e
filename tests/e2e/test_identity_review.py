"""End to end: identity decisions through the CLI, applied by the next sync, and the incremental
identity path (a quiet re-sync matches no record again)."""

import json
from collections.abc import Iterator

import polars as pl
import pytest
import requests
from typer.testing import CliRunner

from connectors.sandbox.server import Sandboxes
from orchestration.cli import app
from orchestration.defs import frames
from orchestration.runner import run_sync
from orchestration.store import StateStore
from tests.e2e.conftest import db_url_in, worker_env

pytestmark = pytest.mark.e2e

cli = CliRunner()


@pytest.fixture(scope="module")
def box(backend: str) -> Iterator[Sandboxes]:  # fresh CRMs for each backend's runs
    with Sandboxes(size=300, seed=23) as sandboxes:
        yield sandboxes


@pytest.fixture(scope="module")
def env(
    box: Sandboxes, tmp_path_factory: pytest.TempPathFactory, backend: str
) -> Iterator[StateStore]:
    db_url = db_url_in(tmp_path_factory, backend=backend)
    with worker_env(box, db_url):
        assert run_sync().success
        yield StateStore(db_url)


def _identity_meta(store: StateStore) -> dict[str, object]:
    return store.read_frame("identity_settings").to_dicts()[0]


def _cluster_of(store: StateStore, record_id: str) -> set[str]:
    ident = frames.read(store, "identity")
    uid = ident.filter(pl.col("record_id") == record_id)["unified_id"].item()
    return set(ident.filter(pl.col("unified_id") == uid)["record_id"].to_list())


def test_review_lists_pending_pairs_and_a_decision_is_applied(env: StateStore) -> None:
    listed = cli.invoke(app, ["review", "--json", "--limit", "5"])
    assert listed.exit_code == 0, listed.output
    pending = json.loads(listed.output)
    assert pending["pending"] > 0
    pair = pending["pairs"][0]
    a, b = pair["record_a"], pair["record_b"]
    assert b not in _cluster_of(env, a)

    accepted = cli.invoke(app, ["review", "accept", a, b, "--by", "ops@example.com"])
    assert accepted.exit_code == 0, accepted.output
    assert run_sync().success
    assert b in _cluster_of(env, a)
    # The decided pair no longer waits, nor does any pair it settled (another record of a's
    # lead against b is inside one lead now).
    after = json.loads(cli.invoke(app, ["review", "--json"]).output)
    assert after["pending"] < pending["pending"]
    lead = _cluster_of(env, a)
    waiting = [(p["record_a"], p["record_b"]) for p in after["pairs"]]
    assert not [(x, y) for x, y in waiting if x in lead and y in lead]

    rejected = cli.invoke(app, ["review", "reject", a, b, "--note", "two people"])
    assert rejected.exit_code == 0
    assert run_sync().success
    assert b not in _cluster_of(env, a)


def test_unmerge_splits_a_cluster_for_good(env: StateStore) -> None:
    pairs = frames.read(env, "identity_pairs")
    email_pair = pairs.filter(pl.col("rule") == "email").row(0, named=True)
    a, b = email_pair["record_a"], email_pair["record_b"]
    uid = frames.read(env, "identity").filter(pl.col("record_id") == a)["unified_id"].item()
    result = cli.invoke(app, ["unmerge", uid, b, "--by", "ops@example.com"])
    assert result.exit_code == 0, result.output
    assert run_sync().success
    assert b not in _cluster_of(env, a)
    assert run_sync().success  # and stays apart
    assert b not in _cluster_of(env, a)

    bad = cli.invoke(app, ["unmerge", uid, "hubspot:contacts:nope"])
    assert bad.exit_code == 1
    assert "not part of" in bad.output


def test_a_quiet_resync_matches_incrementally(env: StateStore) -> None:
    first = run_sync()
    assert first.success
    before = frames.read(env, "identity")
    quiet = run_sync()
    assert quiet.success
    # Nothing changed in the CRMs, so identity matched no record again and changed nothing.
    assert quiet.identity["mode"] == "incremental"
    assert quiet.identity["records_matched"] == 0
    after = frames.read(env, "identity")
    assert before.sort("record_id").equals(after.sort("record_id"))
    # accept, reject, and one cut per record left behind by the unmerge
    assert int(str(_identity_meta(env)["decisions"])) >= 3


def test_a_changed_contact_is_matched_alone(box: Sandboxes, env: StateStore) -> None:
    links = ("salesforceleadid", "salesforcecontactid", "hs_merged_object_ids")
    contact = next(
        c for c in box.hubspot.records("contacts") if not any(c["properties"].get(k) for k in links)
    )
    env_vars = box.env()
    session = requests.Session()
    session.trust_env = False
    response = session.patch(
        f"{env_vars['HUBSPOT_BASE_URL']}/crm/v3/objects/contacts/{contact['id']}",
        headers={"Authorization": f"Bearer {env_vars['HUBSPOT_ACCESS_TOKEN']}"},
        json={"properties": {"email": "someone.new@example.org", "firstname": "Zelda"}},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    summary = run_sync()
    assert summary.success
    assert summary.identity["mode"] == "incremental"
    assert summary.identity["records_matched"] == 1
    record_id = f"hubspot:contacts:{contact['id']}"
    stored = frames.read(env, "identity_records").filter(pl.col("record_id") == record_id)
    assert stored["email"].to_list() == ["someone.new@example.org"]
    assert stored["given_key"].to_list() == ["zelda"]


def test_unknown_records_are_refused(env: StateStore) -> None:
    result = cli.invoke(app, ["review", "accept", "a:b:c", "d:e:f"])
    assert result.exit_code == 1
    assert "unknown record" in result.output
