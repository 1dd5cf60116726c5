"""Static bearer tokens from a CSV file (--token-auth-file), as
k8s.io/apiserver/pkg/authentication/token/tokenfile does it.

Each record is `token,user,uid[,"group1,group2,..."]`; extra columns are ignored. Records with an
empty token are skipped; a repeated token keeps its last record. Groups are split on "," verbatim
(no trimming), so an empty fourth column yields the single group "" exactly as upstream.
"""

from __future__ import annotations

import csv
import io
import logging
from pathlib import Path

from kplane.apiserver.auth import UserInfo

log = logging.getLogger(__name__)


class TokenFileAuthenticator:
    def __init__(self, tokens: dict[str, UserInfo]) -> None:
        self._tokens = dict(tokens)

    @classmethod
    def from_file(cls, path: str | Path) -> TokenFileAuthenticator:
        return cls.from_csv(Path(path).read_text(encoding="utf-8"), str(path))

    @classmethod
    def from_csv(cls, text: str, path: str = "") -> TokenFileAuthenticator:
        """Parse CSV text. Raises ValueError with upstream's message for a record under 3 columns."""
        tokens: dict[str, UserInfo] = {}
        record_num = 0
        for record in csv.reader(io.StringIO(text)):
            if not record:  # encoding/csv skips blank lines
                continue
            if len(record) < 3:
                raise ValueError(f"token file '{path}' must have at least 3 columns "
                                 f"(token, user name, user uid), found {len(record)}")
            record_num += 1
            token = record[0]
            if not token:
                log.warning("event=empty_token file=%s record=%d", path, record_num)
                continue
            if token in tokens:
                log.warning("event=duplicate_token file=%s record=%d", path, record_num)
            groups = tuple(record[3].split(",")) if len(record) >= 4 else ()
            tokens[token] = UserInfo(name=record[1], uid=record[2], groups=groups)
        return cls(tokens)

    def authenticate(self, token: str) -> UserInfo | None:
        # A map lookup, as upstream.
        return self._tokens.get(token)

    def __len__(self) -> int:
        return len(self._tokens)
