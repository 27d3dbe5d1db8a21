"""Sharding (Bacalhau v0.3's rules): exploding inputs, the doublestar glob table, batches and the plan;
listing content on disk in walk order."""

import pytest

from bacalhau_grpc.common.content.listing import list_tree
from bacalhau_grpc.common.errors import InvalidArgumentError
from bacalhau_grpc.common.model import pb, sharding
from bacalhau_grpc.common.model.sharding import Atom

IPFS = pb.StorageSourceType.STORAGE_SOURCE_TYPE_IPFS
URL = pb.StorageSourceType.STORAGE_SOURCE_TYPE_URL_DOWNLOAD

SIMPLE = ["/a", "/a/file1.txt", "/a/file2.txt", "/b", "/b/file1.txt", "/b/file2.txt"]
BASE = ["/a", "/a/file1.txt", "/a/file2.txt", "/a/file3.txt", "/a/file4.txt", "/a/apples.txt"]
VIDEOS = [
    "/inputs",
    "/inputs/Bird flying over the lake.mp4",
    "/inputs/Calm waves on a rocky sea gulf.mp4",
    "/inputs/Prominent Late Gothic styled architecture.mp4",
]


def atoms(paths: list[str]) -> list[Atom]:
    return [Atom(0, "", path) for path in paths]


def matched(paths: list[str], pattern: str, base_path: str = "") -> list[str]:
    return [atom.path for atom in sharding.matches(atoms(paths), pattern, base_path)]


def ipfs(path: str = "/inputs", cid: str = "bafyexample") -> pb.StorageSpec:
    return pb.StorageSpec(storage_source=IPFS, cid=cid, path=path)


def listing(*sub_paths: str) -> list[tuple[str, bool]]:
    """A listing whose entries are folders when they have entries below them."""
    return [(p, any(other.startswith(p + "/") for other in sub_paths) or p == "") for p in ("", *sub_paths)]


# ------------------------------------------------------------------------------------------------
# The glob table (v0.3's pkg/job sharding tests)
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("paths", "pattern", "base_path", "expected"),
    [
        pytest.param(SIMPLE, "/*", "", ["/a", "/b"], id="top level folders"),
        pytest.param(SIMPLE, "/**/*", "", SIMPLE, id="everything"),
        pytest.param(
            SIMPLE,
            "/**/*.*",
            "",
            ["/a/file1.txt", "/a/file2.txt", "/b/file1.txt", "/b/file2.txt"],
            id="only files in folders",
        ),
        pytest.param(BASE, "/file*.txt", "/a", BASE[1:5], id="base path"),
        pytest.param(VIDEOS, "/inputs/*.mp4", "", VIDEOS[1:], id="spaces in file names"),
        pytest.param(VIDEOS, "*.mp4", "/inputs", VIDEOS[1:], id="no leading slash in the pattern"),
    ],
)
def test_bacalhau_v03s_glob_table(paths, pattern, base_path, expected):
    assert matched(paths, pattern, base_path) == expected


def test_paths_without_a_leading_slash_get_one():
    volume = ipfs(path="inputs")  # as v0.3's "no leading slash in file names" case
    exploded = sharding.explode([volume], [listing(*(p.removeprefix("/inputs/") for p in VIDEOS[1:]))])
    assert [a.path for a in exploded] == VIDEOS
    assert [a.path for a in sharding.matches(exploded, "/*.mp4", "/inputs")] == VIDEOS[1:]


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("/**", SIMPLE),  # a trailing /** matches the folder itself too
        ("/a/**", ["/a", "/a/file1.txt", "/a/file2.txt"]),
        ("/**/file1.txt", ["/a/file1.txt", "/b/file1.txt"]),
        ("/{a,b}/file[12].txt", SIMPLE[1:3] + SIMPLE[4:]),
        ("/?/file[!1].txt", ["/a/file2.txt", "/b/file2.txt"]),
        ("/[a-a]/*", ["/a/file1.txt", "/a/file2.txt"]),
        ("/*/**.txt", SIMPLE[1:3] + SIMPLE[4:]),  # `**` inside a segment is a `*`
        ("/a/file\\1.txt", ["/a/file1.txt"]),
        ("/a*", ["/a"]),  # `*` never crosses a "/"
        ("/b/file2.txt", ["/b/file2.txt"]),
    ],
)
def test_doublestar_syntax(pattern, expected):
    assert matched(SIMPLE, pattern) == expected


