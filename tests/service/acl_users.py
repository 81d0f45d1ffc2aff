"""docker/redis/users.acl as the tests load it: passwords of the test's own for every role, and an
admin user that only the tests' copy holds (it reads Redis's ACL LOG and cleans up)."""

from __future__ import annotations

import secrets

from docker.redis.acl import ACL_FILE, ROLES, password_digest, with_passwords

ADMIN_USER = "prerank-test-admin"
PASSWORD_BYTES = 24  # random bytes of each test password


def new_passwords() -> dict[str, str]:
    """A fresh random password for every role and for the admin."""
    return {user: secrets.token_urlsafe(PASSWORD_BYTES) for user in (*ROLES, ADMIN_USER)}


def acl_with_admin(passwords: dict[str, str]) -> str:
    """users.acl with `passwords` for its roles, and the admin user."""
    roles = with_passwords(ACL_FILE.read_text(), {role: passwords[role] for role in ROLES})
    admin = f"user {ADMIN_USER} on #{password_digest(passwords[ADMIN_USER])} ~* &* +@all"
    return f"{roles}{admin}\n"
