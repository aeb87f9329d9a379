"""Asset hrefs from a STAC API are data, not paths: what GDAL may be given to read.

GDAL opens whatever string it is handed: an absolute path or ``file://`` URL reads a local file, a
``/vsi...`` path any virtual file system (another host through ``/vsicurl/``, an archive, an S3
bucket), and a string starting with ``<`` is parsed as an inline VRT that may name any of those.
An href from a catalogue is therefore accepted only as an ``https://`` URL (read through
``/vsicurl/``), optionally of the hosts in ``stac.asset_hosts``.  Opt-ins, for a local mirror:
``stac.allow_local_hrefs`` accepts local paths and ``file://`` URLs, ``stac.allow_insecure_http``
accepts ``http://`` for the API and the assets.  ``/vsi...`` paths, XML and other GDAL
connection strings (``DRIVER:...``) are refused always.

:func:`check_api_url` checks ``stac.url``; :func:`check_href` one asset href (when the manifest
is written and again when it is read).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from osmlulc.io import InputError

#: A URL scheme or a GDAL connection-string prefix (``GPKG:``, ``NETCDF:``, ``s3:``); not a drive letter.
_PREFIX = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]+:")
_CONTROL = re.compile(r"[\x00-\x20\x7f<>\"\\]")


@dataclass(frozen=True)
class HrefPolicy:
    """Which hrefs a catalogue may give (module docstring); the default accepts https URLs only."""

    allow_local_hrefs: bool = False
    allow_insecure_http: bool = False
    asset_hosts: tuple[str, ...] = ()

    @classmethod
    def from_settings(cls, stac: dict | None) -> "HrefPolicy":
        stac = stac or {}
        return cls(bool(stac.get("allow_local_hrefs", False)), bool(stac.get("allow_insecure_http", False)),
                   tuple(h.lower() for h in stac.get("asset_hosts") or ()))


def check_api_url(url: str, policy: HrefPolicy) -> str:
    """``url`` if it is an https URL (or http with ``allow_insecure_http``); a one-line error otherwise."""
    scheme = urlsplit(url).scheme.lower()
    if scheme == "https" or (scheme == "http" and policy.allow_insecure_http):
        return url
    raise InputError(f"STAC API {url} is not an https:// URL; use https or set stac.allow_insecure_http: true "
                     "(a trusted local server only)")


def check_href(href, policy: HrefPolicy, *, item, asset) -> str:
    """The GDAL path of an asset href that ``policy`` accepts; a one-line error naming the item and asset otherwise."""
    def refuse(why: str, fix: str = ""):
        shown = repr(href)[:120]
        raise InputError(f"STAC item {item} asset {asset}: href {shown} {why}; refused{fix}")

    if not isinstance(href, str) or not href:
        refuse("is not a string")
    lowered = href.lower()
    if lowered.lstrip().startswith("<"):
        refuse("is inline XML (a GDAL VRT)")
    if lowered.startswith("/vsi"):
        refuse("is a GDAL virtual file system path")
    if lowered.startswith(("https://", "http://")):
        if _CONTROL.search(href):
            refuse("has spaces, quotes or control characters")
        parts = urlsplit(href)
        if parts.scheme.lower() == "http" and not policy.allow_insecure_http:
            refuse("is not https", " (stac.allow_insecure_http: true accepts http for a trusted local server)")
        if not parts.hostname or parts.username or parts.password:
            refuse("has no host or carries credentials")
        if policy.asset_hosts and parts.hostname.lower() not in policy.asset_hosts:
            refuse(f"is on host {parts.hostname}, not one of stac.asset_hosts {list(policy.asset_hosts)}")
        return f"/vsicurl/{href}"
    if lowered.startswith("file://") or not _PREFIX.match(href):
        if not policy.allow_local_hrefs:
            refuse("is a local file", " (stac.allow_local_hrefs: true accepts local paths, for a local mirror)")
        path = href[len("file://"):] if lowered.startswith("file://") else href
        if path.lower().startswith("/vsi") or "<" in path or _PREFIX.match(path):
            refuse("is not a plain local path")
        return path
    refuse("is not an https:// URL")
