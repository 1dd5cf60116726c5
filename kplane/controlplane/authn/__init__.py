"""Authentication: static token file, ServiceAccount JWTs and the union of authenticators.

Pure logic: inputs are passed in, the caller looks objects up in storage.
"""
