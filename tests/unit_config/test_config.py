"""proxy.config: the example file, defaults, one precise error per mistake, diffs, `check`."""

from __future__ import annotations

import tomllib
from pathlib import Path

import msgspec
import pytest

from proxy.cli import main
from proxy.config import (
    Config,
    ConfigDiff,
    ConfigError,
    DifficultyConfig,
    HttpConfig,
    LogConfig,
    PoolConfig,
    ServerConfig,
    UpstreamConfig,
    diff_config,
    load_config,
    parse_config,
    parse_listen_address,
    parse_pool_url,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "proxy.toml.example"

POOL = """\
[[pools]]
name = "main"
url = "stratum+tcp://pool.example.com:3333"
user = "acct.proxy"
"""
"""The smallest valid config: lines 1-4."""

BACKUP = """\
[[pools]]
name = "backup"
url = "stratum+ssl://backup.example.com:443"
user = "acct.proxy"
password = "secret"
"""


def error(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "proxy.toml")
    return info.value


# --------------------------------------------------------------------------- example file


def test_example_file_parses_with_demo_values() -> None:
    config = load_config(EXAMPLE)
    assert config.server.listen == ("127.0.0.1:3333",)
    assert [(p.name, p.host, p.port, p.tls, p.user) for p in config.pools] == [
        ("local", "127.0.0.1", 3334, False, "proxy.demo")
    ]
    assert config.difficulty == DifficultyConfig(
        initial=0.0001,
        minimum=0.00001,
        maximum=1e15,
        target_share_interval=5.0,
        vardiff=True,
        retarget_interval=config.difficulty.retarget_interval,
    )


def _keys(struct: type[msgspec.Struct]) -> set[str]:
    return {f.name for f in msgspec.structs.fields(struct)}


def test_example_file_documents_every_key() -> None:
    text = EXAMPLE.read_text()
    data = tomllib.loads(text)
    tables: dict[str, type[msgspec.Struct]] = {
        "server": ServerConfig,
        "upstream": UpstreamConfig,
        "difficulty": DifficultyConfig,
        "log": LogConfig,
        "http": HttpConfig,
    }
    # Groups are optional tables: the example shows them commented out (see test_config_groups).
    assert set(data) | {"groups"} == _keys(Config)
    assert "# [[groups]]" in text
    assert "# [[groups.routes]]" in text
    for table, struct in tables.items():
        missing = _keys(struct) - set(data[table])
        # TOML has no null, so an optional key with no default value can only be shown commented out.
        assert missing <= {"admin_token_file", "drain_target"}, (table, missing)
    assert "# admin_token_file = " in text
    assert "# drain_target = " in text
    assert _keys(PoolConfig) - set(data["pools"][0]) == {"ca_file"}  # optional, shown commented out
    assert "# ca_file = " in text
    # Every key line is preceded by a comment explaining it.
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if "=" in line and not line.startswith("#"):
            assert lines[i - 1].startswith("#"), f"line {i + 1} has no comment: {line!r}"


# --------------------------------------------------------------------------- defaults


def test_defaults() -> None:
    config = parse_config(POOL)
    assert config.server == ServerConfig(
        listen=("0.0.0.0:3333",),
        max_line_bytes=16384,
        handshake_timeout=30.0,
        idle_timeout=600.0,
        error_budget=20,
        max_miners=20000,
        submit_timeout=10.0,
        ntime_window=7000,
    )
    assert config.upstream == UpstreamConfig(
        connect_timeout=10.0,
        handshake_timeout=10.0,
        silence_timeout=120.0,
        backoff_initial=1.0,
        backoff_max=60.0,
        primary_hold=30.0,
        miners_per_connection=65536,
        allow_redirect=False,
        suggest_difficulty=True,
    )
    assert config.difficulty == DifficultyConfig(
        initial=16384.0,
        minimum=1024.0,
        maximum=1e15,
        target_share_interval=10.0,
        vardiff=True,
        retarget_interval=30.0,
    )
    assert config.log == LogConfig(level="info", format="console")
    assert config.http == HttpConfig(listen="127.0.0.1:9100", admin_token_file=None)
    assert config.pools == (
        PoolConfig(name="main", url="stratum+tcp://pool.example.com:3333", user="acct.proxy", password="x"),
    )
    assert config.primary.name == "main"


def test_config_is_frozen_with_tuples() -> None:
    config = parse_config(POOL + "[server]\nlisten = ['[::]:3333', '0.0.0.0:3334']\n")
    assert isinstance(config.pools, tuple)
    assert isinstance(config.server.listen, tuple)
    assert config.server.listen_addresses == (("::", 3333), ("0.0.0.0", 3334))
    with pytest.raises(AttributeError):
        config.server.max_miners = 1  # type: ignore[misc]


def test_tiny_float_difficulties_and_integer_values_are_accepted() -> None:
    config = parse_config(POOL + "[difficulty]\ninitial = 1e-6\nminimum = 1e-6\nmaximum = 1\n")
    assert config.difficulty.initial == 1e-6
    assert config.difficulty.maximum == 1.0


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("stratum+tcp://pool.example.com:3333", ("pool.example.com", 3333, False)),
        ("stratum+ssl://pool.example.com:443", ("pool.example.com", 443, True)),
        ("STRATUM+TCP://10.0.0.1:1/", ("10.0.0.1", 1, False)),
        ("stratum+tcp://[2001:db8::1]:65535", ("2001:db8::1", 65535, False)),
    ],
)
def test_parse_pool_url(url: str, expected: tuple[str, int, bool]) -> None:
    assert parse_pool_url(url) == expected


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://pool.example.com:3333", "unsupported scheme"),
        ("stratum+tcp://pool.example.com", "missing port"),
        ("stratum+tcp://pool.example.com:", "invalid port"),
        ("stratum+tcp://pool.example.com:0", "out of range"),
        ("stratum+tcp://pool.example.com:65536", "out of range"),
        ("stratum+tcp://user:pw@pool.example.com:3333", "credentials"),
        ("stratum+tcp://pool.example.com:3333/path", "path"),
        ("pool.example.com:3333", "expected stratum"),
        ("stratum+tcp://2001:db8::1:3333", "brackets"),
    ],
)
def test_parse_pool_url_rejects(url: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_pool_url(url)


def test_parse_listen_address_allows_port_zero_for_tests() -> None:
    assert parse_listen_address("127.0.0.1:0") == ("127.0.0.1", 0)
    assert parse_listen_address("[::1]:3333") == ("::1", 3333)
    with pytest.raises(ValueError, match="missing port"):
        parse_listen_address("[::1]")


# --------------------------------------------------------------------------- errors


def test_error_str_is_one_line_with_file_line_and_key() -> None:
    err = error(POOL + "[difficulty]\nminimum = 20000.0\n")
    assert (err.key, err.line) == ("difficulty.minimum", 6)
    assert str(err) == "proxy.toml:6: difficulty.minimum: must be <= difficulty.initial (16384.0)"
    assert isinstance(err, ValueError)
    assert "\n" not in str(err)


def test_unknown_top_level_key() -> None:
    err = error("colour = 'blue'\n" + POOL)
    assert (err.key, err.line) == ("colour", 1)
    assert "unknown key" in err.message


def test_unknown_top_level_table() -> None:
    err = error(POOL + "\n[metrics]\nport = 1\n")
    assert (err.key, err.line) == ("metrics", 6)


def test_unknown_nested_key_names_full_path_and_suggests() -> None:
    err = error(POOL + "[server]\nlisten = ['0.0.0.0:3333']\nmax_minerz = 5\n")
    assert (err.key, err.line) == ("server.max_minerz", 7)
    assert "did you mean 'max_miners'" in err.message
    assert str(err).startswith("proxy.toml:7: server.max_minerz: unknown key")


def test_unknown_key_in_pool_entry() -> None:
    err = error(POOL + BACKUP + "worker = 'x'\n")
    assert (err.key, err.line) == ("pools[1].worker", 10)


def test_wrong_type_names_key() -> None:
    err = error(POOL + "[difficulty]\ninitial = 'high'\n")
    assert (err.key, err.line) == ("difficulty.initial", 6)
    assert err.message == "expected float, got str"


def test_wrong_type_bool_for_int() -> None:
    err = error(POOL + "[server]\nmax_miners = true\n")
    assert err.key == "server.max_miners"
    assert "got bool" in err.message


def test_wrong_type_table_expected() -> None:
    err = error("server = 5\n" + POOL)
    assert (err.key, err.line) == ("server", 1)
    assert "expected table" in err.message


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ('drain_target = "0.0.0.0:3333"', "wildcard"),
        ('drain_target = "10.0.0.6"', "missing port"),
        ('drain_target = "10.0.0.6:0"', "out of range"),
        ("drain_wait = -1", "between 0 and 300"),
        ("drain_wait = 301", "between 0 and 300"),
    ],
)
def test_drain_target_and_wait_are_checked(line: str, reason: str) -> None:
    err = error(f"[server]\n{line}\n" + POOL)
    assert err.key == f"server.{line.split(maxsplit=1)[0]}"
    assert reason in err.message


