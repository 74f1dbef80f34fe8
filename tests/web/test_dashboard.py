"""The dashboard in a real browser (Debian's chromium driven by Playwright) against real
daemons: a bootstrap node, an owner with ``[web] enabled``, two trainers (one serving
its own dashboard) and a real S3 server (nanio).

One cluster for the module; the tests run in order on it: log in, refuse bad
validation with the daemon's own message, submit a small digits job from the form and
watch it to ``done`` with every round on the chart, download the model and check its
sha256 against the owner's, cancel a job, and refuse requests without the token or
from another origin. Each page is saved as a screenshot under ``$DASHBOARD_SHOTS``
(default ``out/dashboard-screenshots``).
"""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from p2pnode.commands.demo import clean_env, launch
from p2pnode.control import call
from p2pnode.errors import ControlError
from p2pnode.procs import Processes
from tests.conftest import wait_for
from tests.e2e.test_resilience import storage_of
from tests.s3servers import ServerHandle

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SHOTS = Path(os.environ.get("DASHBOARD_SHOTS", "out/dashboard-screenshots"))
WEB = "[web]\nenabled = true\nport = 0\nevents_interval_s = 0.3\n"
ROUNDS = 3

if not Path(CHROMIUM).exists():
    if os.environ.get("CI"):
        raise RuntimeError("chromium is missing: `make browser` installs it (apt-get)")
    pytest.skip("chromium is not installed (make browser)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api")


@dataclass
class Dash:
    owner: Path
    trainer: Path
    url: str
    token: str
    procs: Processes
    page: Any


def login_url(data_dir: Path, procs: Processes) -> tuple[str, str]:
    def ready() -> dict[str, Any] | None:
        procs.check_alive()
        f = data_dir / "web.json"
        return json.loads(f.read_text()) if f.exists() else None

    url = wait_for(ready, 60, what=f"the dashboard of {data_dir.name}")["url"]
    token = (data_dir / "web.token").read_text().strip()
    assert (data_dir / "web.token").stat().st_mode & 0o077 == 0
    return url, token


@pytest.fixture(scope="module")
def dash(tmp_path_factory: pytest.TempPathFactory, nanio_server: ServerHandle) -> Iterator[Dash]:
    tmp = tmp_path_factory.mktemp("dash")
    (tmp / "logs").mkdir()
    procs = Processes(tmp)
    try:
        cluster = launch(tmp, procs, storage_of(nanio_server), 1, say=lambda _m: None,
                         owner_toml=WEB)
        # A second trainer serves its own dashboard (its Trainer page shows its tasks).
        web_trainer = tmp / "trainer-web"
        web_trainer.mkdir()
        (web_trainer / "config.toml").write_text((tmp / "trainer.toml").read_text() + WEB)
        argv = [*cluster.trainer_argv[0]]
        argv[argv.index("--data-dir") + 1] = str(web_trainer)
        argv[argv.index("--config") + 1] = str(web_trainer / "config.toml")
        procs.start("trainer-web", argv, clean_env())
        owner_id = call(cluster.owner_dir, "node.id")["peer_id"]
        url, token = login_url(cluster.owner_dir, procs)
        login_url(web_trainer, procs)
        wait_for(lambda: len(call(cluster.owner_dir, "node.peers")) >= 2, 60,
                 what="the owner to see both trainers")
        assert owner_id
        SHOTS.mkdir(parents=True, exist_ok=True)
        with sync_api.sync_playwright() as pw:
            ctx = pw.chromium.launch_persistent_context(
                str(tmp / "profile"), executable_path=CHROMIUM, headless=True, args=ARGS,
                viewport={"width": 1280, "height": 900}, accept_downloads=True)
            page = ctx.new_page()
            page.set_default_timeout(20_000)
            page.on("dialog", lambda d: d.accept())
            yield Dash(cluster.owner_dir, web_trainer, url, token, procs, page)
            ctx.close()
    finally:
        procs.stop_all()


def shot(page: Any, name: str, full: bool = True) -> None:
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=full)


def fill(page: Any, values: dict[str, str]) -> None:
    page.get_by_text("More fields").click()
    for name, value in values.items():
        field = page.get_by_label(name, exact=True)
        if field.evaluate("e => e.tagName") == "SELECT":
            field.select_option(value)
        else:
            field.fill(value)


