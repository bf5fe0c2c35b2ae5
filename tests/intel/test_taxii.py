"""The TAXII 2.1 server's HTTP surface through Starlette's test client: authentication on every
route, per-peer collections, read-only, media types, error bodies, added_after, pagination,
match filters, manifest, versions, status."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from distillguard.cases.store import CaseStore
from distillguard.intel.publish import default_collection, publish
from distillguard.intel.store import IntelStore
from distillguard.intel.taxii import TAXII_MEDIA_TYPE, Collection, TaxiiServer
from tests.intel.conftest import KEYS, actor_case

SECRET = "lab-b-secret-0123456789"
OTHER_SECRET = "lab-c-secret-0123456789"
COLLECTION = default_collection("lab-a")
HIDDEN = "0d6c6f4a-1111-4222-8333-944455556666"
ROOT = "/distillguard"
OBJECTS = f"{ROOT}/collections/{COLLECTION}/objects/"


def auth(name: str = "lab-b", secret: str = SECRET) -> dict[str, str]:
    token = base64.b64encode(f"{name}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {token}", "Accept": TAXII_MEDIA_TYPE}


def _server(folder: Path) -> Iterator[tuple[TestClient, CaseStore, IntelStore]]:
    cases = CaseStore.open(str(folder / "a.db"))
    intel = IntelStore.open(cases)
    cases.upsert(actor_case())
    cases.decide(1, "ivy", "ban", "three accounts, one card, judge harvesting", {})
    publish(cases, intel, KEYS, "lab-a", COLLECTION)
    intel.add_peer("lab-b", SECRET, [COLLECTION])
    intel.add_peer("lab-c", OTHER_SECRET, [HIDDEN])
    server = TaxiiServer(
        intel,
        [Collection(COLLECTION, "actors", "lab-a's actors"), Collection(HIDDEN, "other", "not for lab-b")],
        title="DistillGuard TAXII (lab-a)",
    )
    with TestClient(server.asgi(), base_url="http://testserver") as client:
        yield client, cases, intel
    cases.close()


@pytest.fixture(scope="module")
def reader(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, CaseStore, IntelStore]]:
    """One server for the tests that only read (argon2 hashing per test would dominate the run)."""
    yield from _server(tmp_path_factory.mktemp("taxii"))


@pytest.fixture
def taxii(tmp_path: Path) -> Iterator[tuple[TestClient, CaseStore, IntelStore]]:
    """A server of its own, for tests that change the data or the lockout state."""
    yield from _server(tmp_path)


def error_of(answer: Any, status: int) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == TAXII_MEDIA_TYPE
    body: dict[str, Any] = answer.json()
    assert body["http_status"] == str(status) and body["title"]
    return body


ROUTES = [
    "/taxii2/",
    f"{ROOT}/",
    f"{ROOT}/collections/",
    f"{ROOT}/collections/{COLLECTION}/",
    OBJECTS,
    f"{ROOT}/collections/{COLLECTION}/manifest/",
    f"{ROOT}/status/5f4d3c2b-1a09-4877-8665-544332211000/",
]


@pytest.mark.parametrize("path", ROUTES)
@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer x"},
        {"Authorization": "Basic !!!"},
        {"Authorization": "Basic " + base64.b64encode(b"no-colon").decode()},
        auth(name="intruder", secret="wrong-secret-0000"),
        auth(name="nobody"),
    ],
)
def test_every_route_needs_a_peer(reader: Any, path: str, headers: dict[str, str]) -> None:
    answer = reader[0].get(path, headers=headers)
    if answer.status_code == 429:  # a name that kept failing is locked out, which is no better
        error_of(answer, 429)
        return
    error_of(answer, 401)
    assert answer.headers["www-authenticate"].startswith("Basic realm=")
    assert SECRET not in answer.text


def test_discovery_root_and_collections(reader: Any) -> None:
    client = reader[0]
    discovery = client.get("/taxii2/", headers=auth())
    assert discovery.headers["content-type"] == TAXII_MEDIA_TYPE
    assert discovery.json()["api_roots"] == ["http://testserver/distillguard/"]
    root = client.get(f"{ROOT}/", headers=auth()).json()
    assert root["versions"] == [TAXII_MEDIA_TYPE]
    listed = client.get(f"{ROOT}/collections/", headers=auth()).json()["collections"]
    assert [c["id"] for c in listed] == [COLLECTION]  # lab-b does not see lab-c's collection
    assert listed[0]["can_read"] is True and listed[0]["can_write"] is False
    assert listed[0]["media_types"] == ["application/stix+json;version=2.1"]
    error_of(client.get(f"{ROOT}/collections/{HIDDEN}/", headers=auth()), 404)
    error_of(client.get(f"{ROOT}/collections/{HIDDEN}/objects/", headers=auth()), 404)
    error_of(client.get("/other-root/collections/", headers=auth()), 404)


@pytest.mark.parametrize("method", ["post", "put", "delete"])
@pytest.mark.parametrize("path", [OBJECTS, f"{ROOT}/collections/{COLLECTION}/", "/taxii2/"])
def test_read_only(reader: Any, method: str, path: str) -> None:
    answer = getattr(reader[0], method)(path, headers={**auth(), "Content-Type": TAXII_MEDIA_TYPE})
    if method == "put" and path != "/taxii2/":
        error_of(answer, 405)
    else:
        error_of(answer, 403)


@pytest.mark.parametrize(
    ("accept", "status"),
    [
        (TAXII_MEDIA_TYPE, 200),
        ("application/taxii+json", 200),
        ("*/*", 200),
        ("application/json", 406),
        ("application/taxii+json;version=2.0", 406),
        ("text/html, application/xhtml+xml", 406),
    ],
)
def test_media_types(reader: Any, accept: str, status: int) -> None:
    answer = reader[0].get(OBJECTS, headers={**auth(), "Accept": accept})
    assert answer.status_code == status
    assert answer.headers["content-type"] == TAXII_MEDIA_TYPE


def test_objects_pages_and_added_after(taxii: Any) -> None:
    client, cases, intel = taxii
    everything = client.get(OBJECTS, headers=auth()).json()
    assert everything["more"] is False and len(everything["objects"]) == 20
    seen: list[str] = []
    params: dict[str, str] = {"limit": "6"}
    while True:
        page = client.get(OBJECTS, headers=auth(), params=params)
        body = page.json()
        seen += [o["id"] for o in body.get("objects", [])]
        assert page.headers["x-taxii-date-added-first"] <= page.headers["x-taxii-date-added-last"]
        if not body["more"]:
            break
        params = {"limit": "6", "next": body["next"]}
    assert sorted(seen) == sorted(o["id"] for o in everything["objects"])
    last = client.get(OBJECTS, headers=auth()).headers["x-taxii-date-added-last"]
    assert client.get(OBJECTS, headers=auth(), params={"added_after": last}).json() == {"more": False}
    cases.set_withhold(1, "ivy", True)
    publish(cases, intel, KEYS, "lab-a", COLLECTION)
    newer = client.get(OBJECTS, headers=auth(), params={"added_after": last}).json()["objects"]
    assert len(newer) == 17 and all(o["revoked"] for o in newer)
    # which of our cases lab-b fetched, for the review UI
    assert intel.shared_of_case(1)["deliveries"][0]["peer"] == "lab-b"


def test_match_filters_manifest_and_versions(taxii: Any) -> None:
    client, cases, intel = taxii
    indicators = client.get(OBJECTS, headers=auth(), params={"match[type]": "indicator"}).json()["objects"]
    assert len(indicators) == 5 and {o["type"] for o in indicators} == {"indicator"}
    one = indicators[0]["id"]
    assert [
        o["id"] for o in client.get(OBJECTS, headers=auth(), params={"match[id]": one}).json()["objects"]
    ] == [one]
    assert client.get(OBJECTS, headers=auth(), params={"match[spec_version]": "2.0"}).json() == {
        "more": False
    }
    manifest = client.get(f"{ROOT}/collections/{COLLECTION}/manifest/", headers=auth()).json()["objects"]
    assert len(manifest) == 20 and set(manifest[0]) == {"id", "date_added", "version", "media_type"}
    cases.set_withhold(1, "ivy", True)
    publish(cases, intel, KEYS, "lab-a", COLLECTION)
    versions = client.get(f"{OBJECTS}{one}/versions/", headers=auth()).json()["versions"]
    assert len(versions) == 2 and versions == sorted(versions)
    latest = client.get(f"{OBJECTS}{one}/", headers=auth()).json()["objects"]
    assert len(latest) == 1 and latest[0]["revoked"] is True
    both = client.get(f"{OBJECTS}{one}/", headers=auth(), params={"match[version]": "all"}).json()["objects"]
    first = client.get(f"{OBJECTS}{one}/", headers=auth(), params={"match[version]": "first"}).json()[
        "objects"
    ]
    assert len(both) == 2 and "revoked" not in first[0]
    exact = client.get(f"{OBJECTS}{one}/", headers=auth(), params={"match[version]": versions[0]}).json()
    assert exact["objects"][0]["modified"][:19] == versions[0][:19]
    error_of(client.get(f"{OBJECTS}indicator--00000000-0000-4000-8000-000000000000/", headers=auth()), 404)
    error_of(client.get(f"{OBJECTS}not-an-id/", headers=auth()), 404)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "many"}, "limit"),
        ({"added_after": "yesterday"}, "added_after"),
        ({"added_after": "2026-01-01T00:00:00"}, "time zone"),
        ({"next": "not-a-cursor"}, "next"),
        ({"next": base64.urlsafe_b64encode(b'{"a": 1}').decode()}, "next"),
        ({"match[id]": "'; DROP TABLE intel_objects; --"}, "match[id]"),
        ({"match[type]": "Indicator"}, "match[type]"),
        ({"match[version]": "newest"}, "match[version]"),
        ({"match[colour]": "red"}, "match[colour]"),
        ({"match[id]": ",".join(["indicator--00000000-0000-4000-8000-000000000000"] * 101)}, "match[id]"),
    ],
)
def test_bad_parameters_are_400_naming_the_field(reader: Any, params: dict[str, str], field: str) -> None:
    body = error_of(reader[0].get(OBJECTS, headers=auth(), params=params), 400)
    assert field in body["description"] or field in body["title"]


def test_repeated_parameter_is_400(reader: Any) -> None:
    error_of(reader[0].get(OBJECTS + "?limit=1&limit=2", headers=auth()), 400)


def test_status_and_unknown_routes(reader: Any) -> None:
    client = reader[0]
    error_of(client.get(f"{ROOT}/status/5f4d3c2b-1a09-4877-8665-544332211000/", headers=auth()), 404)
    error_of(client.get("/", headers=auth()), 404)
    # TAXII URLs end with a slash: without it, a redirect to it
    bare = client.get(f"{ROOT}/collections/{COLLECTION}/objects", headers=auth(), follow_redirects=False)
    assert bare.status_code == 307 and bare.headers["location"].endswith("/objects/")


def test_lockout_after_failed_attempts(taxii: Any) -> None:
    client = taxii[0]
    for _ in range(5):
        error_of(client.get("/taxii2/", headers=auth(secret="wrong-secret-0000")), 401)
    error_of(client.get("/taxii2/", headers=auth()), 429)  # locked a minute for this name, here
    assert client.get("/taxii2/", headers=auth("lab-c", OTHER_SECRET)).status_code == 200


def test_security_headers(reader: Any) -> None:
    answer = reader[0].get("/taxii2/", headers=auth())
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["cache-control"] == "no-store"
    assert "default-src 'none'" in answer.headers["content-security-policy"]
    assert json.loads(answer.text)["title"]
