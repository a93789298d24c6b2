"""[[groups]]: the routing groups, each mistake one line naming the key."""

from __future__ import annotations

import pytest

from proxy.cli import main
from proxy.config import DEFAULT_GROUP, ConfigError, RouteConfig, diff_config, parse_config
from proxy.config_groups import routes_problem

BASE = """\
[server]
listen = ["127.0.0.1:3333", "127.0.0.1:3334"]

[[pools]]
name = "braiins"
url = "stratum+tcp://127.0.0.1:1"
user = "acct"

[[pools]]
name = "backup"
url = "stratum+tcp://127.0.0.1:2"
user = "acct"

[[pools]]
name = "customer-b"
url = "stratum+tcp://127.0.0.1:3"
user = "acct"
"""

GROUP = """
[[groups]]
name = "site1-s21"
match = { workers = ["acct.s21-*"], sources = ["10.1.0.0/16"], listeners = ["127.0.0.1:3333"] }
split = "time"
slice_seconds = 60

[[groups.routes]]
weight = 70
pools = ["braiins", "backup"]

[[groups.routes]]
weight = 30
pools = ["customer-b"]
"""


def error(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "proxy.toml")
    return info.value


def test_the_issue_example_parses() -> None:
    config = parse_config(BASE + GROUP)
    (group,) = config.groups
    assert group.name == "site1-s21"
    assert group.split == "time"
    assert group.slice_seconds == 60
    assert group.match.workers == ("acct.s21-*",)
    assert [(r.weight, r.pools) for r in group.routes] == [(70, ("braiins", "backup")), (30, ("customer-b",))]
    names = [g.name for g in config.routing_groups]
    assert names == ["site1-s21", DEFAULT_GROUP]


def test_without_groups_the_default_group_is_every_pool_in_priority_order() -> None:
    config = parse_config(BASE)
    (default,) = config.routing_groups
    assert default.name == DEFAULT_GROUP
    assert default.split == "miners"
    assert [r.pools for r in default.routes] == [("braiins", "backup", "customer-b")]


def test_a_configured_default_group_replaces_the_implicit_one_and_comes_last() -> None:
    default = GROUP.replace('name = "site1-s21"', 'name = "default"').replace(
        'match = { workers = ["acct.s21-*"], sources = ["10.1.0.0/16"], listeners = ["127.0.0.1:3333"] }\n',
        "",
    )
    text = BASE + default + GROUP
    assert [g.name for g in parse_config(text).routing_groups] == ["site1-s21", "default"]


def test_the_default_group_has_no_match() -> None:
    err = error(BASE + GROUP.replace('name = "site1-s21"', 'name = "default"'))
    assert err.key == "groups[0].match"
    assert "takes every miner no other group matches" in err.message


@pytest.mark.parametrize(
    ("old", "new", "key", "message"),
    [
        ('pools = ["customer-b"]', 'pools = ["nope"]', "groups[0].routes[1].pools[0]", "unknown pool 'nope'"),
        ("weight = 30", "weight = 0", "groups[0].routes[1].weight", "must be a finite number > 0"),
        ("weight = 30", "weight = -5", "groups[0].routes[1].weight", "must be a finite number > 0"),
        ("slice_seconds = 60", "slice_seconds = 4", "groups[0].slice_seconds", "between 5 and 3600"),
        ("slice_seconds = 60", "slice_seconds = 3601", "groups[0].slice_seconds", "between 5 and 3600"),
        ('"10.1.0.0/16"', '"10.1.0.0/33"', "groups[0].match.sources[0]", "not a network in CIDR form"),
        ('"127.0.0.1:3333"]', '"127.0.0.1:9"]', "groups[0].match.listeners[0]", "not one of server.listen"),
        ('split = "time"', 'split = "hours"', "groups[0].split", "'hours'"),
        ('pools = ["customer-b"]', 'pools = ["backup"]', "groups[0].routes[1].pools[0]", "in routes[0]"),
        ('pools = ["customer-b"]', "pools = []", "groups[0].routes[1].pools", "at least one pool"),
        ('name = "site1-s21"', 'name = "a b"', "groups[0].name", "must match"),
        ("slice_seconds = 60", "slice = 60", "groups[0].slice", "unknown key (did you mean 'split'?)"),
    ],
)
def test_each_mistake_is_one_line_naming_the_key(old: str, new: str, key: str, message: str) -> None:
    text = BASE + GROUP.replace(old, new, 1)
    assert text != BASE + GROUP
    err = error(text)
    assert err.key == key
    assert message in err.message
    assert err.line is not None
    assert "\n" not in str(err)


def test_no_routes_is_an_error() -> None:
    text = BASE + '\n[[groups]]\nname = "g"\nroutes = []\n'
    assert error(text).key == "groups[0].routes"


def test_duplicate_group_names_and_shared_listeners_are_errors() -> None:
    twice = BASE + GROUP + GROUP
    err = error(twice)
    assert err.key == "groups[1].name"
    assert "duplicate group name" in err.message
    other = BASE + GROUP + GROUP.replace('name = "site1-s21"', 'name = "other"')
    err = error(other)
    assert err.key == "groups[1].match.listeners[0]"
    assert "also matched by groups[0]" in err.message


def test_a_glob_that_matches_nothing_is_fine() -> None:
    text = BASE + GROUP.replace("acct.s21-*", "nobody-*")
    assert parse_config(text).groups[0].match.workers == ("nobody-*",)


def test_a_groups_change_shows_in_the_diff() -> None:
    old = parse_config(BASE + GROUP)
    new = parse_config(BASE + GROUP.replace("weight = 30", "weight = 40"))
    assert diff_config(old, new).groups_changed
    assert not diff_config(old, old).groups_changed


def test_api_routes_are_checked_against_the_pools() -> None:
    names = ["a", "b"]
    assert routes_problem([RouteConfig(weight=1, pools=("a",))], names) is None
    assert routes_problem([], names) == "at least one route is required"
    assert routes_problem([RouteConfig(weight=1, pools=("z",))], names) == "routes[0]: unknown pool 'z'"
    twice = [RouteConfig(weight=1, pools=("a",)), RouteConfig(weight=1, pools=("b", "a"))]
    assert routes_problem(twice, names) == "routes[1]: pool 'a' is in another route of this group"


def test_check_prints_one_line_for_a_bad_group(tmp_path: object, capsys: pytest.CaptureFixture[str]) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "proxy.toml"
    path.write_text(BASE + GROUP.replace('pools = ["customer-b"]', 'pools = ["nope"]'))
    assert main(["check", "--config", str(path)]) != 0
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "groups[0].routes[1].pools[0]: unknown pool 'nope'" in err
