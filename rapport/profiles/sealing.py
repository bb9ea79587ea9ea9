"""Values of personal series, sealed before they reach a bucket.

A computed trait over a personal property (``last`` of ``properties.email``, ``distinct`` of
``properties.phone``) would otherwise keep that data in clear in its buckets. Its first/last values
are kept as encrypted markers under the workspace key, bound to the series (buckets move between
profiles on merges, so a profile's own key cannot be used), and its distinct values as keyed
hashes, which count the same.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial

import orjson

from rapport.privacy import pii
from rapport.profiles.computed import TraitDef
from rapport.types import Json, JsonObject
from rapport.workspaces.keys import Keyring
from rapport.workspaces.runtime import CompiledSeries, WorkspaceRuntime


def _aad(series_id: str) -> bytes:
    return b"series\x00" + series_id.encode()


class SeriesSealer:
    """Seals values for the workspace's personal series and opens them for reading."""

    def __init__(self, keyring: Keyring, rt: WorkspaceRuntime) -> None:
        self._keyring = keyring
        self._rt = rt
        self._cipher = keyring.workspace_cipher(rt.id, rt.wrapped_key)

    def seal(self, series: CompiledSeries, value: Json) -> tuple[str, str] | None:
        """(marker JSON, keyed hash) of ``value`` for a personal series; None for any other series."""
        if not series.personal or value is None:
            return None
        series_id = series.key.id
        marker = pii.encrypt_value(value, partial(self._cipher.encrypt, aad=_aad(series_id)))
        index = self._keyring.blind_index(self._rt.id, self._rt.wrapped_key, "series:" + series_id,
                                          orjson.dumps(value).decode())
        return orjson.dumps(marker).decode(), index

    def open(self, traits: Mapping[str, TraitDef], values: JsonObject) -> JsonObject:
        """``values`` (trait name -> computed value) with the sealed first/last values opened."""
        out = dict(values)
        for name, value in values.items():
            trait = traits.get(name)
            series = self._rt.series.get(trait.series.id) if trait is not None else None
            if trait is None or series is None or not series.personal or not pii.is_marker(value):
                continue
            out[name] = pii.decrypt_value(value, partial(self._cipher.decrypt, aad=_aad(trait.series.id)))
        return out