JOB = {"model": "mlp", "model_params": '{"hidden": [32]}', "dataset": "digits",
       "rounds": str(ROUNDS), "trainers": "2", "epochs": "1", "lr": "0.1",
       "batch_size": "16", "partition": "iid", "chunk_samples": "200",
       "round_deadline_s": "60", "offer_window_s": "1"}


def distro_train(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "p2pnode.cli", *args], capture_output=True,
                          text=True, timeout=60, env=clean_env(), check=False)


def test_login_then_a_bad_field_gets_the_daemons_own_message(dash: Dash) -> None:
    page = dash.page
    printed = distro_train("web", "--data-dir", str(dash.owner))
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout == f"{dash.url}#token={dash.token}\n"
    no_web = distro_train("web", "--data-dir", str(dash.owner.parent / "bootstrap"))
    assert no_web.returncode == 4 and "[web] enabled = true" in no_web.stderr
    page.goto(printed.stdout.strip())
    sync_api.expect(page.get_by_role("heading", name="Jobs", exact=True)).to_be_visible()
    assert dash.token not in page.url  # the token left the address bar
    assert page.context.cookies() == []
    fill(page, {**JOB, "rounds": "0"})
    page.get_by_role("button", name="Submit job").click()
    with pytest.raises(ControlError) as cli:
        call(dash.owner, "jobs.submit", {"spec": {"dataset": "digits", "rounds": 0}})
    alert = page.get_by_role("alert")
    sync_api.expect(alert).to_have_text(cli.value.message)
    sync_api.expect(page.get_by_label("rounds", exact=True)).to_have_attribute(
        "aria-invalid", "true")
    shot(page, "jobs-form-error")


def test_submit_from_the_form_and_watch_every_round_then_download_the_model(
        dash: Dash, tmp_path: Path) -> None:
    page = dash.page
    page.get_by_label("rounds", exact=True).fill(str(ROUNDS))
    # Long enough rounds that "running" outlasts the page's 0.3 s event interval: a
    # warm trainer finishes a 1-epoch digits round in a few hundredths of a second.
    page.get_by_label("epochs", exact=True).fill("30")
    page.get_by_role("button", name="Submit job").click()
    page.wait_for_url("**#/jobs/*")
    job_id = page.url.rsplit("/", 1)[1]
    state = page.get_by_test_id("job-state")
    sync_api.expect(state).to_have_text("running", timeout=60_000)
    shot(page, "job-running")
    sync_api.expect(state).to_have_text(re.compile("^(done|failed|cancelled)$"), timeout=120_000)
    status = call(dash.owner, "jobs.status", {"job_id": job_id})
    assert status["state"] == "done", status["error"]
    sync_api.expect(page.locator("svg[data-testid=curve] circle.point.acc")).to_have_count(ROUNDS)
    assert status["completed_round"] == ROUNDS
    label = page.get_by_role("img").get_attribute("aria-label") or ""
    assert f"over {ROUNDS} rounds" in label
    verdicts = [u["verdict"] for r in status["history"] for u in r["updates"]]
    assert verdicts.count("accepted") >= ROUNDS
    parts = page.get_by_role("table", name="Each trainer's part in each round")
    sync_api.expect(parts.get_by_role("cell", name="accepted", exact=True)).to_have_count(
        verdicts.count("accepted"))
    shot(page, "job-done")
    with page.expect_download() as info:
        page.get_by_role("button", name="Download Model (safetensors)").click()
    saved = tmp_path / "model.safetensors"
    info.value.save_as(saved)
    assert hashlib.sha256(saved.read_bytes()).hexdigest() == status["model_sha256"]
    with page.expect_download() as info:
        page.get_by_role("button", name="Download metrics.json").click()
    info.value.save_as(tmp_path / "metrics.json")
    rounds = json.loads((tmp_path / "metrics.json").read_text())["rounds"]
    assert [r["round"] for r in rounds] == list(range(1, ROUNDS + 1))
    with page.expect_download() as info:
        page.get_by_role("button", name="Download Curve (PNG)").click()
    info.value.save_as(tmp_path / "curve.png")
    assert (tmp_path / "curve.png").read_bytes().startswith(b"\x89PNG\r\n")
    page.set_viewport_size({"width": 390, "height": 844})  # a phone
    shot(page, "job-done-phone")
    page.set_viewport_size({"width": 1280, "height": 900})


