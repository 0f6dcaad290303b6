"""What the inventory's strings must look like: regex patterns, and each one's rule in words."""

from __future__ import annotations

from resort_common.tunables import HOTEL_PATTERN

__all__ = [
    "ANSIBLE_VAR_PATTERN",
    "HOST_PATTERN",
    "LABEL_PATTERN",
    "PATTERN_HINTS",
    "POOL_PATTERN",
    "POSTGRES_URL_PATTERN",
    "REDIS_URL_PATTERN",
    "SLUG_PATTERN",
    "URL_PATTERN",
]

SLUG_PATTERN = r"^[a-z][a-z0-9-]{0,39}$"
POOL_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"
HOST_PATTERN = r"^[A-Za-z0-9]([A-Za-z0-9.:-]{0,251}[A-Za-z0-9])?$"
LABEL_PATTERN = r"^[^\s,]{1,64}$"
URL_PATTERN = r"^https?://[^\s/]+(/\S*)?$"
POSTGRES_URL_PATTERN = r"^postgresql\+asyncpg://[^\s/@]+@[^\s/@]+/[A-Za-z0-9_-]+$"
REDIS_URL_PATTERN = r"^redis://[^\s/]+/(1[0-4]|[0-9])$"
ANSIBLE_VAR_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"

#: Why a string did not match its pattern, in words (by pattern).
PATTERN_HINTS = {
    SLUG_PATTERN: "must be a slug: a lowercase letter, then lowercase letters, digits or '-', "
    "at most 40 characters",
    HOTEL_PATTERN: "must be 1-4 uppercase letters or digits",
    POOL_PATTERN: "must be lowercase letters, digits or '-', at most 63 characters",
    HOST_PATTERN: "must be a hostname or an IP address",
    LABEL_PATTERN: "must be 1-64 characters without spaces or commas",
    URL_PATTERN: "must be an http(s) URL such as http://127.0.0.1:4200/api",
    POSTGRES_URL_PATTERN: "must be postgresql+asyncpg://user@host:port/database",
    REDIS_URL_PATTERN: "must be redis://host:port/N with a database N from 0 to 14",
    ANSIBLE_VAR_PATTERN: "must be an Ansible variable name (letters, digits, '_')",
}
