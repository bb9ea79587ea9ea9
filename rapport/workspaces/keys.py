"""The key hierarchy in use: master key → workspace keys → per-profile data keys (cached unwrapped)."""

from __future__ import annotations

import threading
from collections import OrderedDict

from rapport.privacy import crypto
from rapport.types import ProfileId, WorkspaceId


class Keyring:
    """Unwraps and caches workspace keys and profile ciphers; creates new wrapped keys."""

    def __init__(self, master_key: bytes, *, cache_size: int = 50_000) -> None:
        self._master = master_key
        self._workspaces: dict[str, tuple[bytes, bytes]] = {}
        self._identity: dict[tuple[str, int], bytes] = {}
        self._ciphers: OrderedDict[tuple[str, str], crypto.Cipher] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def new_workspace_key(self, workspace_id: WorkspaceId) -> bytes:
        """A fresh workspace key, wrapped by the master key (store the result)."""
        return crypto.wrap(self._master, crypto.generate_key(), workspace_id.encode())

    def _workspace(self, workspace_id: WorkspaceId, wrapped: bytes) -> tuple[bytes, bytes]:
        hit = self._workspaces.get(workspace_id)
        if hit is None:
            key = crypto.unwrap(self._master, wrapped, workspace_id.encode())
            hit = (key, crypto.lookup_key(key))
            self._workspaces[workspace_id] = hit
        return hit

    def workspace_cipher(self, workspace_id: WorkspaceId, wrapped: bytes) -> crypto.Cipher:
        return crypto.Cipher(self._workspace(workspace_id, wrapped)[0])

    def blind_index(self, workspace_id: WorkspaceId, wrapped: bytes, kind: str, value: str) -> str:
        return crypto.blind_index(self._workspace(workspace_id, wrapped)[1], kind, value)

    def identity_key(self, workspace_id: WorkspaceId, wrapped: bytes, version: int = 1) -> bytes:
        """Version ``version`` of the workspace's identity-verification secret (``crypto.identity_key``), derived
        once."""
        hit = self._identity.get((workspace_id, version))
        if hit is None:
            hit = self._identity[(workspace_id, version)] = crypto.identity_key(
                self._workspace(workspace_id, wrapped)[0], version)
        return hit

    def new_profile_key(
        self, workspace_id: WorkspaceId, wrapped_ws: bytes, profile_id: ProfileId
    ) -> tuple[crypto.Cipher, bytes]:
        """A cipher for a new profile and its data key wrapped by the workspace key."""
        raw = crypto.generate_key()
        wrapped = crypto.wrap(self._workspace(workspace_id, wrapped_ws)[0], raw, profile_id.encode())
        cipher = crypto.Cipher(raw)
        self._remember((workspace_id, profile_id), cipher)
        return cipher, wrapped

    def profile_cipher(
        self, workspace_id: WorkspaceId, wrapped_ws: bytes, profile_id: str, wrapped: bytes
    ) -> crypto.Cipher:
        key = (workspace_id, profile_id)
        with self._lock:
            hit = self._ciphers.get(key)
            if hit is not None:
                self._ciphers.move_to_end(key)
                return hit
        raw = crypto.unwrap(self._workspace(workspace_id, wrapped_ws)[0], wrapped, profile_id.encode())
        cipher = crypto.Cipher(raw)
        self._remember(key, cipher)
        return cipher

    def cached_cipher(self, workspace_id: WorkspaceId, profile_id: str) -> crypto.Cipher | None:
        with self._lock:
            return self._ciphers.get((workspace_id, profile_id))

    def forget_profile(self, workspace_id: WorkspaceId, profile_id: str) -> None:
        with self._lock:
            self._ciphers.pop((workspace_id, profile_id), None)

    def _remember(self, key: tuple[str, str], cipher: crypto.Cipher) -> None:
        with self._lock:
            self._ciphers[key] = cipher
            if len(self._ciphers) > self._cache_size:
                self._ciphers.popitem(last=False)
