"""Account linking: shared indicators join accounts into actor clusters, with evidence on every edge."""

from distillguard.linking.actor_cluster import (
    CLUSTER_FEATURES,
    ActorCluster,
    KnownActor,
    LinkEdge,
    account_indicators,
    actor_of,
    cluster_features,
    link,
)
from distillguard.linking.config import LinkConfig, LinkConfigError, load_link_config
from distillguard.linking.indicator import Indicator

__all__ = [
    "CLUSTER_FEATURES",
    "ActorCluster",
    "Indicator",
    "KnownActor",
    "LinkConfig",
    "LinkConfigError",
    "LinkEdge",
    "account_indicators",
    "actor_of",
    "cluster_features",
    "link",
    "load_link_config",
]
