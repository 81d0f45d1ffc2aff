"""Credentials kept out of every output: a connection URL is shown with its password masked, and
the process's known secrets are masked in every log record and uncaught traceback it writes."""

from __future__ import annotations

import logging
import re
import sys
import traceback
from collections.abc import Iterable
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

MASK = "***"
# Query parameters redis-py passes on as connection arguments, so `?password=` authenticates too.
SECRET_QUERY_PARAMETERS = frozenset({"password"})
# `scheme://user:password@` anywhere in a text, for text that is not one URL (a message, a log
# line): the password ends at the last `@` before the host, as urlsplit reads it.
URL_CREDENTIALS = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:@/\s]*):[^\s/]*@")


def redact_url(url: str) -> str:
    """`url` with its password (and a `password` query parameter) masked:
    ``redis://admin:pw@host:6379/0`` -> ``redis://admin:***@host:6379/0``; a URL without one
    comes back unchanged."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:  # not parseable as a URL: mask whatever looks like credentials
        return URL_CREDENTIALS.sub(rf"\g<head>:{MASK}@", url)
    netloc = parts.netloc
    if password is not None:
        userinfo, _, host = netloc.rpartition("@")
        netloc = f"{userinfo.partition(':')[0]}:{MASK}@{host}"
    query = parts.query
    pairs = parse_qsl(query, keep_blank_values=True)
    if any(name in SECRET_QUERY_PARAMETERS for name, _ in pairs):
        masked = [(name, MASK if name in SECRET_QUERY_PARAMETERS else v) for name, v in pairs]
        query = urlencode(masked, safe="*")
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def url_secrets(url: str) -> tuple[str, ...]:
    """The secrets a connection URL carries (its password and `password` query parameter), as
    written and percent-decoded, for `mask_secrets`."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return ()
    found = [password] if password else []
    found += [v for name, v in parse_qsl(parts.query) if name in SECRET_QUERY_PARAMETERS and v]
    return tuple({form for secret in found for form in (secret, unquote(secret))})


def mask_text(text: str, secrets: Iterable[str]) -> str:
    """`text` with every occurrence of each secret, and any URL's password, masked."""
    # longest first: a secret that contains another is masked whole
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, MASK)
    return URL_CREDENTIALS.sub(rf"\g<head>:{MASK}@", text)


class SecretMask:
    """The secrets this process must never write, and the hooks that mask them: a log-record
    factory (every logger, uvicorn's and redis-py's included, whatever handlers are configured
    later) and `sys.excepthook` (a traceback that ends the process)."""

    def __init__(self) -> None:
        self.secrets: frozenset[str] = frozenset()
        self._installed = False

    def add(self, secrets: Iterable[str]) -> None:
        """Mask `secrets` from now on (the hooks are installed once, on the first secret)."""
        self.secrets |= {s for s in secrets if s}
        if self.secrets and not self._installed:
            self._install()

    def _install(self) -> None:
        self._installed = True
        make_record = logging.getLogRecordFactory()

        def masked_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
            return self.mask_record(make_record(*args, **kwargs))

        logging.setLogRecordFactory(masked_record)
        show_exception = sys.excepthook

        def masked_excepthook(
            kind: type[BaseException], error: BaseException, trace: TracebackType | None
        ) -> None:
            text = "".join(traceback.format_exception(kind, error, trace))
            if mask_text(text, self.secrets) == text:
                show_exception(kind, error, trace)
                return
            sys.stderr.write(mask_text(text, self.secrets))

        sys.excepthook = masked_excepthook

    def mask_record(self, record: logging.LogRecord) -> logging.LogRecord:
        """The record with its message, traceback and stack masked (formatted here, once)."""
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a malformed call: logging reports it when it emits
            return record
        masked = mask_text(message, self.secrets)
        if masked != message:  # others keep their args (uvicorn's access formatter reads them)
            record.msg, record.args = masked, None
            record.__dict__.pop("color_message", None)  # uvicorn's coloured copy of the message
        if record.exc_info and not record.exc_text:
            formatted = logging.Formatter().formatException(record.exc_info)
            record.exc_text = mask_text(formatted, self.secrets)
        if record.stack_info:
            record.stack_info = mask_text(record.stack_info, self.secrets)
        return record


# One per process: the secrets of every settings object an entry point loaded.
PROCESS_MASK = SecretMask()


def mask_secrets(secrets: Iterable[str]) -> None:
    """From now on, mask `secrets` in every log record and uncaught traceback of this process."""
    PROCESS_MASK.add(secrets)
