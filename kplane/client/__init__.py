"""A small async client used inside kplane (extension server -> main server, controllers)."""

from kplane.client.client import ApiError, Client, resource_path
from kplane.client.kubeconfig import KubeConfig, load_kubeconfig

__all__ = ["ApiError", "Client", "KubeConfig", "load_kubeconfig", "resource_path"]
