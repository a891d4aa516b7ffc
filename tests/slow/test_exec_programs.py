"""Real programs from Debian packages, plain and under `sealkit exec`.

Each runs both ways with the same input: same output, same exit status.
Then the sealed process is audited as ``sealkit audit --pid`` sees it
(``sealkit.audit.process_maps`` / ``classify`` over its smaps): the text and
RELRO of every loaded object are sealed, except what the report itself
lists, object by object, as outside the policy (a ``dlopen`` without
``RTLD_NODELETE`` at level code) or as RELRO still pending (glibc < 2.41:
objects libc loads itself get their RELRO sealed at the next loader event).

The packages are installed by ``.ci/run`` (``nginx-light sqlite3 curl perl``);
each test skips, saying which program is missing, where they are not.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sealkit._os import procfs
from sealkit._os.elf import load_layout
from sealkit.host import audit
from sealkit.sealing import exec as sealexec
from tests.exec_support import ROOT, SRC, plain_env, sealkit_argv, sealkit_env

pytestmark = [pytest.mark.slow, pytest.mark.kernel]


def need(*programs: str) -> None:
    for p in programs:
        if shutil.which(p) is None and not os.path.exists(p):
            pytest.skip(f"{p} is not installed (.ci/run installs nginx-light, sqlite3, curl, perl)")


def sealed(*words: str) -> list[str]:
    """``sealkit exec WORDS --`` (run with ``sealkit_env``)."""
    return sealkit_argv("exec", *words, "--")


# --- the audit side -------------------------------------------------------------


def reports(directory: Path) -> dict[int, dict[tuple[int, int], sealexec.ReportObject]]:
    """Every process's objects from ``r-%p.jsonl`` files: each file is one
    process's log (lines inherited at fork included)."""
    out: dict[int, dict[tuple[int, int], sealexec.ReportObject]] = {}
    for f in directory.glob("r-*.jsonl"):
        pid = int(f.stem.split("-")[1])
        merged: dict[tuple[int, int], sealexec.ReportObject] = {}
        for objs in sealexec.read_exec_report(f).values():
            merged.update(objs)
        out[pid] = merged
    return out


def unsealed_code(regions: list[tuple[procfs.Vma, str]]) -> dict[str, set[str]]:
    """``{path: {"text"|"relro", ...}}`` of code that is not sealed."""
    out: dict[str, set[str]] = {}
    for vma, kind in regions:
        if kind in ("text", "relro") and not vma.sealed:
            out.setdefault(vma.path, set()).add(kind)
    return out


def allowed(objs: dict[tuple[int, int], sealexec.ReportObject]) -> dict[str, set[str]]:
    """What the report itself says is left unsealed: whole objects outside
    the policy, RELRO still pending."""
    out: dict[str, set[str]] = {}
    for o in objs.values():
        if not o.sealing:
            out.setdefault(o.path, set()).update({"text", "relro"})
        if o.pending:
            out.setdefault(o.path, set()).add("relro")
    return out


def check_process(pid: int, objs: dict[tuple[int, int], sealexec.ReportObject]) -> list[str]:
    """The sealed process as the audit sees it: names of objects whose code is
    unsealed without the report saying so; and report/smaps disagreements."""
    pm = audit.process_maps(pid)
    regions = [(r.vma, r.kind) for r in pm.regions]
    return _check(regions, objs)


def audit_cli_agrees(pid: int, objs: dict[tuple[int, int], sealexec.ReportObject]) -> list[str]:
    """`sealkit audit --pid PID --json` (the command line) against the report,
    range for range, over the reported objects' files."""
    done = subprocess.run(
        sealkit_argv("audit", "--pid", str(pid), "--json"),
        capture_output=True, text=True, env=sealkit_env(), timeout=60, check=True,
    )  # fmt: skip
    (proc,) = json.loads(done.stdout)["processes"]
    assert proc["status"] == "ok"
    sealed = [(int(m["start"], 16), int(m["end"], 16), m["path"]) for m in proc["sealed"]]
    code = [o for o in objs.values() if o.path.startswith("/") and o.sealed]
    assert code, "nothing sealed to compare"
    return sealexec.check_against_smaps(code, sealed)