def test_drain_target_accepts_a_host_and_port() -> None:
    config = parse_config('[server]\ndrain_target = "[2001:db8::6]:3333"\ndrain_wait = 5\n' + POOL)
    assert (config.server.drain_target, config.server.drain_wait) == ("[2001:db8::6]:3333", 5.0)


def test_minimum_above_initial() -> None:
    err = error(POOL + "[difficulty]\ninitial = 0.001\nminimum = 0.01\n")
    assert (err.key, err.line) == ("difficulty.minimum", 7)


def test_initial_above_maximum() -> None:
    err = error(POOL + "[difficulty]\nmaximum = 100\n")
    # initial is not in the file: the line falls back to its table's header.
    assert (err.key, err.line) == ("difficulty.initial", 5)
    assert "difficulty.maximum (100.0)" in err.message


@pytest.mark.parametrize("value", ["0", "-1.0", "inf", "nan"])
def test_difficulty_must_be_finite_and_positive(value: str) -> None:
    err = error(POOL + f"[difficulty]\ntarget_share_interval = {value}\n")
    assert err.key == "difficulty.target_share_interval"


def test_bad_url_scheme() -> None:
    err = error(POOL.replace("stratum+tcp", "http"))
    assert (err.key, err.line) == ("pools[0].url", 3)
    assert "unsupported scheme 'http'" in err.message


