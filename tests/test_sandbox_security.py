"""The code interpreter's sandbox under attack: every attempt fails cleanly and the bot stays healthy.

These drive the real thing: bubblewrap and the sandbox's Python (``make sandbox``, which ``make test``
runs first). Nothing is skipped when either is missing: the tests fail and say what to run.

Nothing here reaches the internet: the sandbox has no network interface, so connections fail at
once; a connection that succeeded would be the failure. After every test, no process of its
sessions is left on the host.

The host is shared (other checkouts run this suite at the same time), so the tests look only at
what they started: the process trees of their own sandboxes, the children this process started
during the test, and this process's session cgroups; never at every process of a uid. And each run
gives its sessions uids no other run uses, so two suites' sandboxes never share a user.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import sqlite3
import textwrap
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from agents import FunctionTool
from agents.tool_context import ToolContext

from core.sandbox.cgroups import MemoryCgroups
from core.sandbox.inputs import InputFile
from core.sandbox.process import ExecResult, Sandbox, SandboxLimits, SandboxLost
from core.sandbox.sessions import CodeSessions, SandboxSettings
from core.tools.code_interpreter import FileOutbox, describe, make_code_interpreter_tool

ROOT = Path(__file__).resolve().parent.parent
SANDBOX_PYTHON = ROOT / ".sandbox" / "bin" / "python"
# As root, session n runs as FIRST_UID + n, as the bot does (sessions never run as root). This run's
# block comes from its pid, which no other live process has, so suites running at the same time never
# share a uid; and it lies far above the bot's default (61000 up), used by bots and by older copies
# of this suite on the same host.
SLOTS = 8  # CodeSessions' default number of sessions (the probe test's settings)
FIRST_UID = 100_000_000 + os.getpid() * SLOTS  # pids stay below 2**22: always below 2**31
UID = FIRST_UID if os.geteuid() == 0 else None
CHANNEL = "console:local:security"
MB = 1 << 20

# Small limits keep the suite fast (the bot's defaults are larger: see ``SandboxLimits``).
LIMITS = SandboxLimits(
    call_seconds=2,
    grace_seconds=1,
    cpu_seconds=60,
    memory_mb=512,
    processes=16,
    file_mb=50,
    workspace_mb=64,
    tmp_mb=16,
    open_files=64,
    output_chars=4000,
    returned_files=5,
    returned_mb=1,
)
LOST_WITHIN = LIMITS.call_seconds + LIMITS.grace_seconds + 3  # seconds: a stuck call ends by then
ALLOWED_ENVIRONMENT = {
    "PATH",
    "HOME",
    "LANG",
    "MPLBACKEND",
    "MPLCONFIGDIR",
    "XDG_CACHE_HOME",
    "PYTHONDONTWRITEBYTECODE",
    "PYTHONUNBUFFERED",
    "OPENBLAS_NUM_THREADS",
    "OMP_NUM_THREADS",
    "PWD",  # set by bubblewrap's --chdir
}
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._ -]{0,120}")


# --- the real sandbox, or a clear failure ---------------------------------------------------------


def _bwrap() -> str:
    path = shutil.which("bwrap")
    if path is None:
        pytest.fail("bubblewrap (bwrap) is not installed: run `make sandbox` (`make test` does it first)")
    return path


def _python() -> Path:
    if not os.access(SANDBOX_PYTHON, os.X_OK):
        pytest.fail(f"the sandbox's Python {SANDBOX_PYTHON} is missing: run `make sandbox` (`make test` does it first)")
    return SANDBOX_PYTHON


def _cgroups() -> MemoryCgroups | None:
    """As the bot finds them: a memory cgroup per session where the machine offers one."""
    return MemoryCgroups.find(_configured_cgroup())[0]


def _configured_cgroup() -> Path | None:
    return Path(os.environ["THREADLINE_SANDBOX_CGROUP"]) if os.environ.get("THREADLINE_SANDBOX_CGROUP") else None


def _require_cgroups() -> None:
    found, why = MemoryCgroups.find(_configured_cgroup())
    if found is None:
        pytest.fail(
            f"no memory cgroup for the sessions: {why}. Run the tests as root, or set THREADLINE_SANDBOX_CGROUP "
            "to a cgroup v2 group delegated to you with the memory controller enabled"
        )


async def _start(limits: SandboxLimits = LIMITS) -> Sandbox:
    return await Sandbox.start(bwrap=_bwrap(), python=_python(), limits=limits, uid=UID, cgroups=_cgroups())


@contextlib.asynccontextmanager
async def _opened(limits: SandboxLimits = LIMITS) -> AsyncIterator[Sandbox]:
    """A session that is closed afterwards, leaving no process behind."""
    before = _children()
    box = await _start(limits)
    seen = _session_processes([box.pid])  # from the start: a session lost during the test is checked too
    try:
        yield box
    except BaseException:
        await box.close()
        raise
    seen |= _session_processes([box.pid])
    await box.close()
    await _assert_all_gone(seen, "after Sandbox.close()", children_before=before)
    _assert_no_cgroup_left("after Sandbox.close()")


@contextlib.asynccontextmanager
async def _code_sessions(
    *, idle_seconds: float = 3600.0, files: Iterable[tuple[str, bytes]] = (), limits: SandboxLimits = LIMITS
) -> AsyncIterator[CodeSessions]:
    """Sessions per channel as the bot keeps them; closed afterwards, leaving no process behind."""
    uploads = list(files)

    async def channel_files(channel: str) -> list[tuple[str, bytes]]:
        return uploads

    settings = SandboxSettings(
        python=_python(), limits=limits, idle_seconds=idle_seconds, max_sessions=2, first_uid=FIRST_UID
    )
    before = _children()
    sessions = CodeSessions(settings, _bwrap(), channel_files, _cgroups())
    try:
        yield sessions
    except BaseException:
        await sessions.close()
        raise
    seen = _session_processes(sessions.pids())
    await sessions.close()
    await _assert_all_gone(seen, "after CodeSessions.close()", children_before=before)
    _assert_no_cgroup_left("after CodeSessions.close()")


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    async with _opened() as box:
        yield box


async def _probe(box: Sandbox, code: str) -> Any:
    """Run code that prints one JSON document; return it."""
    result = await box.execute(textwrap.dedent(code))
    assert result.ok, f"{result.error}\n{result.traceback}\n{result.stderr}"
    return json.loads(result.stdout)


async def _assert_healthy(box: Sandbox) -> None:
    token = secrets.token_hex(4)
    result = await box.execute(f"print('alive', {token!r})")
    assert result.ok, result
    assert result.stdout == f"alive {token}\n", f"a fresh call got another reply: {result}"


# --- the host's view: processes and memory --------------------------------------------------------


def _process_table() -> dict[int, tuple[int, str]]:
    """Every live host process: pid -> (parent pid, start time). Zombies have ended: not listed.

    A pid with its start time names one process: a later process given the same pid is another."""
    table: dict[int, tuple[int, str]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] not in ("Z", "X"):
            table[int(entry)] = (int(fields[1]), fields[19])
    return table


def _trees(table: dict[int, tuple[int, str]], roots: Iterable[int]) -> set[tuple[int, str]]:
    found: set[tuple[int, str]] = set()
    frontier = [pid for pid in roots if pid in table]
    while frontier:
        pid = frontier.pop()
        found.add((pid, table[pid][1]))
        frontier += [child for child, (parent, _) in table.items() if parent == pid]
    return found


def _session_processes(roots: Iterable[int]) -> set[tuple[int, str]]:
    """Sandbox processes seen from the host: the process trees of the sandboxes' bubblewrap (``roots``).

    Every process of a session is in its tree while the tree stands: one whose parent ends is adopted
    by the sandbox's own init (its PID namespace's first process), and when that init ends the kernel
    kills the rest. Callers keep what they saw, so an init whose bubblewrap ended first still counts."""
    return _trees(_process_table(), roots)


def _children(table: dict[int, tuple[int, str]] | None = None) -> set[tuple[int, str]]:
    """This process's live children: each sandbox it starts is one (its bubblewrap), until it is reaped."""
    me = os.getpid()
    table = _process_table() if table is None else table
    return {(pid, start) for pid, (parent, start) in table.items() if parent == me}


