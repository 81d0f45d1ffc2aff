"""The three ways a Redis password reaches the settings (in the URL, as a setting, in a file), as
the PRERANK_* variables of a process."""

from __future__ import annotations

from pathlib import Path

from prerank_contract.settings import ENV_PREFIX

WAYS = ("url", "setting", "file")


def credentials_env(
    way: str, address: str, user: str, password: str, folder: Path
) -> dict[str, str]:
    """PRERANK_* reaching the Redis at `address` (host:port) as `user` with `password` given
    `way`; the file way writes the password file into `folder`, with a trailing newline as `echo`
    writes it."""
    if way == "url":
        return {f"{ENV_PREFIX}REDIS_URL": f"redis://{user}:{password}@{address}/0"}
    apart = {f"{ENV_PREFIX}REDIS_URL": f"redis://{address}/0", f"{ENV_PREFIX}REDIS_USERNAME": user}
    if way == "setting":
        return apart | {f"{ENV_PREFIX}REDIS_PASSWORD": password}
    secret_file = folder / "redis_password"
    secret_file.write_text(password + "\n")
    return apart | {f"{ENV_PREFIX}REDIS_PASSWORD_FILE": str(secret_file)}
