"""Ask for client certificates without letting the TLS handshake judge them.

kube-apiserver requests a client certificate during the handshake but
verifies it in its x509 authenticator, so a certificate from an unknown CA or
an expired one is answered with an HTTP 401 Status, not a TLS alert. Python's
`ssl` verifies during the handshake and has no verify callback. This module
installs one through OpenSSL's `SSL_CTX_set_verify` (via ctypes) that accepts
every chain; the authenticators then check the certificate themselves
(`authn_requestheader.issued_by`: signature by a trusted CA, validity window,
client-auth usage). Nothing else may trust `getpeercert()` on such a context.

If the OpenSSL symbols cannot be found, or the context layout is not the
expected one, nothing is changed and the handshake keeps verifying (bad
certificates then fail the handshake rather than answering 401).
"""

from __future__ import annotations

import ctypes
import logging
import ssl

log = logging.getLogger("kplane.tls")

_SSL_VERIFY_PEER = 0x01
_VERIFY_CB = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_void_p)


@_VERIFY_CB
def _accept_any_chain(preverify_ok: int, store_ctx: int) -> int:
    return 1


def defer_client_cert_verification(ctx: ssl.SSLContext) -> bool:
    """Make `ctx` request client certificates but accept any chain. Returns False if it could not."""
    try:
        import _ssl

        lib = ctypes.CDLL(_ssl.__file__)
        set_verify = lib.SSL_CTX_set_verify
        get_mode = lib.SSL_CTX_get_verify_mode
    except (OSError, AttributeError):
        log.warning("OpenSSL verify callback unavailable: bad client certificates fail the TLS handshake")
        return False
    set_verify.argtypes = [ctypes.c_void_p, ctypes.c_int, _VERIFY_CB]
    set_verify.restype = None
    get_mode.argtypes = [ctypes.c_void_p]
    get_mode.restype = ctypes.c_int
    ctx.verify_mode = ssl.CERT_OPTIONAL
    # CPython's PySSLContext starts with the SSL_CTX pointer right after PyObject_HEAD.
    ssl_ctx = ctypes.c_void_p.from_address(id(ctx) + object.__basicsize__).value
    if not ssl_ctx or get_mode(ssl_ctx) != _SSL_VERIFY_PEER:
        log.warning("unexpected SSLContext layout: bad client certificates fail the TLS handshake")
        return False
    set_verify(ssl_ctx, _SSL_VERIFY_PEER, _accept_any_chain)
    return True