def check_smaps_text(text: str, objs: dict[tuple[int, int], sealexec.ReportObject]) -> list[str]:
    vmas = procfs.parse_smaps(text)

    def layout_of(v: procfs.Vma) -> object:
        try:
            return load_layout(v.path)
        except Exception:
            return "unknown"

    return _check(list(zip(vmas, audit.classify(vmas, layout_of), strict=True)), objs)


def _check(
    regions: list[tuple[procfs.Vma, str]], objs: dict[tuple[int, int], sealexec.ReportObject]
) -> list[str]:
    problems = []
    ok = allowed(objs)
    code_paths = {v.path for v, k in regions if k == "text"}
    for path, kinds in unsealed_code(regions).items():
        if not kinds <= ok.get(path, set()):
            problems.append(f"{path}: {sorted(kinds)} not sealed, and the report does not say why")
    problems += sealexec.check_against_smaps(
        [o for o in objs.values() if o.path in code_paths],
        [(v.start, v.end, v.path) for v, _ in regions if v.sealed],
    )
    return problems


# --- nginx ----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


NGINX_CONF = """\
worker_processes 2;
pid {d}/nginx.pid;
error_log {d}/error.log;
events {{ worker_connections 256; }}
http {{
  access_log off;
  server {{
    listen 127.0.0.1:{port};
    location / {{ return 200 "hello $request_uri\\n"; }}
  }}
}}
"""


def requests(port: int, n: int) -> tuple[int, set[str]]:
    """``n`` requests over keep-alive connections (100 per connection)."""
    ok, bodies = 0, set()
    done = 0
    while done < n:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        for _ in range(min(100, n - done)):
            conn.request("GET", f"/r{done % 7}")
            resp = conn.getresponse()
            body = resp.read().decode()
            ok += resp.status == 200
            bodies.add(body)
            done += 1
        conn.close()
    return ok, bodies


def workers(master: int) -> set[int]:
    out = set()
    for task in os.listdir(f"/proc/{master}/task"):
        try:
            children = Path(f"/proc/{master}/task/{task}/children").read_text().split()
        except OSError:
            continue
        out.update(int(c) for c in children)
    return out


def settled(check: Callable[[], list[str]], timeout: float = 10.0) -> list[str]:
    """``check()``'s problems once they are gone, or the last ones after ``timeout``."""
    end = time.monotonic() + timeout
    while True:
        problems = check()
        if not problems or time.monotonic() > end:
            return problems
        time.sleep(0.2)


def wait_for(predicate, timeout: float = 20.0):  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out")