def _command_line(pid: int) -> str:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:80]
    return "?"


async def _assert_all_gone(
    seen: set[tuple[int, str]], when: str, *, children_before: set[tuple[int, str]] | None = None
) -> None:
    """Nothing the test started is left: no process in ``seen`` (taken earlier: one that left the tree
    still counts), and, given ``children_before`` (this process's children then), nothing under a
    child started since."""
    deadline = time.monotonic() + 5.0
    while True:
        table = _process_table()
        new = [pid for pid, _ in _children(table) - children_before] if children_before is not None else []
        left = {pid for pid, _ in _trees(table, new)}
        left |= {pid for pid, start in seen if pid in table and table[pid][1] == start}
        if not left:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"{when}, sandbox processes are left on the host: {[_command_line(p) for p in sorted(left)]}")
        await asyncio.sleep(0.05)


def _assert_no_cgroup_left(when: str) -> None:
    groups = _cgroups()
    if groups is not None:
        left = sorted(p.name for p in groups.base.glob(f"threadline-sandbox-{os.getpid()}-*"))
        assert left == [], f"{when}, session cgroups are left: {left}"


def _status_kb(key: str) -> int:
    found = re.search(rf"^{key}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.MULTILINE)
    assert found is not None
    return int(found.group(1))


@contextlib.contextmanager
def _bot_memory_growth_below(limit_mb: int) -> Any:
    """The test process's (the bot's) peak resident memory grows by less than ``limit_mb`` inside."""
    try:
        Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current size
        key = "VmHWM"
    except OSError:
        key = "VmRSS"
    before = _status_kb("VmRSS")
    yield
    grown = (_status_kb(key) - before) >> 10
    assert grown < limit_mb, f"the bot's memory grew by {grown} MB"


# --- prerequisites --------------------------------------------------------------------------------


async def test_the_sandbox_is_installed_and_passes_the_start_up_probe() -> None:
    async def no_files(channel: str) -> list[tuple[str, bytes]]:
        return []

    before = _children()
    settings = SandboxSettings(python=_python(), limits=LIMITS, bwrap=_bwrap(), first_uid=FIRST_UID)
    sessions, why = await CodeSessions.open(settings, no_files)
    assert sessions is not None, f"no sandbox works here, so the code interpreter would be off: {why}"
    await sessions.close()
    await _assert_all_gone(set(), "after the probe", children_before=before)
    _assert_no_cgroup_left("after the probe")


# --- secrets: the bot's environment, files and descriptors ----------------------------------------


async def test_the_code_cannot_read_the_bots_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "tl-secret-" + secrets.token_hex(8)
    monkeypatch.setenv("THREADLINE_TEST_SECRET", secret)
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    async with _opened() as box:
        seen = await _probe(
            box,
            f"""
            import json, os
            found = []
            for pid in [p for p in os.listdir("/proc") if p.isdigit()] + ["self"]:
                for name in ("environ", "cmdline"):
                    try:
                        with open(f"/proc/{{pid}}/{{name}}", "rb") as handle:
                            if {secret.encode()!r} in handle.read():
                                found.append(f"/proc/{{pid}}/{{name}}")
                    except OSError:
                        pass
            print(json.dumps({{"environ": dict(os.environ), "found": found}}))
            """,
        )
    assert set(seen["environ"]) <= ALLOWED_ENVIRONMENT, "variables from outside the allowlist"
    assert "THREADLINE_TEST_SECRET" not in seen["environ"]
    assert "OPENAI_API_KEY" not in seen["environ"]
    assert secret not in json.dumps(seen["environ"])
    assert seen["found"] == [], "the secret is readable in the sandbox's /proc"


async def test_the_code_cannot_see_the_bots_files(tmp_path: Path) -> None:
    secret = "tl-secret-" + secrets.token_hex(8)
    dotenv = tmp_path / ".env"
    dotenv.write_text(f"OPENAI_API_KEY={secret}\n")
    database = tmp_path / "threadline.db"
    connection = sqlite3.connect(database)  # the bot has its database open while sessions run
    connection.execute("CREATE TABLE secrets (value TEXT)")
    connection.execute("INSERT INTO secrets VALUES (?)", (secret,))
    connection.commit()
    paths = [
        dotenv,
        database,
        tmp_path,
        ROOT / ".env",
        ROOT / ".env.example",  # exists on the host
        ROOT / "pyproject.toml",
        ROOT / "core",
        ROOT / ".venv",
        Path.home(),
        Path("/root"),
        Path("/home"),
        Path("/etc/passwd"),
        Path("/etc/shadow"),
        Path("/var"),
    ]
    try:
        with dotenv.open() as _held_open:
            async with _opened() as box:
                seen = await _probe(
                    box,
                    f"""
                    import json, os
                    visible = [p for p in {[str(p) for p in paths]!r} if os.path.lexists(p)]
                    print(json.dumps({{"visible": visible, "project": sorted(os.listdir({str(ROOT)!r}))}}))
                    """,
                )
    finally:
        connection.close()
    assert seen["visible"] == []
    assert seen["project"] == [".sandbox"], "only the sandbox's own Python is mounted from the project"


async def test_the_code_sees_no_host_process_descriptor_or_privilege() -> None:
    listener = socket.create_server(("127.0.0.1", 0))  # open descriptors the bot holds while sessions run
    try:
        async with _opened() as box:
            seen = await _probe(
                box,
                """
                import json, os, socket
                fds = {}
                for fd in os.listdir("/proc/self/fd"):
                    try:
                        fds[fd] = os.readlink(f"/proc/self/fd/{fd}")
                    except OSError:
                        pass
                fds = {fd: target for fd, target in fds.items() if not target.endswith("/fd")}  # the listing
                status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines())
                print(json.dumps({
                    "hostname": socket.gethostname(),
                    "pids": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
                    "fds": fds,
                    "caps": {k: int(status[k], 16) for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")},
                    "no_new_privs": status["NoNewPrivs"].strip(),
                    "uid": os.getuid(),
                    "gid": os.getgid(),
                    "interfaces": [name for _, name in socket.if_nameindex()],
                }))
                """,
            )
    finally:
        listener.close()
    assert seen["hostname"] == "sandbox"
    assert seen["pids"] == [1, 2], "the sandbox sees processes other than its own"
    assert sorted(seen["fds"]) == ["0", "1", "2"], f"descriptors leaked into the sandbox: {seen['fds']}"
    assert all(target.startswith("pipe:") for target in seen["fds"].values()), seen["fds"]
    assert seen["caps"] == dict.fromkeys(("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"), 0)
    assert seen["no_new_privs"] == "1"
    assert seen["uid"] != 0
    assert seen["gid"] != 0
    assert seen["interfaces"] == ["lo"]


# --- the network ----------------------------------------------------------------------------------


NETWORK_PROBE = """
import json, socket, time
outcomes = {}
def attempt(label, family, kind, address, payload=None):
    started = time.monotonic()
    try:
        with socket.socket(family, kind) as s:
            s.settimeout(2)
            if payload is None:
                s.connect(address)
                outcome = "connected"
            else:
                s.sendto(payload, address)
                outcome = "sent"
    except OSError as exc:
        outcome = type(exc).__name__ + ": " + str(exc)
    outcomes[label] = {"outcome": outcome, "seconds": time.monotonic() - started}
attempt("public tcp", socket.AF_INET, socket.SOCK_STREAM, ("1.1.1.1", 443))
attempt("public tcp 2", socket.AF_INET, socket.SOCK_STREAM, ("8.8.8.8", 53))
attempt("public udp", socket.AF_INET, socket.SOCK_DGRAM, ("8.8.8.8", 53), b"\\0" * 12)
attempt("public ipv6", socket.AF_INET6, socket.SOCK_STREAM, ("2606:4700:4700::1111", 443))
attempt("host loopback", socket.AF_INET, socket.SOCK_STREAM, ("127.0.0.1", PORT))
attempt("host unix socket", socket.AF_UNIX, socket.SOCK_STREAM, UNIX_PATH)
attempt("host abstract socket", socket.AF_UNIX, socket.SOCK_STREAM, ABSTRACT)
started = time.monotonic()
try:
    resolved = str(socket.getaddrinfo("example.com", 443))
except OSError as exc:
    resolved = type(exc).__name__ + ": " + str(exc)
outcomes["dns"] = {"outcome": resolved, "seconds": time.monotonic() - started}
print(json.dumps(outcomes))
"""


async def test_the_code_has_no_network_not_even_the_hosts_loopback(sandbox: Sandbox, tmp_path: Path) -> None:
    contacted: list[str] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        contacted.append("connection")
        writer.close()

    tcp = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = tcp.sockets[0].getsockname()[1]
    unix_path = str(tmp_path / "bot.sock")
    unix = await asyncio.start_unix_server(answer, path=unix_path)
    abstract_name = "\0threadline-test-" + secrets.token_hex(6)
    abstract = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    abstract.bind(abstract_name)
    abstract.listen()
    abstract.setblocking(False)
    try:
        code = (
            NETWORK_PROBE.replace("PORT", str(port))
            .replace("UNIX_PATH", repr(unix_path))
            .replace("ABSTRACT", repr(abstract_name))
        )
        outcomes = await _probe(sandbox, code)
        await asyncio.sleep(0.1)
        with pytest.raises(BlockingIOError):
            abstract.accept()  # nobody knocked
    finally:
        abstract.close()
        for server in (tcp, unix):
            server.close()
            await server.wait_closed()
    for label, seen in outcomes.items():
        assert seen["outcome"] not in ("connected", "sent"), f"{label}: {seen}"
    for label in ("public tcp", "public tcp 2", "public udp", "public ipv6", "dns"):
        assert outcomes[label]["seconds"] < 1.0, f"{label} did not fail at once (no interface): {outcomes[label]}"
    assert "Network is unreachable" in outcomes["public tcp"]["outcome"]
    assert "ConnectionRefused" in outcomes["host loopback"]["outcome"]  # its own, empty loopback
    assert "FileNotFound" in outcomes["host unix socket"]["outcome"]
    assert "ConnectionRefused" in outcomes["host abstract socket"]["outcome"]  # its own network namespace
    assert "gaierror" in outcomes["dns"]["outcome"]
    assert contacted == []
    await _assert_healthy(sandbox)


# --- privileges and the file system ---------------------------------------------------------------


async def test_the_code_cannot_gain_privileges_or_change_the_system(sandbox: Sandbox) -> None:
    # unshare(CLONE_NEWUSER) needs a single-threaded process: the forked child is one.
    outcomes = await _probe(
        sandbox,
        """
        import ctypes, errno, json, os, stat
        def attempt(action):
            try:
                result = action()
            except OSError as exc:
                return errno.errorcode.get(exc.errno, str(exc.errno))
            if isinstance(result, int) and result != 0:
                return errno.errorcode.get(ctypes.get_errno(), "failed")
            return "done"
        def write(path):
            with open(path, "ab") as handle:
                handle.write(b"#")
        libc = ctypes.CDLL(None, use_errno=True)
        CLONE_NEWUSER, CLONE_NEWNS, CLONE_NEWNET, CLONE_NEWPID = 0x10000000, 0x00020000, 0x40000000, 0x20000000
        read_end, write_end = os.pipe()
        child = os.fork()
        if child == 0:
            try:
                found = {
                    "unshare user": attempt(lambda: libc.unshare(CLONE_NEWUSER)),
                    "unshare user+mount": attempt(lambda: libc.unshare(CLONE_NEWUSER | CLONE_NEWNS)),
                    "unshare mount": attempt(lambda: libc.unshare(CLONE_NEWNS)),
                    "unshare net": attempt(lambda: libc.unshare(CLONE_NEWNET)),
                    "unshare pid": attempt(lambda: libc.unshare(CLONE_NEWPID)),
                }
                os.write(write_end, json.dumps(found).encode())
            finally:
                os._exit(0)
        os.close(write_end)
        outcomes = json.loads(os.read(read_end, 65536))
        os.waitpid(child, 0)
        outcomes.update({
            "setuid 0": attempt(lambda: os.setuid(0)),
            "setgid 0": attempt(lambda: os.setgid(0)),
            "setresuid 0": attempt(lambda: os.setresuid(0, 0, 0)),
            "mount tmpfs": attempt(lambda: libc.mount(b"none", b"/mnt/data", b"tmpfs", 0, None)),
            "remount /usr rw": attempt(lambda: libc.mount(b"none", b"/usr", None, 32 | 4096, None)),
            "chroot": attempt(lambda: os.chroot("/tmp")),
            "mknod a memory device": attempt(lambda: os.mknod("/mnt/data/mem", stat.S_IFCHR | 0o666, os.makedev(1, 1))),
            "chown to root": attempt(lambda: os.chown("/mnt/data", 0, 0)),
            "write /usr": attempt(lambda: write("/usr/evil")),
            "write /usr/bin/python3": attempt(lambda: write("/usr/bin/python3")),
            "write /etc/passwd": attempt(lambda: write("/etc/passwd")),
            "write /bin": attempt(lambda: write("/bin/evil")),
            "write /lib": attempt(lambda: write("/lib/evil")),
            "write the sandbox's python": attempt(lambda: write("PYTHON_DIR/evil")),
            "write the worker": attempt(lambda: write("/opt/threadline/worker.py")),
            "write /proc/sys": attempt(lambda: write("/proc/sys/kernel/hostname")),
            "write /proc/sysrq-trigger": attempt(lambda: write("/proc/sysrq-trigger")),
            "chmod /usr/bin/python3": attempt(lambda: os.chmod("/usr/bin/python3", 0o4777)),
        })
        print(json.dumps(outcomes))
        """.replace("PYTHON_DIR", str(SANDBOX_PYTHON.parent.parent)),
    )
    succeeded = sorted(action for action, outcome in outcomes.items() if outcome == "done")
    assert succeeded == [], f"these worked inside the sandbox: {succeeded} ({outcomes})"
    await _assert_healthy(sandbox)


WRITABLE_PROBE = """
import json, os
writable = {}
for line in open("/proc/self/mountinfo"):
    mount = line.split()[4]
    if mount in writable or mount.startswith("/proc") or not os.path.isdir(mount):
        continue
    info = os.statvfs(mount)
    if info.f_flag & os.ST_RDONLY:
        continue
    device = os.stat(mount).st_dev
    for top, directories, _ in os.walk(mount):  # this file system's directories, not those mounted on it
        directories[:] = [d for d in directories if os.stat(os.path.join(top, d)).st_dev == device]
        probe = os.path.join(top, ".write-probe")
        try:
            open(probe, "xb").close()
        except OSError:
            continue
        os.unlink(probe)
        found = writable.setdefault(mount, {"mb": info.f_blocks * info.f_frsize >> 20, "directories": []})
        found["directories"].append(top)
print(json.dumps(writable))
"""


async def test_the_only_writable_places_are_the_size_limited_workspace_and_tmp(sandbox: Sandbox) -> None:
    """Everything else is read-only: a writable tmpfs without a size (the new root, /dev) would let the
    code fill half the host's RAM, which no process limit covers. (A /dev/shm of its own, no larger
    than /tmp, would be fine.)"""
    seen = await _probe(sandbox, WRITABLE_PROBE)
    allowed = {"/mnt/data": LIMITS.workspace_mb, "/tmp": LIMITS.tmp_mb, "/dev/shm": LIMITS.tmp_mb}
    unexpected = {mount: found for mount, found in seen.items() if found["mb"] > allowed.get(mount, -1)}
    assert unexpected == {}, f"the code can write to file systems without a size limit: {unexpected}"
    assert seen["/mnt/data"]["mb"] == LIMITS.workspace_mb
    assert seen["/tmp"]["mb"] == LIMITS.tmp_mb


# --- memory, files and the workspace --------------------------------------------------------------


MANY_FILES = """
import os
os.makedirs("many", exist_ok=True)
created = globals().get("created", 0)
try:
    for _ in range(100_000):
        os.close(os.open(f"many/{created}", os.O_CREAT | os.O_WRONLY))
        created += 1
finally:
    print(created)
"""


async def test_empty_files_cannot_pin_more_memory_than_the_sessions_limits() -> None:
    """An empty file takes no space in a tmpfs but about 1 KiB of unswappable kernel memory, and a tmpfs
    without a limit on its number of files (inodes) takes millions: 400,000 files pin about 400 MB, more
    than this session's memory, workspace and /tmp together (256 + 64 + 16 MB). Refusing them (too many
    files) or ending the session (out of memory) are both fine."""
    _require_cgroups()
    limits = replace(LIMITS, memory_mb=256)
    target = 400_000
    created = 0
    async with _opened(limits) as box:
        while created < target:
            try:
                result = await box.execute(MANY_FILES)
            except SandboxLost:
                break
            created = int(result.stdout.split()[-1])
            if not result.ok and result.error != "interrupted":
                break  # refused
    assert created < target, f"the session created {created} files (about {created >> 10} MB of kernel memory)"


async def test_an_8_gib_allocation_fails_and_the_session_lives_on(sandbox: Sandbox) -> None:
    await sandbox.execute("kept = 'before'")
    result = await sandbox.execute("block = bytearray(8 << 30)")
    assert not result.ok
    assert result.error is not None
    assert result.error.startswith("MemoryError"), result
    after = await sandbox.execute("kept")
    assert after.stdout == "'before'\n"
    await _assert_healthy(sandbox)


SPREAD_ALLOCATION = """
import json, os, signal, time
children = []
for _ in range(PIECES):
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:
        try:
            block = bytearray(PIECE_MB << 20)
            block[::4096] = b"\\1" * len(range(0, len(block), 4096))  # resident, not just reserved
            os.write(write_end, b"1")
            signal.pause()
        except BaseException:
            os.write(write_end, b"0")
        finally:
            os._exit(0)
    os.close(write_end)
    children.append((child, read_end))
reported = [child for child, read_end in children if os.read(read_end, 1) == b"1"]
time.sleep(0.2)
held = PIECE_MB * sum(os.waitpid(child, os.WNOHANG) == (0, 0) for child in reported)  # all alive at once
for child, _ in children:
    try:  # a child killed for memory was reaped above
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)
    except (ProcessLookupError, ChildProcessError):
        pass
print(json.dumps(held))
"""


async def test_a_session_cannot_hold_more_memory_than_its_limit_by_spreading_it_over_processes() -> None:
    """With only a per-process limit (RLIMIT_AS) the "8 GiB" allocation works in pieces: with the default
    limits, 32 processes x 2 GiB = 64 GiB. Here 4 x 192 MB against a limit of 512 MB; the session may
    also end (killed for memory) as long as a new one works."""
    _require_cgroups()
    pieces, piece_mb = 4, 192
    code = SPREAD_ALLOCATION.replace("PIECES", str(pieces)).replace("PIECE_MB", str(piece_mb))
    # Reclaiming up to the limit before the out-of-memory kill takes a while on a busy machine.
    async with _opened(replace(LIMITS, call_seconds=30)) as box:
        try:
            held = await _probe(box, code)
        except SandboxLost:
            held = 0
    assert held <= LIMITS.memory_mb, (
        f"the session held {held} MB at once over {pieces} processes; its memory limit is {LIMITS.memory_mb} MB"
    )
    async with _opened() as fresh:
        await _assert_healthy(fresh)


async def test_a_60_mb_file_fails_at_the_file_size_limit(sandbox: Sandbox) -> None:
    result = await sandbox.execute(
        textwrap.dedent(
            """
            import os
            try:
                with open("big.bin", "wb") as handle:
                    handle.write(b"x" * (60 << 20))
            finally:
                print(os.path.getsize("big.bin"))
            """
        )
    )
    assert not result.ok
    assert result.error is not None
    assert "File too large" in result.error, result.error  # EFBIG, not a killed session
    assert int(result.stdout) <= LIMITS.file_mb * MB
    assert [f.name for f in result.files] == []
    assert "big.bin" in result.skipped  # larger than what is returned
    await _assert_healthy(sandbox)


async def test_filling_the_workspace_and_tmp_stops_at_their_size(sandbox: Sandbox) -> None:
    filled = await _probe(
        sandbox,
        """
        import errno, json, os
        filled = {}
        for directory in ("/mnt/data", "/tmp"):
            written, error = 0, None
            try:
                for n in range(1000):
                    with open(os.path.join(directory, f"fill-{n}.bin"), "wb") as handle:
                        for _ in range(8):
                            handle.write(b"\\0" * (1 << 20))
                            written += 1
            except OSError as exc:
                error = errno.errorcode.get(exc.errno)
            filled[directory] = {"mb": written, "error": error}
        print(json.dumps(filled))
        """,
    )
    assert filled["/mnt/data"]["error"] == "ENOSPC"
    assert filled["/mnt/data"]["mb"] <= LIMITS.workspace_mb
    assert filled["/tmp"]["error"] == "ENOSPC"
    assert filled["/tmp"]["mb"] <= LIMITS.tmp_mb
    freed = await sandbox.execute("import os\nfor name in os.listdir('.'):\n    os.remove(name)\nprint('freed')")
    assert freed.stdout == "freed\n"
    await _assert_healthy(sandbox)


async def test_5000_files_come_back_as_a_few_files_and_a_short_skipped_list(sandbox: Sandbox) -> None:
    started = time.monotonic()
    result = await sandbox.execute(
        "for n in range(5000):\n    with open(f'file-{n:04}.txt', 'w') as handle:\n        handle.write(str(n))"
    )
    assert result.ok, result
    assert time.monotonic() - started < LIMITS.call_seconds
    assert 0 < len(result.files) <= LIMITS.returned_files
    assert all(SAFE_NAME.fullmatch(f.name) for f in result.files)
    assert sum(len(f.data) for f in result.files) <= LIMITS.returned_mb * MB
    assert 0 < len(result.skipped) <= 200
    assert len(describe(result)) < 5000  # what the model reads back stays short
    await _assert_healthy(sandbox)


# --- processes and time ---------------------------------------------------------------------------


FORK_BOMBS = {
    "one-stray-fork": "import os\nos.fork()\nprint('forked')",
    "classic": "import os\nwhile True:\n    os.fork()",
    "spinning": "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass",
}


@pytest.mark.parametrize("code", FORK_BOMBS.values(), ids=FORK_BOMBS.keys())
async def test_a_fork_bomb_is_bounded_and_the_next_calls_work(code: str) -> None:
    async with _code_sessions() as sessions:
        first = await sessions.run(CHANNEL, code)
        assert first.result is not None or first.lost is not None
        running = _session_processes(sessions.pids())
        assert len(running) <= LIMITS.processes + 3, "more processes than the limit"  # + bubblewrap's two
        for n in range(3):
            token = f"fresh-{n}-{secrets.token_hex(4)}"
            reply = await sessions.run(CHANNEL, f"print({token!r})")
            assert reply.result is not None, f"call {n} after the fork bomb: {reply}"
            assert reply.result.stdout == f"{token}\n", f"call {n} after the fork bomb got: {reply.result}"


async def test_an_infinite_loop_is_interrupted_and_variables_survive(sandbox: Sandbox) -> None:
    await sandbox.execute("kept = 41")
    started = time.monotonic()
    result = await sandbox.execute("while True:\n    pass")
    elapsed = time.monotonic() - started
    assert result.error == "interrupted"
    assert LIMITS.call_seconds <= elapsed < LIMITS.call_seconds + LIMITS.grace_seconds
    after = await sandbox.execute("kept + 1")
    assert after.stdout == "42\n"
    await _assert_healthy(sandbox)


BLOCKING_CALLS = {
    "time.sleep": "import time\ntime.sleep(600)",
    "a read that never returns": "import os\nread_end, write_end = os.pipe()\nos.read(read_end, 1)",
}


@pytest.mark.parametrize("code", BLOCKING_CALLS.values(), ids=BLOCKING_CALLS.keys())
async def test_a_call_waiting_in_a_system_call_is_interrupted_and_its_variables_survive(
    sandbox: Sandbox, code: str
) -> None:
    """The interrupt must wake the code's own thread: one sent to another thread leaves it waiting."""
    await sandbox.execute("kept = 41")
    result = await sandbox.execute(code)
    assert result.error == "interrupted", result
    after = await sandbox.execute("kept + 1")
    assert after.stdout == "42\n"


@contextlib.contextmanager
def _sigint_ignored() -> Iterator[None]:
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


async def test_the_interrupt_works_in_sessions_of_a_bot_started_with_sigint_ignored() -> None:
    """A bot started with ``&`` by a shell script has SIGINT ignored, and the sessions it starts inherit
    that (as this one does from the test). The interrupt must not depend on it."""
    with _sigint_ignored():
        async with _opened() as box:
            await box.execute("kept = 41")
            result = await box.execute("while True:\n    pass")
            assert result.error == "interrupted", result
            after = await box.execute("kept + 1")
            assert after.stdout == "42\n"


IGNORES_INTERRUPTS = {
    "SIG_IGN": "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass",
    "swallows-KeyboardInterrupt": "while True:\n    try:\n        while True:\n            pass\n"
    "    except KeyboardInterrupt:\n        pass",
}


@pytest.mark.parametrize("code", IGNORES_INTERRUPTS.values(), ids=IGNORES_INTERRUPTS.keys())
async def test_code_that_ignores_interrupts_ends_the_session_and_a_new_one_works(code: str) -> None:
    async with _opened() as box:
        started = time.monotonic()
        with pytest.raises(SandboxLost, match="did not stop when interrupted"):
            await box.execute(code)
        assert time.monotonic() - started < LOST_WITHIN
        assert not box.alive
    async with _opened() as fresh:
        await _assert_healthy(fresh)


KILLED_BY = {
    "SIGKILL, as the out-of-memory killer sends": ("SIGKILL", "killed: most likely out of memory"),
    "SIGXCPU, at the CPU time limit": ("SIGXCPU", "used up its CPU time"),
}


@pytest.mark.parametrize(("signal_name", "said"), KILLED_BY.values(), ids=KILLED_BY.keys())
async def test_a_session_the_kernel_ends_says_why(signal_name: str, said: str) -> None:
    async with _opened() as box:
        with pytest.raises(SandboxLost, match=said):
            await box.execute(f"import os, signal\nos.kill(os.getpid(), signal.{signal_name})")


async def test_a_call_that_stops_reading_requests_still_ends_in_time(sandbox: Sandbox) -> None:
    """The code answers for the worker and keeps running, so the worker reads no more requests: the
    next call's request (larger than the pipe's buffer) must not wait forever to be written."""
    forged = await sandbox.execute(
        "import signal, sys\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"
        "sys.__stdout__.write('{\"ok\": true}\\n')\nsys.__stdout__.flush()\nwhile True:\n    pass"
    )
    assert forged.ok  # the bot cannot tell this reply from the worker's
    started = time.monotonic()
    try:
        async with asyncio.timeout(LOST_WITHIN):
            await sandbox.execute("x = 1\n" + "#" * (256 << 10))
    except SandboxLost:
        pass
    except TimeoutError:
        pytest.fail(f"execute() was still writing its request after {time.monotonic() - started:.0f} s")
    else:
        pytest.fail("a call to a session that reads nothing succeeded")
    assert time.monotonic() - started < LOST_WITHIN


# --- output and replies ---------------------------------------------------------------------------


async def test_a_50_mb_print_is_cut_and_the_bot_stays_small(sandbox: Sandbox) -> None:
    with _bot_memory_growth_below(100):
        result = await sandbox.execute("print('x' * 50_000_000)\n'y' * 50_000_000")
    assert result.ok
    assert len(result.stdout) <= LIMITS.output_chars + 100
    assert "more characters not shown" in result.stdout
    await _assert_healthy(sandbox)


RAW_WRITES = {
    "50 MB without a newline": "import os\nos.write(1, b'x' * 50_000_000)",
    "50 MB line": "import os\nos.write(1, b'x' * 50_000_000 + b'\\n')",
    "not JSON": "import os\nos.write(1, b'this is not a reply\\n')",
    "not an object": "import os\nos.write(1, b'[1, 2, 3]\\n')",
}


@pytest.mark.parametrize("code", RAW_WRITES.values(), ids=RAW_WRITES.keys())
async def test_output_around_the_capture_ends_the_session_and_the_bot_stays_small(code: str) -> None:
    async with _opened() as box:
        with _bot_memory_growth_below(100), pytest.raises(SandboxLost):
            await box.execute(code)
        assert not box.alive
    async with _opened() as fresh:
        await _assert_healthy(fresh)


FORGED_REPLY = """
import base64, json, os, sys
def entry(name, size):
    return {"name": name, "data": base64.b64encode(b"z" * size).decode()}
hostile = ["../../root/.ssh/authorized_keys", "/etc/passwd", ".env", "a/b.txt", "bad\\nname.txt", "", "x" * 300]
files = [entry(name, 5) for name in hostile]
files += [entry(f"big-{n}.bin", 260 << 10) for n in range(4)]  # together past the returned size
files += [entry(f"small-{n}.txt", 10) for n in range(3)]  # past the returned number
files += [None, 3, "junk", {"name": "bad-data.txt", "data": "not base64!"}]
reply = {"ok": True, "stdout": "o" * 30000, "stderr": "e" * 100, "error": "x" * 5000, "files": files}
sys.__stdout__.write(json.dumps(reply) + "\\n")
sys.__stdout__.flush()
os._exit(0)
"""


async def test_a_forged_reply_is_checked_by_the_bot(sandbox: Sandbox) -> None:
    result = await sandbox.execute(FORGED_REPLY)
    assert len(result.files) <= LIMITS.returned_files
    assert sum(len(f.data) for f in result.files) <= LIMITS.returned_mb * MB
    for output in result.files:
        assert SAFE_NAME.fullmatch(output.name), output.name
        assert "/" not in output.name
        assert not output.name.startswith(".")
    assert not {f.name for f in result.files} & {"bad-data.txt", "big-3.bin", "small-2.txt"}
    assert "../../root/.ssh/authorized_keys" in result.skipped
    assert len(result.stdout) <= LIMITS.output_chars + 100
    assert result.error is not None
    assert len(result.error) <= 2000
    assert len(describe(result)) < 3 * LIMITS.output_chars


MALFORMED_REPLIES = {
    "skipped is a number": '{"ok": true, "skipped": 5}',
    "files is a number": '{"ok": true, "files": 7}',
    "nested 100000 deep": "[" * 100_000 + "]" * 100_000,
}


@pytest.mark.parametrize("line", MALFORMED_REPLIES.values(), ids=MALFORMED_REPLIES.keys())
async def test_a_reply_the_bot_cannot_use_ends_the_session(sandbox: Sandbox, line: str) -> None:
    code = f"import sys\nsys.__stdout__.write({line!r} + '\\n')\nsys.__stdout__.flush()"
    with pytest.raises(SandboxLost):
        await sandbox.execute(code)
    assert not sandbox.alive


async def test_links_fifos_and_sockets_among_outputs_are_skipped_without_hanging(sandbox: Sandbox) -> None:
    started = time.monotonic()
    result = await sandbox.execute(
        textwrap.dedent(
            f"""
            import os, socket
            os.symlink({str(ROOT / ".env")!r}, "dotenv-link")
            os.symlink("/opt/threadline/worker.py", "worker-link")
            os.symlink("/proc/self/environ", "environ-link")
            os.mkfifo("a-fifo")
            listener = socket.socket(socket.AF_UNIX)
            listener.bind("a-socket")
            os.mkdir("a-folder")
            with open("report.txt", "w") as handle:
                handle.write("fine")
            """
        )
    )
    assert time.monotonic() - started < LIMITS.call_seconds
    assert result.ok, result
    assert [(f.name, f.data) for f in result.files] == [("report.txt", b"fine")]
    assert {"dotenv-link", "worker-link", "environ-link", "a-fifo", "a-socket", "a-folder"} <= set(result.skipped)
    await _assert_healthy(sandbox)


# --- files copied in (an API thread's) ------------------------------------------------------------


def _input(name: str, data: bytes, loads: list[str], *, size: int | None = None) -> InputFile:
    """A file for a call; ``loads`` records each time its bytes are read (``size``: what it claims)."""

    async def load() -> bytes:
        loads.append(name)
        return data

    return InputFile(name, hashlib.sha256(data).hexdigest(), len(data) if size is None else size, load)


async def test_a_copied_file_replaces_what_the_code_left_under_its_name_and_never_follows_it() -> None:
    loads: list[str] = []
    async with _code_sessions() as sessions:
        first = _input("notes.txt", b"one", loads)
        reply = await sessions.run(CHANNEL, "print(open('notes.txt').read())", [first])
        assert reply.result is not None
        assert reply.result.stdout == "one\n"
        edit = "open('notes.txt', 'a').write(' edited')"
        await sessions.run(CHANNEL, edit, [first])
        kept = await sessions.run(CHANNEL, "print(open('notes.txt').read())", [first])
        assert kept.result is not None
        assert kept.result.stdout == "one edited\n"  # the same content is not copied over the code's edit
        assert loads == ["notes.txt"]

        # The code puts a symlink, a FIFO and a folder where files will come; new contents arrive.
        trap = textwrap.dedent(
            """
            import os
            os.remove('notes.txt')
            os.symlink('/tmp/target', 'notes.txt')
            os.mkfifo('pipe.txt')
            os.mkdir('folder.txt')
            """
        )
        await sessions.run(CHANNEL, trap)
        started = time.monotonic()
        files = [_input("notes.txt", b"two", loads), _input("pipe.txt", b"p", loads), _input("folder.txt", b"f", loads)]
        check = (
            "import os\n"
            "print(open('notes.txt').read(), os.path.islink('notes.txt'), os.path.exists('/tmp/target'), "
            "open('pipe.txt').read())"
        )
        reply = await sessions.run(CHANNEL, check, files)
        assert time.monotonic() - started < LIMITS.call_seconds  # a FIFO written to would have blocked the copy
        assert reply.lost is None, reply.lost
        assert reply.result is not None
        assert reply.result.stdout == "two False False p\n"  # replaced, never written through
        assert reply.left_out == ("folder.txt (the code made something else of that name)",)
        again = await sessions.run(CHANNEL, "print('alive')")
        assert again.result is not None
        assert again.result.stdout == "alive\n"  # the session lives on


async def test_files_copied_in_are_bounded_one_by_one_and_together() -> None:
    loads: list[str] = []
    limits = replace(LIMITS, file_mb=1, workspace_mb=4)  # copied files: 2 MB together at most
    async with _code_sessions(limits=limits) as sessions:
        part = b"x" * (900 * 1024)
        files = [
            _input("huge.bin", b"", loads, size=512 * MB),  # claims to be huge: never loaded
            _input("a.bin", part, loads),
            _input("b.bin", part + b"b", loads),
            _input("c.bin", part + b"c", loads),
        ]
        code = "import os\nprint(sorted((n, os.path.getsize(n)) for n in os.listdir('.')))"
        reply = await sessions.run(CHANNEL, code, files)
        assert reply.result is not None
        assert reply.result.stdout == f"{[('a.bin', len(part)), ('b.bin', len(part) + 1)]}\n"
        assert reply.left_out == (
            "huge.bin (larger than the 1 MB a file may have here)",
            "c.bin (the files here would pass 2 MB together)",
        )
        assert loads == ["a.bin", "b.bin"]  # what does not fit is never read


# --- sessions: expiry, loss and teardown ----------------------------------------------------------


async def _call(tool: FunctionTool, code: str) -> str:
    raw = json.dumps({"code": code})
    context = ToolContext(
        context={"channel": CHANNEL, "run_id": "run_1"}, tool_name=tool.name, tool_call_id="call_1", tool_arguments=raw
    )
    result = await tool.on_invoke_tool(context, raw)
    assert isinstance(result, str)
    return result


async def test_an_idle_session_ends_completely_and_the_next_call_says_earlier_state_is_gone() -> None:
    async with _code_sessions(idle_seconds=0.2, files=[("notes.txt", b"hello")]) as sessions:
        tool = make_code_interpreter_tool(sessions, FileOutbox(), timeout=30)
        first = await _call(tool, "kept = 41\nprint(open('notes.txt').read())")
        assert "hello" in first
        assert "previous session ended" not in first
        running = _session_processes(sessions.pids())
        assert running, "no sandbox process is running"

        await asyncio.sleep(0.3)
        assert await sessions.expire_idle() == 1
        assert sessions.pids() == []
        await _assert_all_gone(running, "after idle expiry")

        second = await _call(tool, "kept + 1")
        assert "earlier variables and imports are gone" in second
        assert "NameError" in second
        third = await _call(tool, "print(open('notes.txt').read())")  # the channel's files are back
        assert "hello" in third
        assert "previous session ended" not in third  # said once

        await asyncio.sleep(0.3)
        assert await sessions.expire_idle() == 1
        reply = await sessions.run(CHANNEL, "print('again')")
        assert reply.new_session
        assert isinstance(reply.result, ExecResult)
        assert reply.result.stdout == "again\n"


async def test_a_lost_session_is_reported_and_replaced() -> None:
    async with _code_sessions() as sessions:
        tool = make_code_interpreter_tool(sessions, FileOutbox(), timeout=30)
        await _call(tool, "kept = 41")
        lost = await _call(tool, "import os\nos._exit(3)")
        assert "did not finish" in lost
        assert "Variables and imports from before are gone" in lost
        after = await _call(tool, "print('back')")
        assert "back" in after
        assert "NameError" in await _call(tool, "kept")
