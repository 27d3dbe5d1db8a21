"""v0.3 habits in the CLI's parsing (in-process, on the real parser of `bacalhau-grpc`): words that start
with "-" before `--` are flags, quoted labels, `serve --api-port`, `describe --include-events`, and the
compute flags `devstack` shares with `serve`. The commands themselves run in tests/e2e/test_cli_habits.py."""

import pytest

from bacalhau_grpc import devstack
from bacalhau_grpc.cli import flags, main, serve, submit_flags
from bacalhau_grpc.devstack.nodes import with_flag


def parse(*argv: str):
    return main.build_parser().parse_args(argv)


def refused(capsys, *argv: str) -> str:
    """The one-line error of a command line the parser refuses with exit code 2."""
    with pytest.raises(SystemExit) as exit_:
        parse(*argv)
    assert exit_.value.code == 2
    return capsys.readouterr().err.strip().splitlines()[-1]


# ------------------------------------------------------------------------ words that start with a dash


@pytest.mark.parametrize(
    ("words", "message"),
    [
        (["-foo -bar"], "unknown shorthand flag: 'f' in -foo -bar"),
        (["echo", "-foo -bar"], "unknown shorthand flag: 'f' in -foo -bar"),
        (["-foo"], "unknown shorthand flag: 'f' in -foo"),
        (["echo", "-5"], "unknown shorthand flag: '5' in -5"),
        (["echo", "--x=1"], "unknown flag: --x"),
        (["echo", "--x y"], "unknown flag: --x y"),
        (["-foo -bar", "--", "echo"], "unknown shorthand flag: 'f' in -foo -bar"),
    ],
)
def test_a_dash_word_before_the_double_dash_is_an_unknown_flag_as_in_v03(capsys, words, message):
    error = refused(capsys, "docker", "run", "ubuntu", *words)
    assert error == f"bacalhau-grpc docker run: error: {message} (the job's own arguments go after --)"


@pytest.mark.parametrize(
    ("argv", "image", "command"),
    [
        (["ubuntu", "--", "sh", "-c", "-foo -bar"], "ubuntu", ["sh", "-c", "-foo -bar"]),
        (["ubuntu", "--", "-5", "--x=1", "-"], "ubuntu", ["-5", "--x=1", "-"]),
        (["--", "ubuntu", "echo", "-n"], "ubuntu", ["echo", "-n"]),
        (["ubuntu", "echo", "-"], "ubuntu", ["echo", "-"]),
        (["-c", "2", "ubuntu", "echo", "hi"], "ubuntu", ["echo", "hi"]),
    ],
)
def test_words_after_the_double_dash_are_the_command_whatever_they_look_like(argv, image, command):
    args = parse("docker", "run", *argv)
    assert (args.image, args.command) == (image, command)


def test_wasm_run_reads_dash_words_as_v03_did(capsys):
    assert parse("wasm", "run", "main.wasm", "--", "-n", "5").args == ["-n", "5"]
    error = refused(capsys, "wasm", "run", "main.wasm", "-n 5")
    assert "unknown shorthand flag: 'n' in -n 5" in error


def test_unknown_flag_is_pflags_message():
    assert flags.unknown_flag("-foo -bar") == "unknown shorthand flag: 'f' in -foo -bar"
    assert flags.unknown_flag("--foo=1") == "unknown flag: --foo"


# ---------------------------------------------------------------------------------------------- labels


@pytest.mark.parametrize(
    ("values", "labels"),
    [
        (["'a'"], ["a"]),
        (['"a"'], ["a"]),
        ([" 'a' "], ["a"]),
        (["'a', \"b\",c"], ["a", "b", "c"]),
        (['"x,y"'], ["x,y"]),  # a quoted comma stays in its label, as pflag's CSV reading keeps it
        (["plain", "e2e"], ["plain", "e2e"]),
    ],
)
def test_labels_lose_surrounding_quotes_and_spaces(values, labels):
    assert submit_flags.safe_labels(values) == labels


def test_a_label_unsafe_inside_is_still_dropped_with_a_warning(capsys):
    assert submit_flags.safe_labels(["'it''s'", "ok"]) == ["ok"]
    assert "label \"it''s\" dropped" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------- serve


def test_serve_takes_v03s_api_port_as_port():
    args = parse("serve", "--node-type", "verifier", "--api-port", "4321")
    assert serve.build_settings(args, environ={}).port == 4321
    assert parse("serve", "--node-type", "verifier", "--port", "4321").port == 4321


def test_serve_booleans_take_gos_forms():
    args = parse("serve", "--node-type", "requester", "--allow-unsigned=false")
    assert args.allow_unsigned is False
    assert parse("serve", "--node-type", "requester", "--allow-unsigned").allow_unsigned is True


# ------------------------------------------------------------------------------------------- describe


@pytest.mark.parametrize(
    ("argv", "include"),
    [
        ([], True),
        (["--include-events"], True),
        (["--include-events=false"], False),
        (["--no-include-events"], False),
    ],
)
def test_describe_takes_include_events(argv, include):
    args = parse("describe", "3f2a1b9c", *argv, "--spec")
    assert args.include_events is include


# -------------------------------------------------------------------------------------------- devstack


def test_devstack_takes_the_compute_flags_of_serve_and_passes_them_on():
    args = parse(
        "devstack",
        "--limit-total-cpu",
        "1",
        "--job-selection-probe-http",
        "http://127.0.0.1:9/ok",
        "--job-selection-reject-stateless",
        "--noop-exit-code",
        "3",
        "--noop-stdout",
        "-x y",
        "--compute-flag=--log-level=DEBUG",
    )
    assert serve.settings_arguments(args, args.compute_settings) == [
        "--job-selection-probe-http=http://127.0.0.1:9/ok",
        "--job-selection-reject-stateless",
        "--limit-total-cpu=1",
        "--noop-exit-code=3",
        "--noop-stdout=-x y",
    ]
    assert args.compute_flag == ["--log-level=DEBUG"]


def test_devstack_passes_on_no_compute_flag_that_was_not_given():
    args = parse("devstack")
    assert serve.settings_arguments(args, args.compute_settings) == []
    assert args.restart_on_crash is False
    assert parse("devstack", "--restart-on-crash").restart_on_crash is True
    assert args.insecure is False  # TLS by default
    assert parse("devstack", "--insecure").insecure is True


# (`--data-dir` is the devstack's own: the folder of every node's data dir; `--insecure` too: every node's
# transport.)
@pytest.mark.parametrize("setting", sorted(set(devstack.PER_NODE_SETTINGS) - {"data_dir", "insecure"}))
def test_devstack_decides_each_nodes_own_settings(setting, capsys):
    flag = "--" + setting.replace("_", "-")
    assert flag in refused(capsys, "devstack", flag, "x")


def test_the_compute_flags_are_the_same_in_serve_and_devstack():
    fields = serve.settings_fields()
    compute = {name for name, (_, _, owners) in fields.items() if "compute" in owners}
    assert set(parse("devstack").compute_settings) == compute - set(devstack.PER_NODE_SETTINGS)


def test_a_restart_keeps_the_port_and_node_id():
    args = ["serve", "--port", "0", "--data-dir", "d"]
    again = with_flag(with_flag(args, "--port", "4567"), "--node-id", "node-1")
    assert again == ["serve", "--port", "4567", "--data-dir", "d", "--node-id", "node-1"]
    assert with_flag(again, "--port", "4567") == again
