"""The file-access policy, against real files, folders, symlinks, FIFOs and devices in tmp_path."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from statsbot_nb.context import JobSettings
from statsbot_nb.errors import AccessDenied, JobError
from statsbot_nb.paths import MissingFile, PathPolicy, parse_allowed_dirs


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """HOME, a StatsBot home inside it, an allowed data folder and an outside folder, all under tmp_path."""
    user = tmp_path / "home"
    user.mkdir()
    monkeypatch.setenv("HOME", str(user))
    data = tmp_path / "data"
    data.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    store = user / ".statsbot"
    (store / "models" / "m1").mkdir(parents=True)
    return {"user": user, "data": data, "outside": outside, "store": store, "tmp": tmp_path}


def make_policy(env: dict[str, Path], **kwargs: object) -> PathPolicy:
    settings = JobSettings(
        home=kwargs.pop("home", env["store"]),  # type: ignore[arg-type]
        allowed_dirs=kwargs.pop("allowed_dirs", (env["data"],)),  # type: ignore[arg-type]
        cwd=kwargs.pop("cwd", env["data"]),
        **kwargs,
    )  # type: ignore[arg-type]
    return PathPolicy.from_settings(settings)


def write(path: Path, text: str = "a,b\n1,2\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_roots_are_home_cwd_and_allowed(env: dict[str, Path]) -> None:
    extra = env["tmp"] / "extra"
    extra.mkdir()
    policy = make_policy(env, allowed_dirs=(extra,), cwd=env["data"])
    assert set(policy.roots) == {env["user"].resolve(), env["data"].resolve(), extra.resolve()}
    assert policy.store == env["store"].resolve()


def test_readable_inside_allowed_folders(env: dict[str, Path]) -> None:
    policy = make_policy(env)
    f = write(env["data"] / "sub" / "t.csv")
    assert policy.readable(str(f)) == f.resolve()
    assert policy.readable("sub/t.csv") == f.resolve()  # relative to cwd
    assert policy.readable(f) == f.resolve()  # Path objects from internal callers
    h = write(env["user"] / "in_home.CSV")
    assert policy.readable("~/in_home.CSV") == h.resolve()  # ~ expands, extension case-insensitive


def test_every_table_extension_accepted(env: dict[str, Path]) -> None:
    policy = make_policy(env)
    for name in ("a.csv", "b.tsv", "c.xlsx", "d.xls", "e.parquet", "f.PARQUET"):
        assert policy.readable(str(write(env["data"] / name))).name == name


def test_outside_allowed_folder(env: dict[str, Path]) -> None:
    policy = make_policy(env)
    f = write(env["outside"] / "t.csv")
    with pytest.raises(AccessDenied) as err:
        policy.readable(str(f))
    msg = str(err.value)
    assert str(f) in msg and "outside the folders" in msg and "--allow" in msg
    assert "STATSBOT_ALLOWED_DIRS" in msg and "%statsbot allow" in msg


def test_outside_missing_file_is_refused_not_reported_missing(env: dict[str, Path]) -> None:
    with pytest.raises(AccessDenied, match="outside the folders"):
        make_policy(env).readable(str(env["outside"] / "nothing.csv"))


def test_missing_file_inside_is_missingfile(env: dict[str, Path]) -> None:
    with pytest.raises(MissingFile) as err:
        make_policy(env).readable("nothing.csv")
    assert err.value.path == env["data"] / "nothing.csv"


def test_dotdot_traversal(env: dict[str, Path]) -> None:
    write(env["outside"] / "t.csv")
    policy = make_policy(env)
    for raw in ("../outside/t.csv", str(env["data"] / ".." / "outside" / "t.csv"), "sub/../../outside/t.csv"):
        with pytest.raises(AccessDenied, match="outside the folders"):
            policy.readable(raw)


def test_symlink_escape(env: dict[str, Path]) -> None:
    target = write(env["outside"] / "secret.csv")
    link = env["data"] / "link.csv"
    link.symlink_to(target)
    (env["data"] / "dirlink").symlink_to(env["outside"], target_is_directory=True)
    policy = make_policy(env)
    with pytest.raises(AccessDenied, match="resolves to"):
        policy.readable(str(link))
    with pytest.raises(AccessDenied, match="outside the folders"):
        policy.readable("dirlink/secret.csv")


def test_symlink_inside_allowed_is_followed(env: dict[str, Path]) -> None:
    target = write(env["data"] / "real.csv")
    (env["data"] / "alias.csv").symlink_to(target)
    assert make_policy(env).readable("alias.csv") == target.resolve()


def test_symlink_into_store(env: dict[str, Path]) -> None:
    model = write(env["store"] / "models" / "m1" / "meta.csv")
    (env["data"] / "model.csv").symlink_to(model)
    (env["data"] / "store").symlink_to(env["store"], target_is_directory=True)
    policy = make_policy(env)
    for raw in ("model.csv", "store/models/m1/meta.csv"):
        with pytest.raises(AccessDenied, match="inside the StatsBot home"):
            policy.readable(raw)
    with pytest.raises(AccessDenied, match="inside the StatsBot home"):
        policy.writable("store/models/m1/new.csv")


def test_store_refused_even_when_visible_inside_allowed_root(env: dict[str, Path]) -> None:
    store = env["data"] / "statsbot_home"
    f = write(store / "models" / "x.csv")
    policy = make_policy(env, home=store)
    with pytest.raises(AccessDenied, match="StatsBot home") as err:
        policy.readable(str(f))
    assert "copy the file" in str(err.value)
    with pytest.raises(AccessDenied, match="StatsBot home"):
        policy.writable(str(store / "new.csv"))
    # An explicitly allowed folder inside the store does not win either.
    with pytest.raises(AccessDenied, match="StatsBot home"):
        make_policy(env, home=store, allowed_dirs=(store / "models",)).readable(str(f))


def test_hidden_folder_and_hidden_file(env: dict[str, Path]) -> None:
    policy = make_policy(env)
    write(env["data"] / ".secret" / "t.csv")
    write(env["data"] / ".hidden.csv")
    write(env["user"] / ".ssh" / "keys.csv")
    for raw in (".secret/t.csv", ".hidden.csv", "~/.ssh/keys.csv"):
        with pytest.raises(AccessDenied, match="hidden") as err:
            policy.readable(raw)
        assert "rename" in str(err.value)


def test_symlink_to_hidden_file_and_through_hidden_folder(env: dict[str, Path]) -> None:
    hidden = write(env["data"] / ".env.csv")
    (env["data"] / "visible.csv").symlink_to(hidden)
    visible = write(env["data"] / "ok.csv")
    (env["data"] / ".links").mkdir()
    (env["data"] / ".links" / "ok.csv").symlink_to(visible)
    policy = make_policy(env)
    with pytest.raises(AccessDenied, match="hidden"):
        policy.readable("visible.csv")
    with pytest.raises(AccessDenied, match="hidden"):
        policy.readable(".links/ok.csv")


def test_explicitly_allowed_hidden_root_is_usable(env: dict[str, Path]) -> None:
    root = env["user"] / ".local" / "share" / "tables"
    f = write(root / "t.csv")
    assert make_policy(env, allowed_dirs=(root,)).readable(str(f)) == f.resolve()
    with pytest.raises(AccessDenied, match="hidden"):  # without the allowance, home's rule applies
        make_policy(env).readable(str(f))


def test_fifo(env: dict[str, Path]) -> None:
    fifo = env["data"] / "pipe.csv"
    os.mkfifo(fifo)
    with pytest.raises(AccessDenied, match="named pipe"):
        make_policy(env).readable(str(fifo))  # must not block
    with pytest.raises(AccessDenied, match="named pipe"):
        make_policy(env).writable(str(fifo))


def test_devices_via_symlink(env: dict[str, Path]) -> None:
    (env["data"] / "null.csv").symlink_to("/dev/null")
    (env["data"] / "zero.csv").symlink_to("/dev/zero")
    policy = make_policy(env)
    for name in ("null.csv", "zero.csv"):
        with pytest.raises(AccessDenied, match="outside the folders"):
            policy.readable(name)
    # Even with /dev allowed, a device is not a regular file.
    with pytest.raises(AccessDenied, match="device"):
        make_policy(env, allowed_dirs=(Path("/dev"),)).readable("zero.csv")
    with pytest.raises(AccessDenied, match="device"):
        make_policy(env, allowed_dirs=(Path("/dev"),)).writable("null.csv")


def test_directory(env: dict[str, Path]) -> None:
    (env["data"] / "folder.csv").mkdir()
    with pytest.raises(AccessDenied, match="a folder"):
        make_policy(env).readable("folder.csv")
    with pytest.raises(AccessDenied, match="a folder"):
        make_policy(env).writable("folder.csv")


def test_empty_file(env: dict[str, Path]) -> None:
    write(env["data"] / "empty.csv", "")
    with pytest.raises(AccessDenied, match="is empty"):
        make_policy(env).readable("empty.csv")


def test_too_large(env: dict[str, Path]) -> None:
    write(env["data"] / "big.csv", "a\n" + "1\n" * 100)
    with pytest.raises(AccessDenied, match="above this worker's limit"):
        make_policy(env, max_file_bytes=50).readable("big.csv")
    assert make_policy(env, max_file_bytes=1000).readable("big.csv").name == "big.csv"


def test_wrong_extension(env: dict[str, Path]) -> None:
    policy = make_policy(env)
    write(env["data"] / "notes.txt")
    write(env["data"] / "script.py")
    write(env["data"] / "noext")
    for raw in ("notes.txt", "script.py", "noext", "missing.pkl"):
        with pytest.raises(AccessDenied, match="only tables"):
            policy.readable(raw)
    (env["data"] / "looks.csv").symlink_to(env["data"] / "notes.txt")  # the real file's type counts
    with pytest.raises(AccessDenied, match=r"'\.txt'"):
        policy.readable("looks.csv")
    with pytest.raises(AccessDenied, match="only tables"):
        policy.writable("out.pkl")


@pytest.mark.parametrize(
    "raw", [None, 3, b"t.csv", ["t.csv"], "", "   ", "t\x00.csv", "x" * 5000, "~no_such_user_zz9/t.csv"]
)
def test_bad_raw_values(env: dict[str, Path], raw: object) -> None:
    with pytest.raises(AccessDenied):
        make_policy(env).readable(raw)
    with pytest.raises(AccessDenied):
        make_policy(env).writable(raw)


def test_symlink_loop(env: dict[str, Path]) -> None:
    a, b = env["data"] / "a.csv", env["data"] / "b.csv"
    a.symlink_to(b)
    b.symlink_to(a)
    with pytest.raises(AccessDenied):
        make_policy(env).readable("a.csv")


def test_writable_new_and_existing(env: dict[str, Path]) -> None:
    policy = make_policy(env)
    assert policy.writable("out.csv") == (env["data"] / "out.csv").resolve()
    existing = write(env["data"] / "old.parquet", "x")
    assert policy.writable(str(existing)) == existing.resolve()
    assert policy.writable("~/report.xlsx") == (env["user"] / "report.xlsx").resolve()


def test_writable_refusals(env: dict[str, Path]) -> None:
    policy = make_policy(env)
    with pytest.raises(AccessDenied, match="outside the folders"):
        policy.writable(str(env["outside"] / "o.csv"))
    with pytest.raises(AccessDenied, match="outside the folders"):
        policy.writable("../outside/o.csv")
    with pytest.raises(AccessDenied, match="hidden"):
        policy.writable(".o.csv")
    (env["data"] / ".cache").mkdir()
    with pytest.raises(AccessDenied, match="hidden"):
        policy.writable(".cache/o.csv")
    with pytest.raises(AccessDenied, match="StatsBot home"):
        policy.writable(str(env["store"] / "models" / "m1" / "o.csv"))
    with pytest.raises(JobError, match="does not exist; create it first"):
        policy.writable("no_such_folder/o.csv")


def test_writable_symlink_target_checked(env: dict[str, Path]) -> None:
    policy = make_policy(env)
    (env["data"] / "dangling.csv").symlink_to(env["outside"] / "created.csv")
    with pytest.raises(AccessDenied, match="outside the folders"):
        policy.writable("dangling.csv")
    assert not (env["outside"] / "created.csv").exists()
    real = write(env["data"] / "real.csv")
    (env["data"] / "alias.csv").symlink_to(real)
    assert policy.writable("alias.csv") == real.resolve()


def test_parse_allowed_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    value = os.pathsep.join(["/srv/a", "", "  ~/b ", "rel", "/srv/a"])
    assert parse_allowed_dirs(value) == (Path("/srv/a"), tmp_path / "b", tmp_path / "rel")
    assert parse_allowed_dirs(None) == ()
    assert parse_allowed_dirs("") == ()


def test_relative_allowed_dir_is_relative_to_cwd(env: dict[str, Path]) -> None:
    other = env["tmp"] / "other"
    f = write(other / "t.csv")
    policy = make_policy(env, allowed_dirs=(Path("../other"),), cwd=env["data"])
    assert policy.readable(str(f)) == f.resolve()


def test_filesystem_root_is_never_a_default(env: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", "/")
    policy = make_policy(env, allowed_dirs=(), cwd=Path("/"))
    assert policy.roots == ()
    with pytest.raises(AccessDenied, match="outside the folders"):
        policy.readable(str(write(env["data"] / "t.csv")))
    assert make_policy(env, allowed_dirs=(Path("/"),), cwd=Path("/")).roots == (Path("/"),)