def test_missing_port() -> None:
    err = error(POOL + BACKUP.replace(":443", ""))
    assert (err.key, err.line) == ("pools[1].url", 7)
    assert "missing port" in err.message


def test_port_out_of_range() -> None:
    err = error(POOL.replace(":3333", ":70000"))
    assert err.key == "pools[0].url"
    assert "out of range" in err.message


def test_duplicate_pool_names() -> None:
    err = error(POOL + BACKUP.replace('"backup"', '"main"'))
    assert (err.key, err.line) == ("pools[1].name", 6)
    assert "duplicate pool name 'main'" in err.message


def test_bad_pool_name() -> None:
    err = error(POOL.replace('"main"', '"main pool"'))
    assert (err.key, err.line) == ("pools[0].name", 2)


def test_missing_user() -> None:
    err = error("[[pools]]\nname = 'a'\nurl = 'stratum+tcp://h:1'\n")
    assert (err.key, err.line) == ("pools[0].user", 1)
    assert err.message == "required key is missing"


def test_empty_user() -> None:
    err = error(POOL.replace('"acct.proxy"', '""'))
    assert err.key == "pools[0].user"


@pytest.mark.parametrize("text", ["", "[server]\nlisten = ['0.0.0.0:3333']\n", "pools = []\n"])
def test_no_pools(text: str) -> None:
    err = error(text)
    assert err.key == "pools"
    assert "at least one [[pools]]" in err.message


def test_bad_log_level() -> None:
    err = error(POOL + "[log]\nlevel = 'verbose'\n")
    assert (err.key, err.line) == ("log.level", 6)
    assert err.message == "'verbose' is not one of debug, info, warning, error"


def test_bad_log_format() -> None:
    err = error(POOL + "[log]\nformat = 'xml'\n")
    assert err.key == "log.format"
    assert "console, json" in err.message


def test_bad_listen_address_names_the_element() -> None:
    err = error(POOL + "[server]\nlisten = [\n  '0.0.0.0:3333',\n  '::1:3333',\n]\n")
    assert (err.key, err.line) == ("server.listen[1]", 6)
    assert "brackets" in err.message


def test_duplicate_listen_address() -> None:
    err = error(POOL + "[server]\nlisten = ['0.0.0.0:3333', '0.0.0.0:3333']\n")
    assert err.key == "server.listen[1]"


@pytest.mark.parametrize(("value", "ok"), [(1023, False), (1024, True), (1048576, True), (1048577, False)])
def test_max_line_bytes_range(value: int, ok: bool) -> None:
    text = POOL + f"[server]\nmax_line_bytes = {value}\n"
    if ok:
        assert parse_config(text).server.max_line_bytes == value
    else:
        assert error(text).key == "server.max_line_bytes"


def test_backoff_max_below_initial() -> None:
    err = error(POOL + "[upstream]\nbackoff_initial = 5.0\nbackoff_max = 2.0\n")
    assert (err.key, err.line) == ("upstream.backoff_max", 7)