@pytest.fixture
def nginx(tmp_path: Path, exec_lib: Path) -> Iterator[callable]:  # type: ignore[valid-type]
    need("/usr/sbin/nginx")
    started: list[subprocess.Popen[bytes]] = []

    def start(
        prefix: list[str], d: Path, env: dict[str, str] | None = None
    ) -> tuple[subprocess.Popen[bytes], int]:
        d.mkdir()
        port = free_port()
        (d / "nginx.conf").write_text(NGINX_CONF.format(d=d, port=port))
        proc = subprocess.Popen(
            [
                *prefix,
                "/usr/sbin/nginx",
                "-p",
                str(d),
                "-c",
                str(d / "nginx.conf"),
                "-g",
                "daemon off;",
            ],
            env=sealkit_env() if env is None else env,
        )
        started.append(proc)
        wait_for(lambda: (d / "nginx.pid").exists() and len(workers(proc.pid)) == 2)
        return proc, port

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.send_signal(signal.SIGQUIT)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def test_nginx_serves_reloads_and_respawns_sealed(nginx, tmp_path):
    plain, pport = nginx([], tmp_path / "plain")
    rdir = tmp_path / "reports"
    rdir.mkdir()
    sealed_proc, sport = nginx(sealed("--report", str(rdir / "r-%p.jsonl")), tmp_path / "sealed")
    # same answers to a real load: at least 10,000 requests each
    assert (
        requests(pport, 10_000)
        == requests(sport, 10_000)
        == (10_000, {f"hello /r{i}\n" for i in range(7)})
    )
    master = sealed_proc.pid
    before = workers(master)
    for pid in {master, *before}:
        objs = reports(rdir).get(pid) or reports(rdir)[master]
        assert check_process(pid, objs) == [], pid
    assert audit_cli_agrees(master, reports(rdir)[master]) == []
    # the oracle can fail: the plain master, judged with the same report
    assert check_process(plain.pid, reports(rdir)[master]) != []
    texts = [r for r in audit.process_maps(master).regions if r.kind == "text"]
    assert len(texts) >= 8 and all(r.vma.sealed for r in texts)
    # reload (SIGHUP): new workers, forked from the sealed master
    os.kill(master, signal.SIGHUP)
    after = wait_for(lambda: (w := workers(master)) and not (w & before) and len(w) == 2 and w)
    # worker respawn: kill one, the master forks a new one
    victim = min(after)
    os.kill(victim, signal.SIGKILL)
    respawned = wait_for(lambda: (w := workers(master)) and victim not in w and len(w) == 2 and w)
    assert requests(sport, 200) == (200, {f"hello /r{i}\n" for i in range(7)})
    for pid in {master, *respawned}:
        # a worker just forked may still be in the middle of a load (libc
        # dlopens an NSS module for initgroups): judge its settled state
        assert (
            settled(
                lambda pid=pid: check_process(pid, reports(rdir).get(pid) or reports(rdir)[master])
            )
            == []
        ), pid
    # curl against it, plain and sealed: the same bytes
    need("curl")
    url = f"http://127.0.0.1:{sport}/curl"
    a = subprocess.run(["curl", "-s", url], capture_output=True, env=plain_env(), check=False)
    b = subprocess.run(
        [*sealed(), "curl", "-s", url], capture_output=True, env=sealkit_env(), check=False
    )
    assert (a.returncode, a.stdout) == (b.returncode, b.stdout) == (0, b"hello /curl\n")


def test_curl_sealed_while_it_waits_for_a_response(tmp_path, exec_lib):
    need("curl")
    rdir = tmp_path / "reports"
    rdir.mkdir()
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        proc = subprocess.Popen(
            [*sealed("--report", str(rdir / "r-%p.jsonl")), "curl", "-s", f"http://127.0.0.1:{port}/x"],
            stdout=subprocess.PIPE, env=sealkit_env(),
        )  # fmt: skip
        conn, _ = server.accept()
        with conn:
            conn.recv(4096)
            # curl is waiting for the answer: audit it now
            problems = check_process(proc.pid, reports(rdir)[proc.pid])
            problems += audit_cli_agrees(proc.pid, reports(rdir)[proc.pid])
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n")
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0 and out == b"ok\n"
    assert problems == []


# --- sqlite3, bash, perl, python3 ----------------------------------------------------

SQL = """\
create table t(a integer primary key, b text, c real);
with recursive n(i) as (select 1 union all select i + 1 from n where i < 20000)
insert into t select i, printf('row-%05d', i), i * 0.5 from n;
create index tb on t(b);
select count(*), sum(a), round(avg(c), 3), min(b), max(b) from t;
select b from t where b like 'row-1999%' order by b desc limit 3;
create table u as select a % 97 as k, count(*) as n from t group by k;
select k, n from u order by n desc, k limit 5;
select t.a, u.n from t join u on t.a % 97 = u.k where t.a between 100 and 103;
.shell sh -c 'cat /proc/$PPID/smaps > "$SMAPS_OUT"'
"""


