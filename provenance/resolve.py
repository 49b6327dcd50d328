"""Soft-binding resolution: from the watermark found in a file to the manifest it was signed with.

The C2PA soft-binding assertion of every Hallmark manifest names the watermark algorithm and the
value it carries (base64 of the key id byte and the 6-byte payload). A copy that lost its manifest
(stripped, or re-encoded by a platform) still carries the watermark; its value finds the record,
and the record's manifest store, kept at release, is the original manifest.

`StoreResolver` asks this deployment's audit store. `HttpResolver` asks any C2PA Soft Binding
Resolution API (another Hallmark's `/v1`, or a third party's): GET /matches/byBinding, then
GET /manifests/{manifestId}.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Protocol

from audit import AuditError, AuditStore
from provenance.manifest import parse_soft_binding_value
from provenance.watermark import VideoWatermark

MAX_MANIFEST_BYTES = 16 * 1024 * 1024  # a manifest store with thumbnails is tens of KB


class ResolutionError(RuntimeError):
    """The resolver could not be asked (network, bad answer); not the same as "no match"."""


class UnsupportedBinding(ValueError):
    """A query for an algorithm this service does not resolve, or a value it cannot parse."""


@dataclass(frozen=True)
class Resolution:
    manifest_id: str  # the active manifest's label
    store: bytes  # the C2PA manifest store (application/c2pa)
    source: str  # where it came from: "local audit store" or the resolver's URL


class ManifestResolver(Protocol):
    def resolve(self, alg: str, value: str) -> Resolution | None:
        """The manifest store for a soft binding, or None when nothing matches."""
        ...


class StoreResolver:
    """Resolves this deployment's watermark against its audit store."""

    source = "local audit store"

    def __init__(self, store: AuditStore, watermark: VideoWatermark) -> None:
        self.store = store
        self.alg = watermark.soft_binding_alg
        self.keyed = watermark.key_id is not None

    def matches(self, alg: str, value: str, max_results: int = 10) -> list[str]:
        """Manifest ids (labels) of released videos whose watermark carries `value`."""
        if alg != self.alg:
            raise UnsupportedBinding(f"alg {alg!r} is not resolved here; supported: {self.alg}")
        try:
            payload, key_id = parse_soft_binding_value(value, self.keyed)
        except ValueError as exc:
            raise UnsupportedBinding(f"value: {exc}") from exc
        record = self.store.find_by_payload(payload)
        if record is None or record.manifest_label is None or record.watermark_key_id != key_id:
            return []
        return [record.manifest_label][:max_results]

    def resolve(self, alg: str, value: str) -> Resolution | None:
        for label in self.matches(alg, value, 1):
            try:
                store = self.store.manifest_store(label)
            except AuditError as exc:
                raise ResolutionError(str(exc)) from exc
            if store is not None:
                return Resolution(label, store, self.source)
        return None


class HttpResolver:
    """Asks a C2PA Soft Binding Resolution API at `base_url` (e.g. https://hallmark.example/v1)."""

    def __init__(self, base_url: str, timeout_s: float = 10.0) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"resolver URL must be http(s)://..., got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s

    def resolve(self, alg: str, value: str) -> Resolution | None:
        query = urllib.parse.urlencode({"alg": alg, "value": value, "maxResults": 1})
        try:
            answer = json.loads(self._get(f"/matches/byBinding?{query}", 1 << 20) or b"{}")
            match = (answer.get("matches") or [None])[0] if isinstance(answer, dict) else None
            if match is None:
                return None
            manifest_id, endpoint = match.get("manifestId"), match.get("endpoint")
        except (ValueError, AttributeError, TypeError, IndexError) as exc:
            raise ResolutionError(
                f"{self.base_url}: not a Soft Binding Resolution API answer: {exc}"
            ) from exc
        if not isinstance(manifest_id, str) or not manifest_id:
            raise ResolutionError(f"{self.base_url}: a match without a manifestId")
        if endpoint and str(endpoint).rstrip("/") != self.base_url:
            # Following a match to another host would let any resolver make us fetch anything.
            raise ResolutionError(
                f"{self.base_url}: the match points to another service ({endpoint}); not followed"
            )
        store = self._get(f"/manifests/{urllib.parse.quote(manifest_id, safe='')}", MAX_MANIFEST_BYTES)
        return Resolution(manifest_id, store, self.base_url) if store else None

    def _get(self, path: str, limit: int) -> bytes | None:
        url = self.base_url + path
        try:
            with _OPENER.open(url, timeout=self.timeout_s) as response:
                body = response.read(limit + 1)
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise ResolutionError(f"{url}: HTTP {exc.code} {exc.reason}") from exc
        except (urllib.error.URLError, TimeoutError, OSError, ValueError) as exc:
            raise ResolutionError(f"{url}: {getattr(exc, 'reason', exc)}") from exc
        if len(body) > limit:
            raise ResolutionError(f"{url}: answer larger than {limit} bytes")
        return body


class FirstMatch:
    """Asks each resolver in turn (the local store, then a remote service) until one matches."""

    def __init__(self, resolvers: list[ManifestResolver]) -> None:
        self.resolvers = resolvers

    def resolve(self, alg: str, value: str) -> Resolution | None:
        errors = []
        for resolver in self.resolvers:
            try:
                found = resolver.resolve(alg, value)
            except ResolutionError as exc:
                errors.append(str(exc))
                continue
            if found is not None:
                return found
        if errors:
            raise ResolutionError("; ".join(errors))
        return None


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: ANN001 (urllib's signature)
        raise urllib.error.HTTPError(newurl, code, f"redirect to {newurl} not followed", headers, fp)


_OPENER = urllib.request.build_opener(_NoRedirects)