def test_toml_syntax_error_has_line() -> None:
    err = error(POOL + "[difficulty]\ninitial = \n")
    assert err.line == 6
    assert err.key == "difficulty.initial"
    assert err.message.startswith("invalid TOML: ")
    assert str(err).startswith("proxy.toml:6: ")


def test_toml_syntax_error_in_header() -> None:
    err = error(POOL + "[server\n")
    assert (err.key, err.line) == ("", 5)
    assert str(err).startswith("proxy.toml:5: invalid TOML: ")


def test_multiline_strings_do_not_confuse_the_line_scan() -> None:
    fake_table = 'password = """\n[difficulty]\nminimum = 1\n"""\n'
    err = error(POOL + fake_table + "[difficulty]\nminimum = 1e9\n")
    assert (err.key, err.line) == ("difficulty.minimum", 10)


def test_validation_applies_to_configs_built_in_code() -> None:
    with pytest.raises(ConfigError) as info:
        DifficultyConfig(initial=1.0, minimum=2.0)
    assert info.value.key == "minimum"
    with pytest.raises(ConfigError):
        Config()


def test_load_config_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}: cannot read config file: No such file or directory"


# --------------------------------------------------------------------------- diff


def test_diff_identical_is_empty() -> None:
    config = parse_config(POOL + BACKUP)
    diff = diff_config(config, parse_config(POOL + BACKUP))
    assert diff == ConfigDiff()
    assert not diff.changed


def test_diff_pools_added_removed_changed() -> None:
    third = BACKUP.replace('"backup"', '"third"')
    old = parse_config(POOL + BACKUP)
    new = parse_config(POOL.replace("acct.proxy", "other.proxy") + third)
    diff = diff_config(old, new)
    assert diff.pools_added == ("third",)
    assert diff.pools_removed == ("backup",)
    assert diff.pools_changed == ("main",)
    assert not diff.pools_reordered
    assert not diff.primary_changed
    assert diff.changed


def test_diff_pool_password_and_url_changes() -> None:
    old = parse_config(POOL + BACKUP)
    assert diff_config(old, parse_config(POOL + BACKUP.replace("secret", "s2"))).pools_changed == ("backup",)
    assert diff_config(old, parse_config(POOL.replace(":3333", ":3334") + BACKUP)).pools_changed == ("main",)


def test_diff_pools_reordered() -> None:
    diff = diff_config(parse_config(POOL + BACKUP), parse_config(BACKUP + POOL))
    assert diff.pools_reordered
    assert diff.primary_changed
    assert diff.pools_changed == ()
    assert (diff.pools_added, diff.pools_removed) == ((), ())


def test_diff_new_primary_without_reorder() -> None:
    diff = diff_config(parse_config(BACKUP), parse_config(POOL + BACKUP))
    assert diff.primary_changed
    assert not diff.pools_reordered
    assert diff.pools_added == ("main",)


def test_diff_sections() -> None:
    old = parse_config(POOL)
    cases: dict[str, ConfigDiff] = {
        "[server]\nlisten = ['0.0.0.0:3334', '0.0.0.0:3333']\n": ConfigDiff(
            listeners_added=("0.0.0.0:3334",)
        ),
        "[server]\nlisten = ['[::]:3333']\n": ConfigDiff(
            listeners_added=("[::]:3333",), listeners_removed=("0.0.0.0:3333",)
        ),
        "[difficulty]\nvardiff = false\n": ConfigDiff(difficulty_changed=True),
        "[server]\nidle_timeout = 60.0\n": ConfigDiff(server_limits_changed=True),
        "[log]\nlevel = 'debug'\n": ConfigDiff(log_changed=True),
        "[upstream]\nallow_redirect = true\n": ConfigDiff(upstream_changed=True),
        "[http]\nlisten = '0.0.0.0:9100'\n": ConfigDiff(http_changed=True),
    }
    for extra, expected in cases.items():
        assert diff_config(old, parse_config(POOL + extra)) == expected, extra


# --------------------------------------------------------------------------- check CLI


def test_check_ok(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--config", str(EXAMPLE)]) == 0
    out, err = capsys.readouterr()
    assert out == "ok: 1 pool (local), listeners 127.0.0.1:3333\n"
    assert err == ""


def test_check_invalid(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(POOL + "[difficulty]\nminimum = 1e9\n")
    assert main(["check", "--config", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == f"{path}:6: difficulty.minimum: must be <= difficulty.initial (16384.0)\n"


def test_check_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "missing.toml"
    assert main(["check", "--config", str(path)]) == 2
    _, err = capsys.readouterr()
    assert err.count("\n") == 1
    assert str(path) in err
    assert "cannot read config file" in err
