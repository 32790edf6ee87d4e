"""Unit tests of podkit.configdir (the kubelet's layout, the content hash) and Hook.parse.

Real files in a tmp directory; nothing runs in the background.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from podkit.configdir import DATA_LINK, content_hash, hash_files, read_files, write_like_kubelet
from podkit.errors import PodkitError
from podkit.reload import Hook

FILES = {"greeting": b"hello\n", "limits.yaml": b"max: 3\n", "empty": b""}


def hidden_dirs(directory: Path) -> list[str]:
    """The ``..<timestamp>`` directories (real directories, not the ``..data`` link)."""
    return sorted(e.name for e in directory.iterdir()
                  if e.name.startswith("..") and e.is_dir() and not e.is_symlink())


# --- hash ----------------------------------------------------------------------------------------

def test_hash_ignores_order_and_follows_content() -> None:
    reordered = dict(reversed(list(FILES.items())))
    assert list(reordered) != list(FILES)
    assert hash_files(reordered) == hash_files(FILES)

    assert hash_files({**FILES, "greeting": b"hello!\n"}) != hash_files(FILES)
    assert hash_files({**FILES, "other": b""}) != hash_files(FILES)  # an added empty file
    without = {k: v for k, v in FILES.items() if k != "empty"}
    assert hash_files(without) != hash_files(FILES)
    # a name is not content: moving bytes between the name and the file changes the hash
    assert hash_files({"ab": b"c"}) != hash_files({"a": b"bc"})
    assert hash_files({"a": b"b", "c": b""}) != hash_files({"a": b"", "c": b"b"})


def test_directory_written_like_the_kubelet_hashes_like_its_data(tmp_path: Path) -> None:
    config = tmp_path / "cfg"
    write_like_kubelet(config, FILES)
    assert read_files(config) == FILES  # through ..data, no hidden names
    assert content_hash(config) == hash_files(FILES)

    changed = {"greeting": b"bonjour\n", "new": b"1"}
    write_like_kubelet(config, changed)
    assert read_files(config) == changed
    assert content_hash(config) == hash_files(changed) != hash_files(FILES)


def test_plain_directory_hashes_its_visible_files(tmp_path: Path) -> None:
    for name, content in FILES.items():
        (tmp_path / name).write_bytes(content)
    (tmp_path / "sub").mkdir()  # a directory is not a file of the config
    assert read_files(tmp_path) == FILES
    assert content_hash(tmp_path) == hash_files(FILES)


# --- the kubelet's layout ------------------------------------------------------------------------

def test_write_like_kubelet_builds_the_atomic_writer_layout(tmp_path: Path) -> None:
    config = tmp_path / "cfg"
    write_like_kubelet(config, FILES)

    data = config / DATA_LINK
    assert data.is_symlink()
    first = os.readlink(data)
    assert first.startswith("..") and first != DATA_LINK and "/" not in first
    assert hidden_dirs(config) == [first]
    assert sorted(p.name for p in (config / first).iterdir()) == sorted(FILES)
    for name, content in FILES.items():
        visible = config / name
        assert visible.is_symlink(), name
        assert os.readlink(visible) == f"{DATA_LINK}/{name}"
        assert visible.read_bytes() == content
    assert not (config / f"{DATA_LINK}_tmp").exists()
    assert sorted(p.name for p in config.iterdir()) == sorted([*FILES, DATA_LINK, first])

    # an update: a new timestamp dir, ..data moved onto it, a removed key disappears,
    # the old timestamp dir is gone
    write_like_kubelet(config, {"greeting": b"bonjour\n", "added": b"x"})
    second = os.readlink(data)
    assert second != first
    assert hidden_dirs(config) == [second]
    assert sorted(p.name for p in config.iterdir()) == sorted(
        ["greeting", "added", DATA_LINK, second])
    assert (config / "greeting").read_bytes() == b"bonjour\n"
    assert os.readlink(config / "added") == f"{DATA_LINK}/added"
    assert not (config / "limits.yaml").exists() and not (config / "limits.yaml").is_symlink()


def test_each_write_gets_its_own_timestamp_dir(tmp_path: Path) -> None:
    seen = set()
    for n in range(5):
        write_like_kubelet(tmp_path, {"n": str(n).encode()})
        seen.add(os.readlink(tmp_path / DATA_LINK))
        assert len(hidden_dirs(tmp_path)) == 1
        assert (tmp_path / "n").read_text() == str(n)
    assert len(seen) == 5


# --- Hook.parse ----------------------------------------------------------------------------------

@pytest.mark.parametrize("text, kind, argument", [
    ("signal:HUP", "signal", "HUP"),
    ("signal:SIGUSR1", "signal", "SIGUSR1"),
    ("restart", "restart", ""),
    ("none", "none", ""),
    ("command:/app/reload.sh --all", "command", "/app/reload.sh --all"),
    ("command:sh -c 'kill -HUP 1'", "command", "sh -c 'kill -HUP 1'"),
])
def test_hook_parse_accepts(text: str, kind: str, argument: str) -> None:
    hook = Hook.parse(text)
    assert (hook.kind, hook.argument) == (kind, argument)
    assert Hook.parse(str(hook)) == hook


@pytest.mark.parametrize("text, advice", [
    ("reboot", "signal:<NAME>, restart, command:<CMD> or none"),
    ("", "signal:<NAME>, restart, command:<CMD> or none"),
    ("SIGNAL:HUP", "signal:<NAME>, restart, command:<CMD> or none"),
    ("signal:", "signal:HUP"),
    ("command:  ", "command:/app/reload.sh"),
    ("restart:now", "use 'restart'"),
    ("none:please", "use 'none'"),
    ("signal:HPU", "signal:HUP"),
    ("signal:KILL", "signal:HUP, signal:USR1, signal:USR2"),
    ("signal:TERM", "signal:HUP, signal:USR1, signal:USR2"),
    ("command:echo 'unclosed", "quote it"),
])
def test_hook_parse_rejects_with_advice(text: str, advice: str) -> None:
    with pytest.raises(PodkitError) as caught:
        Hook.parse(text)
    message = str(caught.value)
    assert repr(text) in message or repr(text.partition(":")[0]) in message, message
    assert advice in message, message