def run_both(
    argv: list[str],
    tmp_path: Path,
    level: str = "code",
    extra_env: dict[str, str] | None = None,
    normalize: Callable[[str], str] = lambda out: out,
    **kw: object,
) -> tuple[str, str, Path]:
    """Run ``argv`` plain and sealed (the sealed run dumps its smaps to
    $SMAPS_OUT); assert the same stdout and exit status; return the sealed
    run's output and smaps and the report directory."""
    tmp_path.mkdir(exist_ok=True)
    rdir = tmp_path / f"reports-{level}"
    rdir.mkdir()
    smaps = tmp_path / f"smaps-{level}.txt"
    extra = extra_env or {}
    plain = subprocess.run(
        argv, capture_output=True, text=True, env=sealkit_env(plain_env(SMAPS_OUT=os.devnull, **extra)),
        **kw, check=False,
    )  # type: ignore[call-overload]  # fmt: skip
    sealed_run = subprocess.run(
        [*sealed("--level", level, "--report", str(rdir / "r-%p.jsonl")), *argv],
        capture_output=True, text=True, env=sealkit_env(plain_env(SMAPS_OUT=str(smaps), **extra)),
        **kw, check=False,
    )  # type: ignore[call-overload]  # fmt: skip
    assert (plain.returncode, normalize(plain.stdout)) == (
        sealed_run.returncode,
        normalize(sealed_run.stdout),
    ), sealed_run.stderr
    assert plain.returncode == 0, plain.stderr
    return sealed_run.stdout, smaps.read_text() if smaps.exists() else "", rdir


def main_report(rdir: Path, exe: str) -> dict[tuple[int, int], sealexec.ReportObject]:
    """The report of the process that ran ``exe`` (the first one: smallest PID
    whose objects include it)."""
    real = os.path.realpath(exe)
    for _, objs in sorted(reports(rdir).items()):
        if any(o.path == real for o in objs.values()):
            return objs
    raise AssertionError(f"no report for {exe}")


def test_sqlite3_workload(tmp_path, exec_lib):
    need("sqlite3")
    out, smaps, rdir = run_both(["sqlite3", ":memory:"], tmp_path, input=SQL)
    assert "20000|200010000|5000.25|row-00001|row-20000" in out
    assert check_smaps_text(smaps, main_report(rdir, shutil.which("sqlite3") or "")) == []


BASH = """\
set -e
seq 1 2000 | sort -rn | head -3
printf '%s\\n' banana apple cherry | sort | tr a-z A-Z
ls /usr/lib/x86_64-linux-gnu | grep -c '^libc\\.so' || true
x=$(echo forked | cat); echo "$x $((6 * 7))"
for i in 1 2 3; do date -u -d @$((i * 86400)) +%F; done
cat /proc/$$/smaps > "$SMAPS_OUT"
"""


def test_bash_script_forking_coreutils(tmp_path, exec_lib):
    out, smaps, rdir = run_both(["bash", "-c", BASH], tmp_path)
    assert out.splitlines()[:3] == ["2000", "1999", "1998"]
    assert check_smaps_text(smaps, main_report(rdir, "/bin/bash")) == []
    # the coreutils children were sealed too (inherited): each wrote its report
    ran = {
        Path(o.path).name
        for objs in reports(rdir).values()
        for o in objs.values()
        if o.loaded_by == "initial"
    }
    assert {"sort", "head", "tr", "date", "cat"} <= ran


PERL = r"""
use strict; use POSIX qw(floor); use List::Util qw(sum max);
my @v = map { $_ * 3 } 1 .. 1000;
printf "%d %d %d\n", sum(@v), max(@v), floor(10.7);
my %h = map { $_ => length $_ } qw(alpha beta gamma);
print join(",", map { "$_=$h{$_}" } sort keys %h), "\n";
system("cat /proc/$$/smaps > $ENV{SMAPS_OUT}") == 0 or die;
"""


@pytest.mark.parametrize("level", ["code", "all"])
def test_perl_e(tmp_path, exec_lib, level):
    need("perl")
    out, smaps, rdir = run_both(["perl", "-e", PERL], tmp_path, level)
    assert out == "1501500 3000 10\nalpha=5,beta=4,gamma=5\n"
    objs = main_report(rdir, "/usr/bin/perl")
    assert check_smaps_text(smaps, objs) == []
    xs = [o for o in objs.values() if o.loaded_by == "dlopen"]
    assert xs, "perl loads its XS modules (POSIX.so, Util.so) with dlopen"
    for o in xs:
        # DynaLoader's dlopen has no RTLD_NODELETE: sealed only at level all
        assert o.sealing == (level == "all"), o.path


