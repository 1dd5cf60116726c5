"""The API aggregation layer (kube-aggregator): APIService, availability,
endpoint resolution, proxy, merged discovery and OpenAPI aggregation."""

from kplane.aggregator.aggregator import Aggregator

__all__ = ["Aggregator"]
