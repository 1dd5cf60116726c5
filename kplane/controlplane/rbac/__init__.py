"""RBAC: the authorizer, ClusterRole aggregation, escalation prevention and the bootstrap policy.

Pure logic over plain rbac.authorization.k8s.io/v1 dicts; storage and HTTP are the caller's.
"""
