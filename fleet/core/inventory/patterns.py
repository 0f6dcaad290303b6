"""What the inventory's strings must look like: regex patterns, and each one's rule in words."""

from __future__ import annotations

from resort_common.tunables import HOTEL_PATTERN

__all__ = [
    "HOST_PATTERN",
    "LABEL_PATTERN",
    "PATTERN_HINTS",
    "POOL_PATTERN",
    "SLUG_PATTERN",
    "URL_PATTERN",
]

SLUG_PATTERN = r"^[a-z][a-z0-9-]{0,39}$"
POOL_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"
HOST_PATTERN = r"^[A-Za-z0-9]([A-Za-z0-9.:-]{0,251}[A-Za-z0-9])?$"
LABEL_PATTERN = r"^[^\s,]{1,64}$"
URL_PATTERN = r"^https?://[^\s/]+(/\S*)?$"

#: Why a string did not match its pattern, in words (by pattern).
PATTERN_HINTS = {
    SLUG_PATTERN: "must be a slug: a lowercase letter, then lowercase letters, digits or '-', "
    "at most 40 characters",
    HOTEL_PATTERN: "must be 1-4 uppercase letters or digits",
    POOL_PATTERN: "must be lowercase letters, digits or '-', at most 63 characters",
    HOST_PATTERN: "must be a hostname or an IP address",
    LABEL_PATTERN: "must be 1-64 characters without spaces or commas",
    URL_PATTERN: "must be an http(s) URL such as http://127.0.0.1:4200/api",
}