PY_SMAPS = "import json, zlib, ssl, decimal, sqlite3; open(__import__('os').environ['SMAPS_OUT'], 'w').write(open('/proc/self/smaps').read())"


@pytest.mark.parametrize("level", ["code", "all"])
def test_python3_harden_workload_and_its_extension_modules(tmp_path, exec_lib, level):
    py = "/usr/bin/python3"
    need(py)
    workload = ROOT / "tests" / "kernel" / "hardening_workload.py"

    # the project's own harden workload, in control mode: plain and sealed
    # print the same JSON line (hardening_workload.py compares modules,
    # results and /proc facts)
    # (but for what it reads of its own sealing from its smaps)
    def without_seal_state(out: str) -> str:
        data = json.loads(out)
        data.pop("sealed vmas")
        data.pop("unsealed later extensions")
        return json.dumps(data, sort_keys=True)

    out, _, _ = run_both(
        [py, str(workload), "control"],
        tmp_path / "w",
        level,
        {"PYTHONPATH": str(SRC)},
        without_seal_state,
    )
    state = json.loads(out)
    assert state["sealed vmas"] > 0
    # the extension modules it imports after start-up: sealed only at level all
    assert bool(state["unsealed later extensions"]) == (level == "code")
    _, smaps, rdir = run_both([py, "-c", PY_SMAPS], tmp_path, level)
    objs = main_report(rdir, os.path.realpath(py))
    assert check_smaps_text(smaps, objs) == []
    ext = [o for o in objs.values() if o.path.endswith(".cpython-311-x86_64-linux-gnu.so")]
    assert ext and all(o.sealing == (level == "all") for o in ext)


# --- attacks from inside real programs ------------------------------------------------

ATTACKS = ["mprotect-libc-text", "munmap-exe", "mmap-fixed-relro"]
# a sealed shell puts the attack library in front of the inherited preload
# and execs the program (same PID): the library is loaded into the program
# only, and its constructor attacks once the program is sealed
WITH_ATTACK = ["/bin/sh", "-c", 'LD_PRELOAD="$ATTACK_LIB:$LD_PRELOAD" exec "$@"', "sh"]


def test_attacks_inside_sqlite3_fail_with_eperm_and_its_workload_is_unchanged(
    tmp_path, fx, exec_lib
):
    need("sqlite3")
    out = tmp_path / "attack.txt"
    sql = SQL.split(".shell", maxsplit=1)[0]  # no child: the attacks are sqlite3's own
    env = plain_env(ATTACK_LIB=str(fx.root / "libattack.so"))
    plain = subprocess.run(
        ["sqlite3", ":memory:"], input=sql, capture_output=True, text=True, env=env, check=False
    )
    attacked = subprocess.run(
        [*sealed(), *WITH_ATTACK, "sqlite3", ":memory:"], input=sql, capture_output=True,
        text=True, env=sealkit_env({**env, "ATTACK_OUT": str(out)}), timeout=120, check=False,
    )  # fmt: skip
    assert plain.returncode == 0, plain.stderr
    assert (attacked.returncode, attacked.stdout) == (0, plain.stdout), attacked.stderr
    assert "20000|200010000|5000.25|row-00001|row-20000" in attacked.stdout
    assert out.read_text().splitlines() == [f"{a}=EPERM" for a in ATTACKS]


