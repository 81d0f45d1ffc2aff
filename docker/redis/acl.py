"""docker/redis/users.acl with passwords of one's own: each role's line keeps its rules and gets
the sha256 digest of a password read from a file (a container secret), never the password.

``python -m docker.redis.acl --password-file prerank-service=/run/secrets/service ... > users.acl``
(every role given, or the file is refused: a role left with the shipped digest stays locked)."""

from __future__ import annotations

import argparse
import hashlib
import re
import sys
from collections.abc import Mapping
from pathlib import Path

ACL_FILE = Path(__file__).with_name("users.acl")
# One user per role, as users.acl names them; the default user is disabled there.
SERVICE_USER = "prerank-service"
PUBLISHER_USER = "prerank-publisher"
CONSUMER_USER = "prerank-consumer"
ROLES = (SERVICE_USER, PUBLISHER_USER, CONSUMER_USER)
# `user <name> ... #<sha256 hex> ...`: the password digest of one user's line
USER_LINE = re.compile(r"^user (?P<user>\S+) ")
DIGEST = re.compile(r"(?<=\s)#[0-9a-f]{64}(?=\s|$)")


def password_digest(password: str) -> str:
    """The digest Redis compares a password with (`#<sha256 hex>` in an ACL file)."""
    return hashlib.sha256(password.encode()).hexdigest()


def user_of(line: str) -> str | None:
    """The user an ACL file's line defines (None for a line that defines none)."""
    match = USER_LINE.match(line)
    return None if match is None else match["user"]


def with_passwords(acl: str, passwords: Mapping[str, str]) -> str:
    """`acl` (an ACL file's text) with the password digest of each user in `passwords` replaced by
    that of its password; ValueError naming a user the file lacks, or whose line has not exactly
    one digest."""
    lines = acl.splitlines()
    for user, password in passwords.items():
        if not password:
            raise ValueError(f"{user}: empty password")
        index = next((i for i, line in enumerate(lines) if user_of(line) == user), None)
        if index is None:
            raise ValueError(f"{user}: no such user in the ACL file")
        line, count = DIGEST.subn(f"#{password_digest(password)}", lines[index])
        if count != 1:
            raise ValueError(f"{user}: its line holds {count} password digests, not one")
        lines[index] = line
    return "\n".join(lines) + "\n"


def read_password(path: Path) -> str:
    """A password file's content (a trailing newline, as `echo` writes one, is not part of it)."""
    return path.read_text().rstrip("\r\n")


def role_file(text: str) -> tuple[str, Path]:
    user, sep, path = text.partition("=")
    if not sep or user not in ROLES:
        raise argparse.ArgumentTypeError(f"{text}: expected ROLE=FILE, ROLE one of {ROLES}")
    return user, Path(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m docker.redis.acl",
        description="Write docker/redis/users.acl to stdout, each role's password digest taken "
        "from a password file.",
    )
    parser.add_argument(
        "--password-file",
        type=role_file,
        action="append",
        default=[],
        metavar="ROLE=FILE",
        help=f"one per role ({', '.join(ROLES)})",
    )
    parser.add_argument("--acl", type=Path, default=ACL_FILE, help="the ACL file to start from")
    args = parser.parse_args(argv)
    given = dict(args.password_file)
    missing = [role for role in ROLES if role not in given]
    if missing:
        print(f"error: no --password-file for {', '.join(missing)}", file=sys.stderr)
        return 2
    try:
        passwords = {user: read_password(path) for user, path in given.items()}
        sys.stdout.write(with_passwords(args.acl.read_text(), passwords))
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