def test_a_dataset_uploaded_from_the_form_lands_in_the_owners_data_dir(
        dash: Dash, tmp_path: Path) -> None:
    page = dash.page
    page.get_by_role("link", name="Jobs").click()
    csv = tmp_path / "mine.csv"
    csv.write_bytes(b"x,y\n1,0\n2,1\n")
    page.get_by_label("or upload a dataset file to the daemon").set_input_files(str(csv))
    sync_api.expect(page.get_by_text("Uploaded mine.csv")).to_be_visible()
    if page.get_by_label("data", exact=True).count():
        path = json.loads(page.get_by_label("data", exact=True).input_value())["path"]
    else:
        path = page.get_by_label("dataset", exact=True).input_value()
    stored = Path(path)
    assert stored.parent.parent == dash.owner / "uploads"
    assert stored.read_bytes() == csv.read_bytes()
    page.reload()  # a fresh form for the next test (the tab keeps its token)


def test_cancel_a_job_from_its_page(dash: Dash) -> None:
    page = dash.page
    page.get_by_role("link", name="Jobs").click()
    fill(page, {**JOB, "rounds": "200"})
    page.get_by_role("button", name="Submit job").click()
    page.wait_for_url("**#/jobs/*")
    job_id = page.url.rsplit("/", 1)[1]
    page.get_by_role("button", name="Cancel job").click()
    sync_api.expect(page.get_by_test_id("job-state")).to_have_text("cancelled")
    assert call(dash.owner, "jobs.status", {"job_id": job_id})["state"] == "cancelled"
    page.get_by_role("link", name="Jobs").click()
    sync_api.expect(page.get_by_role("row")).to_have_count(3)  # header + two jobs
    shot(page, "jobs")
    page.set_viewport_size({"width": 390, "height": 844})  # a phone
    shot(page, "jobs-phone")
    page.set_viewport_size({"width": 1280, "height": 900})


def test_network_and_trainer_pages(dash: Dash) -> None:
    page = dash.page
    page.get_by_role("link", name="Network").click()
    me = call(dash.owner, "node.id")["peer_id"]
    sync_api.expect(page.get_by_test_id("peer-id")).to_have_text(me)
    peers = page.get_by_role("table", name="Live peers with their health and reputation")
    sync_api.expect(peers.get_by_role("row")).to_have_count(3, timeout=30_000)  # + header
    shot(page, "network")
    # The web trainer's own dashboard: its Trainer page lists the tasks it trained.
    url, token = login_url(dash.trainer, dash.procs)
    page.goto(f"{url}#token={token}")
    page.get_by_role("link", name="Trainer").click()
    sync_api.expect(page.get_by_role("heading", name="Trainer", exact=True)).to_be_visible()
    tasks = call(dash.trainer, "trainer.status")["jobs"]
    assert tasks, "the web trainer trained nothing"
    for job_id in tasks:
        sync_api.expect(page.get_by_text(job_id)).to_be_visible()
    sync_api.expect(page.get_by_text("Loading…")).to_have_count(0)  # wallet and earnings
    shot(page, "trainer")


class _Blank(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # the stdlib's name
        body = b"<!doctype html><title>elsewhere</title>"
        self.send_response(200)
        self.send_header("content-type", "text/html")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def test_requests_without_the_token_or_from_another_origin_are_refused(dash: Dash) -> None:
    api = dash.url + "api/rpc"
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "jobs.list"})
    assert httpx.post(api, content=body).status_code == 401
    auth = {"authorization": f"Bearer {dash.token}"}
    assert httpx.post(api, content=body, headers=auth).json()["result"]
    evil = httpx.post(api, content=body, headers={**auth, "origin": "http://evil.example"})
    assert evil.status_code == 403
    assert "access-control-allow-origin" not in evil.headers
    # In the browser: a page of another origin cannot drive the daemon, token or not.
    other = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Blank)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    try:
        page = dash.page
        page.goto(f"http://127.0.0.1:{other.server_address[1]}/")
        outcome = page.evaluate(
            """async ([api, body, token]) => {
                try {
                  const headers = {"Authorization": "Bearer " + token,
                                   "Content-Type": "application/json"};
                  const r = await fetch(api, {method: "POST", body, headers});
                  return "answered " + r.status;
                } catch (e) { return "refused"; }
            }""", [api, body, dash.token])
        assert outcome == "refused"
        page.goto(dash.url)  # no token in the URL: this tab still holds it
        sync_api.expect(page.get_by_role("heading", name="Jobs", exact=True)).to_be_visible()
    finally:
        other.shutdown()
