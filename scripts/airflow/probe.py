"""Readiness probe for scripts/airflow/start.sh (standard library only, so any python3 runs it).

Waits, in order, for: the API to answer, a token from /auth/token, the components' health in
/api/v2/monitor/health (and, where a role runs twice, a job of each instance in /api/v2/jobs),
Celery workers' "ready." in their logs, and the DAGs folder to be parsed. While waiting it
checks that the components it waits for are still alive, so a component that dies at start
fails at once.

On failure it exits 1 and its last stdout line is `component=<name>` (or `component=`), so the
shell script can show that component's log.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

HEALTH_KEYS = {"scheduler": "scheduler", "triggerer": "triggerer", "dag-processor": "dag_processor"}
JOB_TYPES = {"scheduler": "SchedulerJob", "triggerer": "TriggererJob"}


def role(name: str) -> str:
    """The command a component runs: scheduler-2 is a scheduler, worker-1 a Celery worker
    (as role_of in common.sh)."""
    for prefix in ("scheduler", "triggerer", "worker"):
        if name.startswith(prefix + "-"):
            return prefix
    return name


SETTLE_S = 30


def mtime(path: str) -> float:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return time.time()


class NotReady(Exception):
    pass


class Failed(Exception):
    def __init__(self, component: str, reason: str):
        super().__init__(reason)
        self.component = component


def request(url: str, token: str | None = None, timeout: float = 5.0) -> tuple[int, object]:
    req = urllib.request.Request(url, headers={"Accept": "application/json"})
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(errors="replace")[:300]
    except (OSError, ValueError) as err:
        raise NotReady(f"{url}: {err}") from err


def alive(pid_file: str, name: str) -> bool:
    try:
        pid = int(Path(pid_file).read_text().strip())
        if Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z":
            return False
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except (OSError, ValueError, IndexError):
        return False
    return runs(cmd, name)


def runs(cmd: str, name: str) -> bool:
    """Whether a process with command line `cmd` is component `name` (not a recycled pid).
    The api-server retitles itself "airflow api_server -- host:... port:..."; a Celery worker
    "[celeryd: worker-1@host:MainProcess] -active- (celery worker ...)"."""
    if role(name) == "worker":
        return "celery" in cmd and f"{name}@" in cmd
    what = role(name)
    return "airflow" in cmd and (what in cmd or what.replace("-", "_") in cmd)


def paged(url: str, token: str, key: str) -> list[dict]:
    items: list[dict] = []
    while True:
        sep = "&" if "?" in url else "?"
        status, body = request(f"{url}{sep}limit=100&offset={len(items)}", token)
        if status != 200 or not isinstance(body, dict):
            raise NotReady(f"{url}: HTTP {status}: {body}")
        items += body[key]
        if not body[key] or len(items) >= body["total_entries"]:
            return items


def candidate_files(folder: Path) -> list[Path]:
    """The files the dag-processor would parse: Airflow's safe-mode heuristic, minus
    .airflowignore (glob syntax) patterns of the folder's root."""
    ignore = folder / ".airflowignore"
    patterns = [
        p.strip()
        for p in (ignore.read_text().splitlines() if ignore.exists() else [])
        if p.strip() and not p.startswith("#")
    ]
    found = []
    for path in sorted(folder.rglob("*.py")):
        rel = path.relative_to(folder)
        if any(part.startswith((".", "__pycache__")) for part in rel.parts):
            continue
        if any(
            fnmatch.fnmatch(str(rel), pat) or fnmatch.fnmatch(rel.name, pat) for pat in patterns
        ):
            continue
        content = path.read_bytes().lower()
        if b"airflow" in content and (b"dag" in content or b"asset" in content):
            found.append(path)
    return found


class NotReadyAt(NotReady):
    """Not ready yet, and which component a timeout should blame."""

    def __init__(self, component: str, reason: str):
        super().__init__(reason)
        self.component = component


def wait_api(url: str) -> str:
    """The API answers and hands out a token; returns the token."""
    status, body = request(f"{url}/api/v2/version")
    if status != 200:
        raise NotReadyAt("api-server", f"/api/v2/version: HTTP {status}")
    status, body = request(f"{url}/auth/token")
    if status not in (200, 201) or not isinstance(body, dict):
        raise Failed("api-server", f"GET /auth/token: HTTP {status}: {body}")
    return body["access_token"]


def wait_health(url: str, components: list[str], launched: dict[str, float]) -> None:
    status, health = request(f"{url}/api/v2/monitor/health")
    if status != 200 or not isinstance(health, dict):
        raise NotReadyAt("api-server", f"/api/v2/monitor/health: HTTP {status}: {health}")
    if (health.get("metadatabase") or {}).get("status") != "healthy":
        raise NotReadyAt("api-server", f"metadatabase: {health.get('metadatabase')}")
    for name in components:
        key = HEALTH_KEYS.get(role(name))
        if not key:
            continue
        info = health.get(key) or {}
        if info.get("status") != "healthy":
            raise NotReadyAt(name, f"{name}: {info}")
        # A killed component stays "healthy" until its last heartbeat is 30 s old: a
        # restarted one counts only from a heartbeat of its own.
        beat = info.get(f"latest_{key}_heartbeat")
        if name in launched and (
            not beat or datetime.fromisoformat(beat).timestamp() < launched[name]
        ):
            raise NotReadyAt(name, f"{name}: no heartbeat since its start yet ({beat})")


