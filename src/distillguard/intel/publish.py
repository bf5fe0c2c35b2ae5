"""Our decided cases into the TAXII collection (and into bundle files): the one place that joins
the export (records) and the STIX boundary."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from distillguard.cases.store import CaseStore
from distillguard.events.model import Account
from distillguard.intel.community_key import CommunityKeys
from distillguard.intel.export import NAMESPACE, shared_actors
from distillguard.intel.records import SharedActor
from distillguard.intel.stix import DEFAULT_TLP, actor_objects, bundle, common_objects, revoke
from distillguard.intel.store import IntelStore, Published


def default_collection(deployment: str) -> str:
    """The collection id a deployment serves its actors in, unless told otherwise (stable)."""
    return str(uuid.uuid5(NAMESPACE, f"{deployment}/collection/actors"))


def publish(
    cases: CaseStore,
    intel: IntelStore,
    keys: CommunityKeys,
    deployment: str,
    collection_id: str,
    *,
    accounts: Mapping[str, Account] | None = None,
    tlp: str = DEFAULT_TLP,
) -> Published:
    """Bring the collection in line with the decided, not withheld cases."""
    actors = shared_actors(cases, keys, deployment, accounts=accounts)
    desired = common_objects(deployment, tlp) + [o for a in actors for o in actor_objects(a, deployment, tlp)]
    return intel.publish(collection_id, desired, revoke)


def export_bundle(
    cases: CaseStore,
    keys: CommunityKeys,
    deployment: str,
    *,
    accounts: Mapping[str, Account] | None = None,
    tlp: str = DEFAULT_TLP,
) -> tuple[dict[str, Any], list[SharedActor]]:
    """A STIX 2.1 bundle of every decided, not withheld case, as of its decision."""
    actors = shared_actors(cases, keys, deployment, accounts=accounts)
    objects = common_objects(deployment, tlp) + [o for a in actors for o in actor_objects(a, deployment, tlp)]
    return bundle(objects), actors
