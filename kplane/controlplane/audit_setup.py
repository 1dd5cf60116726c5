"""kplane's audit log from the `serve` options (--audit-policy-file, --audit-log-*):

    auditor = install_audit(server, options, aggregator)   # None when auditing is off
    auditor.close()                                         # after the server stopped: flush

Requests the aggregator proxies are audited like any other; as kube-apiserver's own log,
their events carry no requestObject/responseObject (kplane does not decode those bodies).
"""

from __future__ import annotations

from typing import Any

from kplane.apiserver.audit import Auditor, PolicyError, new_auditor


def install_audit(server: Any, options: Any, aggregator: Any = None) -> Auditor | None:
    def proxied(info: Any) -> bool:
        proxy = getattr(aggregator, "proxy", None)
        targets = getattr(proxy, "targets", None) or {}
        return (info.api_group, info.api_version) in targets

    try:
        auditor = new_auditor(options.audit_policy_file, options.audit_log_path,
                              max_size_mb=options.audit_log_maxsize, max_backups=options.audit_log_maxbackup,
                              max_age_days=options.audit_log_maxage,
                              proxied=proxied if aggregator is not None else None)
    except PolicyError as e:
        raise SystemExit(f"kplane: --audit-policy-file: {e}") from None
    except OSError as e:
        raise SystemExit(f"kplane: --audit-log-path: {e}") from None
    server.audit = auditor
    return auditor
