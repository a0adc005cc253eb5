"""Local keys: key files, environment variables, key ids."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest

from checkpointers import ConfigurationError, KeyRing, LocalKey
from checkpointers.crypto import append_key_file, create_key_file, read_key_file


def test_create_key_file_is_0600_and_refuses_overwrite(tmp_path: Path) -> None:
    """A new key file is private to its owner and never silently replaced."""
    path = tmp_path / "app.key"
    key = create_key_file(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [k.key_id for k in read_key_file(path)] == [key.key_id]
    with pytest.raises(ConfigurationError, match="already exists"):
        create_key_file(path)
    assert [k.key_id for k in read_key_file(path)] == [key.key_id]


def test_permissive_key_file_is_refused(tmp_path: Path) -> None:
    """A key file readable by group or others is refused."""
    path = tmp_path / "app.key"
    create_key_file(path)
    os.chmod(path, 0o644)
    with pytest.raises(ConfigurationError, match="chmod 600"):
        read_key_file(path)


def test_append_makes_a_new_current_key(tmp_path: Path) -> None:
    """append_key_file adds a version that becomes current; old ones stay readable."""
    path = tmp_path / "app.key"
    first = create_key_file(path)
    second = append_key_file(path)
    ring = KeyRing.from_key_file(path)
    assert ring.key_ids == (first.key_id, second.key_id)
    assert ring.current_key_id == second.key_id
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_from_env_inline_and_file(tmp_path: Path) -> None:
    """CHECKPOINTERS_KEY (base64, comma-separated) or CHECKPOINTERS_KEY_FILE give a ring."""
    a, b = os.urandom(32), os.urandom(32)
    inline = ",".join(base64.b64encode(k).decode() for k in (a, b))
    ring = KeyRing.from_env({"CHECKPOINTERS_KEY": inline})
    assert ring.key_ids == (LocalKey(a).key_id, LocalKey(b).key_id)
    path = tmp_path / "k"
    create_key_file(path)
    assert len(KeyRing.from_env({"CHECKPOINTERS_KEY_FILE": str(path)}).key_ids) == 1


@pytest.mark.parametrize(
    "environ",
    [
        {},
        {"CHECKPOINTERS_KEY": "not base64!"},
        {"CHECKPOINTERS_KEY": base64.b64encode(b"short").decode()},
        {"CHECKPOINTERS_KEY": "a", "CHECKPOINTERS_KEY_FILE": "b"},
        {"CHECKPOINTERS_KEY_FILE": "/nonexistent/key"},
    ],
)
def test_missing_or_bad_key_configuration_is_an_error(environ: dict[str, str]) -> None:
    """No key, a malformed key or two sources raise ConfigurationError, never plaintext."""
    with pytest.raises(ConfigurationError):
        KeyRing.from_env(environ)


def test_key_id_is_stable_and_reveals_nothing() -> None:
    """The key id derives from the material and does not contain it."""
    material = os.urandom(32)
    key = LocalKey(material)
    assert key.key_id == LocalKey(material).key_id
    assert key.key_id.startswith("local:")
    assert material.hex()[:16] not in key.key_id
    assert base64.b64encode(material).decode() not in repr(key)
