"""The strace parser on recorded output: split lines, signals, exits, annotations."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from zcopy.tools import strace

# Recorded from `strace -f -qq -yy -s 0` on a threaded Python server (paths shortened).
SPLIT = """\
8060  clone3({flags=CLONE_VM|CLONE_FS|CLONE_FILES|CLONE_SIGHAND|CLONE_THREAD|CLONE_SYSVSEM, child_tid=0x7f3e, parent_tid=0x7f3e, exit_signal=0, stack=0x7f3e, stack_size=0x7fff80, tls=0x7f3e} => {parent_tid=[8061]}, 88) = 8061
8060  sendto(5<TCP:[127.0.0.1:41610->127.0.0.1:33223]>, ""..., 3, 0, NULL, 0 <unfinished ...>
8061  recvfrom(4<TCP:[127.0.0.1:33223->127.0.0.1:41610]>,  <unfinished ...>
8060  <... sendto resumed>)             = 3
8061  <... recvfrom resumed>""..., 100, 0, NULL, NULL) = 3
8061  sendfile(4<TCP:[127.0.0.1:33223->127.0.0.1:41610]>, 6</tmp/blob>, [0] <unfinished ...>
8060  --- SIGCHLD {si_signo=SIGCHLD, si_code=CLD_EXITED, si_pid=8070, si_uid=0, si_status=0} ---
8061  <... sendfile resumed> => [3000000], 1073741824) = 3000000
8061  sendfile(4<TCP:[127.0.0.1:33223->127.0.0.1:41610]>, 6</tmp/blob>, [3000000], 1073741824) = 0
8061  +++ exited with 0 +++
"""  # noqa: E501


def test_split_lines_are_joined_per_pid() -> None:
    calls = strace.parse_lines(SPLIT.splitlines())
    assert [(c.pid, c.name, c.ret) for c in calls] == [
        (8060, "clone3", 8061),
        (8060, "sendto", 3),
        (8061, "recvfrom", 3),
        (8061, "sendfile", 3000000),
        (8061, "sendfile", 0),
    ]
    sendto = calls[1]
    assert sendto.fds == [(5, "TCP:[127.0.0.1:41610->127.0.0.1:33223]")]
    sendfile = calls[3]
    assert sendfile.fds == [(4, "TCP:[127.0.0.1:33223->127.0.0.1:41610]"), (6, "/tmp/blob")]
    assert sendfile.ok


def test_errors_eagain_and_restarts() -> None:
    lines = [
        "77 sendfile(5<TCP:[[::1]:80->[::1]:5000]>, 3</srv/f>, [0], 65536)"
        " = -1 EAGAIN (Resource temporarily unavailable)",
        "77 read(3</srv/f>,  <unfinished ...>",
        '77 <... read resumed>""..., 65536) = ? ERESTARTSYS (To be restarted if SA_RESTART is set)',
        "77 write(1</dev/pts/0>, \"\"..., 5) = -1 EPIPE (Broken pipe)",
    ]
    calls = strace.parse_lines(lines)
    assert [(c.name, c.ret, c.error) for c in calls] == [
        ("sendfile", -1, "EAGAIN"),
        ("read", None, "ERESTARTSYS"),
        ("write", -1, "EPIPE"),
    ]
    assert calls[0].fds[0] == (5, "TCP:[[::1]:80->[::1]:5000]")
    assert not any(c.ok for c in calls)


def test_exit_mid_call_and_resumed_without_start() -> None:
    lines = [
        # strace attached while this read was in flight: only the resumed half exists.
        '12 <... read resumed>""..., 4096) = 4096',
        "13 read(7<pipe:[999]>,  <unfinished ...>",
        "13 +++ killed by SIGKILL +++",
        "14 <... write resumed>) = ?",
        "[pid    15] splice(6<UNIX-STREAM:[100->101]>, NULL, 8<pipe:[5]>, NULL, 1048576, "
        "SPLICE_F_MOVE|SPLICE_F_NONBLOCK) = 1048576",
    ]
    calls = strace.parse_lines(lines)
    assert [(c.pid, c.name, c.ret) for c in calls] == [
        (12, "read", 4096),
        (14, "write", None),
        (15, "splice", 1048576),
    ]
    assert calls[0].fds == []  # the fd was on the half strace never saw
    assert [what for _, what in calls[2].fds] == ["UNIX-STREAM:[100->101]", "pipe:[5]"]


def test_lines_without_pid_and_noise() -> None:
    lines = [
        "read(3</etc/hostname>, \"\"..., 4096) = 7",
        "strace: Process 5 attached",
        "",
        "--- SIGINT {si_signo=SIGINT, si_code=SI_KERNEL} ---",
        "+++ exited with 130 +++",
    ]
    calls = strace.parse_lines(lines)
    assert [(c.pid, c.name, c.ret) for c in calls] == [(0, "read", 7)]


def test_commands_ask_for_annotations_and_no_payload() -> None:
    cmd = strace.command("/x/out", ["read", "sendfile"])
    assert cmd[:2] == ["strace", "-f"]
    assert "-yy" in cmd
    assert cmd[cmd.index("-s") + 1] == "0"
    assert "trace=read,sendfile" in cmd
    attach = strace.attach_command("/x/out", [3, 4])
    assert attach[-4:] == ["-p", "3", "-p", "4"]
    assert "clone3" in strace.PROCESS_SYSCALLS


def test_real_trace_parses(tmp_path: Path, strace_proof: None) -> None:

    out = tmp_path / "out"
    code = (
        "import os, threading\n"
        "r, w = os.pipe()\n"
        "t = threading.Thread(target=lambda: os.write(w, b'x' * 1000)); t.start(); t.join()\n"
        "assert os.read(r, 1000) == b'x' * 1000\n"
    )
    subprocess.run(
        [*strace.command(str(out), [*strace.DATA_SYSCALLS, *strace.PROCESS_SYSCALLS]),
         sys.executable, "-c", code],
        check=True, timeout=60,
    )
    calls = strace.parse_lines(out.read_text().splitlines())
    writes = [c for c in calls if c.name == "write" and c.ret == 1000]
    assert len(writes) == 1
    assert writes[0].fds[0][1].startswith("pipe:[")
    clones = [c for c in calls if c.name in strace.PROCESS_SYSCALLS]
    assert any(c.ret == writes[0].pid for c in clones), "the writing thread's birth was traced"


def test_device_annotations_nest() -> None:
    [c] = strace.parse_lines(['9 write(1</dev/null<char 1:3>>, ""..., 82) = 82'])
    assert c.fds == [(1, "/dev/null<char 1:3>")]


def _proof_run(tmp_path: Path, ci: str) -> subprocess.CompletedProcess[str]:
    """The proof tests run by pytest with a ``strace`` on PATH that may not trace (exits 1)."""
    fake = tmp_path / "bin"
    fake.mkdir(exist_ok=True)
    (fake / "strace").write_text("#!/bin/sh\necho 'ptrace: Operation not permitted' >&2\nexit 1\n")
    (fake / "strace").chmod(0o755)
    tests = Path(__file__).resolve().parent
    env = dict(os.environ, PATH=f"{fake}:{os.environ['PATH']}", CI=ci)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rfs", "-p", "no:cacheprovider", "--no-header",
         "-o", "addopts=", f"--rootdir={tests.parent}",
         f"{tests / 'test_routes_proof.py'}::test_file_to_file_is_copy_file_range",
         f"{tests / 'test_strace.py'}::test_real_trace_parses"],
        capture_output=True, text=True, timeout=120, env=env, cwd=tests.parent,
    )


def test_proofs_fail_in_ci_when_strace_cannot_trace(tmp_path: Path) -> None:
    """CI=true: a proof that strace cannot witness fails, naming why; never a quiet skip."""
    ci = _proof_run(tmp_path, "true")
    assert ci.returncode == 1, ci.stdout
    # The one that calls require_strace() fails; the one with the fixture errors in setup.
    assert ci.stdout.rstrip().splitlines()[-1].startswith("1 failed, 1 error in "), ci.stdout
    assert "skipped" not in ci.stdout and "passed" not in ci.stdout
    assert ci.stdout.count("strace proof cannot run in CI") >= 2
    assert "Operation not permitted" in ci.stdout, "the reason strace gave is passed on"


def test_proofs_skip_with_the_reason_outside_ci(tmp_path: Path) -> None:
    local = _proof_run(tmp_path, "")
    assert local.returncode == 0, local.stdout
    assert "2 skipped" in local.stdout and "Operation not permitted" in local.stdout, local.stdout


def test_endpoint_kinds_from_annotations() -> None:
    assert strace.kind_of("/dev/null") == "device"
    assert strace.kind_of("/dev/pts/3") == "tty"
    assert strace.kind_of("UNIX-STREAM:[1->2]") == "socket"
    assert strace.kind_of("TCPv6:[[::1]:1->[::1]:2]") == "socket"
    assert strace.kind_of("anon_inode:[eventfd]") == "other"
    assert strace.kind_of("/tmp/x (deleted)") == "file"