def test_regular_expression_characters_in_names_are_literal():
    paths = ["/in/a+b (1).txt", "/in/ab (1).txt", "/in/x.y"]
    assert matched(paths, "/in/a+b (1).txt") == ["/in/a+b (1).txt"]
    assert matched(paths, "/in/x?y") == ["/in/x.y"]


def test_the_base_path_is_removed_only_from_paths_under_it():
    paths = ["/inputs/x.csv", "/inputs2/y.csv", "/data/z.csv"]
    assert matched(paths, "/*.csv", "/inputs/") == ["/inputs/x.csv"]  # a trailing "/" is ignored
    assert matched(paths, "/data/*.csv", "/inputs") == ["/data/z.csv"]  # outside it: matched whole
    assert matched(paths, "/inputs2/*", "/inputs") == ["/inputs2/y.csv"]


@pytest.mark.parametrize("pattern", ["/[", "/[]", "/{a,b", "/a\\", "/[z-a]"])
def test_a_malformed_pattern_is_an_invalid_argument(pattern):
    with pytest.raises(InvalidArgumentError, match="bad glob pattern") as caught:
        sharding.compile_glob(pattern)
    assert caught.value.field == "Spec.Sharding.GlobPattern"


# ------------------------------------------------------------------------------------------------
# Exploding, batching, planning
# ------------------------------------------------------------------------------------------------


def url(address: str, path: str = "/inputs") -> pb.StorageSpec:
    return pb.StorageSpec(storage_source=URL, url=address, path=path)


def test_an_ipfs_input_explodes_into_its_entries_and_other_inputs_are_themselves():
    exploded = sharding.explode(
        [ipfs("/inputs/"), url("http://example.com/x.csv", "/data")], [listing("a", "a/1.txt", "b.txt"), None]
    )
    assert exploded == [
        Atom(0, "", "/inputs"),
        Atom(0, "a", "/inputs/a"),
        Atom(0, "a/1.txt", "/inputs/a/1.txt"),
        Atom(0, "b.txt", "/inputs/b.txt"),
        Atom(1, "", "/data/x.csv"),
    ]


def test_a_url_input_is_the_file_it_becomes_named_from_the_url():
    inputs = [url("http://example.com/data/a%20b.txt?version=2"), url("https://example.com/c.csv", "/in/")]
    assert sharding.explode(inputs, [None, None]) == [
        Atom(0, "", "/inputs/a b.txt"),
        Atom(1, "", "/in/c.csv"),
    ]


def test_a_glob_over_file_names_selects_url_inputs():
    inputs = [url("http://h/a%20b.txt"), url("http://h/notes.md"), url("http://h/dir/c.txt")]
    shards = sharding.plan(sharded_spec("*.txt", 1, "/inputs", *inputs), [None, None, None])
    assert shards == [[Atom(0, "", "/inputs/a b.txt")], [Atom(2, "", "/inputs/c.txt")]]


def test_url_inputs_and_ipfs_entries_are_batched_together_in_order():
    inputs = [url(f"http://h/{i}.txt") for i in range(5)]
    shards = sharding.plan(sharded_spec("/inputs/*.txt", 2, "", *inputs), [None] * 5)
    assert [[a.path for a in shard] for shard in shards] == [
        ["/inputs/0.txt", "/inputs/1.txt"],
        ["/inputs/2.txt", "/inputs/3.txt"],
        ["/inputs/4.txt"],
    ]
    mixed = sharding.plan(
        sharded_spec("*.txt", 2, "/inputs", ipfs(), url("http://h/z.txt")), [listing("y.txt"), None]
    )
    assert mixed == [[Atom(0, "y.txt", "/inputs/y.txt"), Atom(1, "", "/inputs/z.txt")]]


def test_without_a_pattern_a_url_input_is_still_its_file():
    assert sharding.plan(sharded_spec("", 1, "", url("http://h/x.bin")), [None]) == [
        [Atom(0, "", "/inputs/x.bin")]
    ]


def test_a_url_naming_no_file_is_refused_naming_the_input():
    with pytest.raises(InvalidArgumentError) as caught:
        sharding.plan(
            sharded_spec("*", 1, "/inputs", url("http://h/a.txt"), url("http://h/dir/")), [None, None]
        )
    assert caught.value.field == "Spec.inputs[1].URL"
    assert caught.value.reason == (
        "URL 'http://h/dir/' has no file name: its path must end in the name of the file to download"
    )


def test_an_input_at_the_root_gives_atoms_at_the_root():
    exploded = sharding.explode([ipfs("/")], [listing("a.txt")])
    assert [a.path for a in exploded] == ["/", "/a.txt"]