def wait_instances(
    url: str, token: str, components: list[str], launched: dict[str, float], multi: list[str]
) -> None:
    """Health shows one heartbeat per role: for a role that runs several times (`multi`),
    each component launched must have its own running job, started after its launch."""
    for what, job_type in JOB_TYPES.items():
        if what not in multi:
            continue  # one instance: its health says it all
        mine = [n for n in components if role(n) == what and n in launched]
        if not mine:
            continue
        since = datetime.fromtimestamp(min(launched[n] for n in mine), timezone.utc)
        query = urllib.parse.urlencode(
            {"job_type": job_type, "job_state": "running", "start_date_gte": since.isoformat()}
        )
        status, body = request(f"{url}/api/v2/jobs?{query}", token)
        if status != 200 or not isinstance(body, dict):
            raise NotReadyAt(mine[-1], f"/api/v2/jobs: HTTP {status}: {body}")
        if body.get("total_entries", 0) < len(mine):
            raise NotReadyAt(
                mine[-1], f"{len(mine)} {what}(s) started, {body.get('total_entries')} running"
            )


def wait_workers(log_dir: str, components: list[str]) -> None:
    """A Celery worker logs "<name>@<host> ready." once it consumes its queue: looked for
    after start.sh's last start marker in its log."""
    for name in components:
        if role(name) != "worker":
            continue
        try:
            text = Path(log_dir, f"{name}.log").read_text(errors="replace")
        except OSError:
            text = ""
        since_start = text.rsplit(f"start.sh: starting {name}", 1)[-1]
        if f"{name}@" not in since_start or " ready." not in since_start:
            raise NotReadyAt(name, f"{name}: not ready yet (no 'ready.' in its log)")


def wait_dags(url: str, token: str, args: argparse.Namespace, noted: set[Path]) -> None:
    dags = paged(f"{url}/api/v2/dags", token, "dags")
    ids = {d["dag_id"] for d in dags}
    missing = [d for d in args.dag if d not in ids]
    if missing:
        raise NotReadyAt("dag-processor", f"DAGs not visible yet: {missing}")
    if len(ids) < args.min_dags:
        raise NotReadyAt("dag-processor", f"{len(ids)} DAGs visible, waiting for {args.min_dags}")
    if not args.dags_folder:
        return
    folder = Path(args.dags_folder).resolve()
    errors = paged(f"{url}/api/v2/importErrors", token, "import_errors")
    seen = {d.get("fileloc") for d in dags} | {d.get("relative_fileloc") for d in dags}
    seen |= {e.get("filename") for e in errors}
    todo = [
        p
        for p in candidate_files(folder)
        if str(p) not in seen and str(p.relative_to(folder)) not in seen
    ]
    # A file with no DAG in it (a helper module) leaves no trace in the API: once the
    # dag-processor has run SETTLE_S past the file's last change, take it as parsed rather
    # than wait for the timeout.
    proc_start = mtime(os.path.join(args.run_dir, "dag-processor.pid"))
    for p in todo:
        if time.time() - max(mtime(str(p)), proc_start) > SETTLE_S and p not in noted:
            noted.add(p)
            say(
                f"no DAG and no import error from {p.relative_to(folder)} after {SETTLE_S}s: "
                "taken as a file without DAGs"
            )
    todo = [str(p.relative_to(folder)) for p in todo if p not in noted]
    if todo:
        raise NotReadyAt("dag-processor", f"files not parsed yet: {todo}")
    for e in errors:
        last_line = (e.get("stack_trace") or "").strip().splitlines()[-1:]
        say(f"import error in {e.get('filename')}: {last_line}")


def say(message: str) -> None:
    print(f"[airflow-start] {message}", file=sys.stderr)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--timeout", type=float, default=180)
    ap.add_argument("--run-dir", required=True)
    ap.add_argument("--log-dir", help="the components' logs (Celery workers' readiness)")
    ap.add_argument(
        "--multi", action="append", default=[], help="a role (scheduler, triggerer) run twice"
    )
    ap.add_argument("--component", action="append", default=[], help="components to wait for")
    ap.add_argument("--dags-folder")
    ap.add_argument("--dag", action="append", default=[], help="dag ids that must be visible")
    ap.add_argument("--min-dags", type=int, default=0)
    ap.add_argument("--token-file", help="write the token here")
    ap.add_argument(
        "--started",
        action="append",
        default=[],
        metavar="NAME=EPOCH",
        help="a component launched at EPOCH: its health counts from a heartbeat after that",
    )
    args = ap.parse_args()
    launched = {k: float(v) for k, _, v in (s.partition("=") for s in args.started)}
    noted: set[Path] = set()
    started = time.monotonic()
    deadline = started + args.timeout
    try:
        while True:
            try:
                for name in args.component:
                    if not alive(os.path.join(args.run_dir, f"{name}.pid"), name):
                        raise Failed(name, f"{name} is not running (it died while starting)")
                try:
                    token = wait_api(args.url)
                except NotReady as err:  # connection refused while the api-server starts
                    raise NotReadyAt("api-server", str(err)) from err
                wait_health(args.url, args.component, launched)
                wait_instances(args.url, token, args.component, launched, args.multi)
                if args.log_dir:
                    wait_workers(args.log_dir, args.component)
                if args.dags_folder or args.dag or args.min_dags:
                    wait_dags(args.url, token, args, noted)
            except NotReady as err:
                if time.monotonic() > deadline:
                    blame = getattr(err, "component", "")
                    raise Failed(blame, f"timed out after {args.timeout:.0f}s: {err}") from None
                time.sleep(0.5)
                continue
            if args.token_file:
                Path(args.token_file).write_text(token + "\n")
            say(f"API, token, health and DAGs ready after {time.monotonic() - started:.1f}s")
            return 0
    except Failed as err:
        say(f"ERROR: {err}")
        print(f"component={err.component}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