def test_attacks_inside_the_nginx_master_fail_with_eperm_and_it_serves_on(
    nginx, tmp_path, fx, monkeypatch
):
    out = tmp_path / "attack.txt"
    monkeypatch.setenv("ATTACK_LIB", str(fx.root / "libattack.so"))
    monkeypatch.setenv("ATTACK_OUT", str(out))
    proc, port = nginx([*sealed(), *WITH_ATTACK], tmp_path / "attacked")
    assert out.read_text().splitlines() == [f"{a}=EPERM" for a in ATTACKS]
    assert requests(port, 1_000) == (1_000, {f"hello /r{i}\n" for i in range(7)})
    assert proc.poll() is None
    # the control: the same library in an unsealed nginx gets through
    plain_out = tmp_path / "plain-attack.txt"
    monkeypatch.setenv("ATTACK_OUT", str(plain_out))
    child = subprocess.run(
        [*WITH_ATTACK, "/usr/sbin/nginx", "-v"],
        capture_output=True, env=plain_env(LD_PRELOAD=""), timeout=60, check=False,
    )  # fmt: skip
    assert plain_out.read_text().splitlines()[:1] == ["mprotect-libc-text=ok"], child.stderr


# --- a service started by its manager with --print-env's variables -------------------


def test_nginx_started_with_print_env_variables_is_sealed_without_python(nginx, tmp_path):
    # what docs/exec.md's systemd drop-in does: the variables come from an
    # EnvironmentFile= written by `sealkit exec --print-env`; the service
    # manager starts nginx itself (no Python, no sealkit in its start path)
    rdir = tmp_path / "run"
    rdir.mkdir()
    printed = subprocess.run(
        sealkit_argv("exec", "--print-env", "--report", str(rdir / "r-%p.jsonl")),
        capture_output=True, text=True, env=sealkit_env(), timeout=60, check=True,
    )  # fmt: skip
    # systemd's EnvironmentFile=: one NAME=value per line, nothing to unquote
    variables = dict(line.split("=", 1) for line in printed.stdout.splitlines())
    assert set(variables) == {"LD_AUDIT", "LD_PRELOAD", "SEALKIT_EXEC_LEVEL",
                              "SEALKIT_EXEC_LIB", "SEALKIT_EXEC_REPORT"}  # fmt: skip
    proc, port = nginx([], tmp_path / "service", {"PATH": "/usr/sbin:/usr/bin:/bin", **variables})
    assert requests(port, 500) == (500, {f"hello /r{i}\n" for i in range(7)})
    master = proc.pid
    assert Path(f"/proc/{master}/exe").resolve() == Path("/usr/sbin/nginx")
    for pid in {master, *workers(master)}:
        assert pid in reports(rdir), pid  # each process wrote its own %p report
        objs = reports(rdir)[pid]
        assert settled(lambda pid=pid, objs=objs: check_process(pid, objs)) == [], pid
    assert audit_cli_agrees(master, reports(rdir)[master]) == []


def test_the_systemd_drop_in_of_the_docs_is_valid_for_debians_nginx_unit(tmp_path):
    unit = Path("/lib/systemd/system/nginx.service")
    analyze = shutil.which("systemd-analyze")
    if not unit.exists() or analyze is None:
        pytest.skip("needs Debian's nginx.service (nginx-common) and systemd-analyze (systemd)")
    docs = (ROOT / "docs" / "exec.md").read_text()
    (drop_in,) = re.findall(r"```ini\n(# /etc/systemd/system/nginx.service.d/sealing.conf\n.*?)```",
                            docs, re.S)  # fmt: skip
    shutil.copy(unit, tmp_path / "nginx.service")
    (tmp_path / "nginx.service.d").mkdir()
    (tmp_path / "nginx.service.d" / "sealing.conf").write_text(drop_in)
    done = subprocess.run(
        [analyze, "verify", "--man=no", str(tmp_path / "nginx.service")],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0 and "sealing.conf" not in done.stderr + done.stdout, done.stderr
    # the check can fail: a misspelt key in the same drop-in is reported
    (tmp_path / "nginx.service.d" / "sealing.conf").write_text(
        drop_in + "MemoryDenyWriteExecut=yes\n"
    )
    done = subprocess.run(
        [analyze, "verify", "--man=no", str(tmp_path / "nginx.service")],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert "sealing.conf" in done.stderr and "MemoryDenyWriteExecut" in done.stderr