def test_entries_seen_twice_count_once():
    exploded = sharding.explode([ipfs()], [[("", True), ("a", False), ("a/", False)]])
    assert [a.sub_path for a in exploded] == ["", "a"]


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        (2, [[0, 1], [2, 3], [4]]),
        (5, [[0, 1, 2, 3, 4]]),
        (7, [[0, 1, 2, 3, 4]]),
        (0, [[i] for i in range(5)]),
    ],
)
def test_batches_keep_order_and_the_last_one_may_be_short(size, expected):
    items = atoms([f"/{i}" for i in range(5)])
    assert [[int(a.path[1:]) for a in batch] for batch in sharding.batches(items, size)] == expected


@pytest.mark.parametrize("size", [0, -1, -100])
def test_a_batch_size_of_zero_or_less_means_one(size):
    assert sharding.batches(atoms(["/a", "/b"]), size) == [[Atom(0, "", "/a")], [Atom(0, "", "/b")]]


def sharded_spec(pattern: str, batch_size: int = 1, base_path: str = "", *inputs: pb.StorageSpec) -> pb.Spec:
    spec = pb.Spec()
    spec.inputs.extend(inputs or [ipfs()])
    spec.sharding.glob_pattern = pattern
    spec.sharding.batch_size = batch_size
    spec.sharding.base_path = base_path
    return spec


def test_the_plan_groups_the_matching_atoms_into_batches():
    content = listing(*(f"{i}.txt" for i in range(5)), "notes.md")
    shards = sharding.plan(sharded_spec("*.txt", 2, "/inputs"), [content])
    assert [[a.path for a in shard] for shard in shards] == [
        ["/inputs/0.txt", "/inputs/1.txt"],
        ["/inputs/2.txt", "/inputs/3.txt"],
        ["/inputs/4.txt"],
    ]
    assert sharding.shard_of(shards, 2) == [Atom(0, "4.txt", "/inputs/4.txt")]


def test_without_a_pattern_one_shard_holds_every_input_as_it_is():
    spec = sharded_spec("", 1, "", ipfs("/one"), ipfs("two"))
    assert sharding.plan(spec, [None, None]) == [[Atom(0, "", "/one"), Atom(1, "", "/two")]]


def test_a_pattern_matching_nothing_is_refused_with_v0_3s_message():
    with pytest.raises(InvalidArgumentError) as caught:
        sharding.plan(sharded_spec("/nothing/*"), [listing("a.txt")])
    assert caught.value.reason == "no sharding atoms found for glob pattern /nothing/*"
    assert caught.value.field == "Spec.Sharding.GlobPattern"


def test_a_shard_out_of_range_says_how_many_there_are():
    shards = sharding.plan(sharded_spec("/inputs/*"), [listing("a", "b")])
    with pytest.raises(InvalidArgumentError, match=r"shard 2 is out of range \(the job has 2\)"):
        sharding.shard_of(shards, 2)


def test_ten_thousand_atoms_are_planned_in_one_pass():
    """10,000 shards of one job: the plan is one linear pass (no timing asserted: see bench/)."""
    content = [("", True)] + [(f"d{i // 100}/f{i}.dat", False) for i in range(10_000)]
    shards = sharding.plan(sharded_spec("/**/*.dat", 1, "/inputs"), [content])
    assert len(shards) == 10_000
    assert shards[9_999] == [Atom(0, "d99/f9999.dat", "/inputs/d99/f9999.dat")]
    assert len(sharding.plan(sharded_spec("/**/*.dat", 3, "/inputs"), [content])) == 3_334


# ------------------------------------------------------------------------------------------------
# Listing content on disk
# ------------------------------------------------------------------------------------------------


def test_a_folder_lists_depth_first_with_sorted_names_root_first(tmp_path):
    for name in ("b/2.txt", "b/1.txt", "a.txt", "c/d/e.txt", "B.txt", "a b.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(name)
    assert list_tree(tmp_path) == [
        ("", True),
        ("B.txt", False),
        ("a b.txt", False),
        ("a.txt", False),
        ("b", True),
        ("b/1.txt", False),
        ("b/2.txt", False),
        ("c", True),
        ("c/d", True),
        ("c/d/e.txt", False),
    ]


def test_a_file_lists_as_itself(tmp_path):
    (tmp_path / "one.txt").write_text("1")
    assert list_tree(tmp_path / "one.txt") == [("", False)]
