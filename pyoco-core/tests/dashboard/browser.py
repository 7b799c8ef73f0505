"""Drives the gateway's dashboard in a real Chromium (Debian's, through Playwright for Python).

Run by pyoco-core/tests/dashboard_browser.rs against a gateway + worker it started:

  browser.py --url URL --mode en --shots DIR --wheel FILE   # no API keys, desktop 1366x768
  browser.py --url URL --mode ja --shots DIR --key KEY      # API keys on, phone 390x844

Every step waits for a condition (Playwright's expect), never for a fixed time. Exits non-zero
with the failed expectation on stderr.
"""

import argparse
import json
import os
import sys
import time

from playwright.sync_api import expect, sync_playwright

FLOW = """flow:
  graph: "fetch >> (clean & enrich) >> publish"
tasks:
  fetch: {callable: "pyoco:echo", inputs: {value: 1}}
  clean: {callable: "pyoco:echo", inputs: {value: 2}}
  enrich: {callable: "pyoco:echo", inputs: {value: 3}}
  publish: {callable: "pyoco:echo", inputs: {value: 4}}
"""
SLOW = """flow: {graph: "wait >> after"}
tasks:
  wait: {callable: "pyoco:sleep", inputs: {seconds: 60}}
  after: {callable: "pyoco:echo"}
"""
BUNDLE = """\
workflows:
  main:
    flow: {graph: fan}
    tasks: {fan: {spawn: child}}
  child:
    flow: {graph: w}
    tasks: {w: {callable: "pyoco:echo"}}
submit: {entry_workflow: main}
"""
TIMEOUT = 30_000  # ms, per expectation: generous for a loaded 2-core machine
expect.set_options(timeout=TIMEOUT)


def step(name):
    print(f"--> {name}", flush=True)


def submit(request, url, yaml, flow_name, tag=None, key=None):
    form = {"workflow": {"name": "flow.yaml", "mimeType": "application/x-yaml", "buffer": yaml.encode()},
            "flow_name": flow_name}
    if tag:
        form["tag"] = tag
    headers = {"X-API-Key": key} if key else {}
    response = request.post(f"{url}/runs/yaml", multipart=form, headers=headers)
    assert response.ok, f"submit: {response.status} {response.text()}"
    return response.json()["run_id"]


def api_get(request, url, path, key=None):
    response = request.get(f"{url}{path}", headers={"X-API-Key": key} if key else {})
    assert response.ok, f"GET {path}: {response.status} {response.text()}"
    return response.json()


def wait_api(request, url, path, predicate, what, key=None, timeout=TIMEOUT / 1000):
    deadline = time.monotonic() + timeout
    while True:
        body = api_get(request, url, path, key)
        if predicate(body):
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}: {json.dumps(body)[:400]}")
        time.sleep(0.2)


def launch(p):
    args = ["--disable-dev-shm-usage"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        args.append("--no-sandbox")  # Chromium's sandbox refuses to run as root (CI)
    return p.chromium.launch(executable_path=os.environ.get("PYOCO_CHROMIUM", "/usr/bin/chromium"),
                             headless=True, args=args)


def watch_console(page, allowed=()):
    problems = []

    def on_console(msg):
        if msg.type == "error" and not any(a in msg.text for a in allowed):
            problems.append(f"console: {msg.text}")

    page.on("console", on_console)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    return problems


def run_card(page, run_id):
    return page.locator(f'#runsList li[data-run-id="{run_id}"]')


def english(p, args):
    browser = launch(p)
    page = browser.new_page(viewport={"width": 1366, "height": 768})
    page.set_default_timeout(TIMEOUT)
    problems = watch_console(page)
    request = page.request

    # A schedule made before the page loads, so its first render lists it.
    paths = api_get(request, args.url, "/openapi.json")["paths"]
    if "/schedules" in paths:
        form = {"workflow": {"name": "flow.yaml", "mimeType": "application/x-yaml", "buffer": FLOW.encode()},
                "flow_name": "hourly-report", "tag": "default", "interval_seconds": "3600"}
        response = request.post(f"{args.url}/schedules/yaml", multipart=form)
        assert response.ok, f"schedule: {response.status} {response.text()}"

    # Bundles waiting for approval, on a tag no worker serves (approving one runs nothing).
    waiting = []
    if "/runs/{run_id}/approve" in paths:
        for _ in range(2):
            form = {"bundle": {"name": "bundle.yaml", "mimeType": "application/x-yaml", "buffer": BUNDLE.encode()},
                    "tag": "nowhere"}
            response = request.post(f"{args.url}/runs/bundle", multipart=form)
            assert response.ok, f"bundle: {response.status} {response.text()}"
            assert response.json()["status"] == "PENDING_APPROVAL", response.text()
            waiting.append(response.json()["run_id"])

    step("the page loads in English")
    page.goto(args.url + "/")
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page.locator(".subtitle")).to_contain_text("operations room")
    expect(page.locator("h1")).to_have_text("Pyoco Control Deck")

    step("a submitted run appears and turns COMPLETED without a reload")
    marker = page.evaluate("window.__pyocoMarker = Math.random()")
    run_id = submit(request, args.url, FLOW, "dash_demo")
    card = run_card(page, run_id)
    expect(card).to_have_attribute("data-status", "COMPLETED")
    assert page.evaluate("window.__pyocoMarker") == marker, "the page was reloaded"

    step("its flow graph shows every task SUCCEEDED, with the parsed edges")
    card.click()
    expect(page.locator("#detailJson")).to_contain_text('"status": "COMPLETED"')
    nodes = page.locator("#flowGraph .node")
    expect(nodes).to_have_count(4)
    for task in ["fetch", "clean", "enrich", "publish"]:
        expect(page.locator(f'#flowGraph .node[data-task="{task}"]')).to_have_attribute("data-state", "SUCCEEDED")
    expect(page.locator("#flowGraph .edge")).to_have_count(4)
    expect(page.locator("#watchState")).to_have_attribute("data-state", "terminal")

    step("a task's record opens from the keyboard")
    page.locator('#flowGraph .node[data-task="enrich"]').focus()
    page.keyboard.press("Enter")
    expect(page.locator("#taskRecord")).to_be_visible()
    expect(page.locator("#taskRecord")).to_contain_text("enrich")
    expect(page.locator("#taskRecord")).to_contain_text("SUCCEEDED")

    step("a run is selected with the keyboard")
    card.focus()
    page.keyboard.press("Enter")
    expect(card).to_have_attribute("aria-current", "true")

    step("KPIs, the throughput sparkline and an unserved tag's warning")
    for kpi in ["#kpiRunning", "#kpiCompletedToday", "#kpiFailedToday"]:
        expect(page.locator(kpi)).not_to_have_text("-")
    submit(request, args.url, FLOW, "dash_unserved", tag="gpu")
    expect(page.locator('#queueList li[data-tag="gpu"] .tag-warning')).to_be_visible()
    expect(page.locator("#sparkThroughput polyline")).to_have_count(1)

    step("a wheel is uploaded from the page and listed with its history")
    page.set_input_files("#wheelFile", args.wheel)
    page.fill("#wheelTags", "default")
    page.click("#wheelUpload button[type=submit]")
    name = os.path.basename(args.wheel)
    expect(page.locator("#wheelsList")).to_contain_text(name)
    expect(page.locator("#wheelHistory")).to_contain_text(f"upload {name}")
    expect(page.locator("#wheelStatus")).to_contain_text(name)
    expect(page.locator("#errorLine")).to_have_text("")

    step("the schedules view shows exactly when the gateway serves /schedules, with its schedules")
    panel = page.locator("#schedulesPanel")
    if "/schedules" in paths:
        expect(panel).to_be_visible()
        expect(page.locator("#schedulesList")).to_contain_text("hourly-report")
        expect(page.locator("#schedulesList")).to_contain_text("ACTIVE")
    else:
        expect(panel).to_be_hidden()

    page.screenshot(path=os.path.join(args.shots, "desktop-en.png"), full_page=True)
    page.screenshot(path=os.path.join(args.shots, "desktop-en.jpg"), type="jpeg", quality=60)

    step("a running run is cancelled from the page")
    slow = submit(request, args.url, SLOW, "dash_slow")
    expect(run_card(page, slow)).to_have_attribute("data-status", "RUNNING")
    run_card(page, slow).click()
    expect(page.locator("#detailJson")).to_contain_text(slow)
    expect(page.locator("#detailCancel")).to_be_enabled()
    page.click("#detailCancel")
    expect(page.locator("#detailJson")).to_contain_text('"status": "CANCELLED"')
    wait_api(request, args.url, f"/runs/{slow}", lambda r: r["status"] == "CANCELLED", "the run to be CANCELLED")
    expect(run_card(page, slow)).to_have_attribute("data-status", "CANCELLED")
    expect(page.locator("#detailCancel")).to_be_disabled()

    step("a worker is hidden and unhidden")
    worker = page.locator('#workersList li[data-worker-id="w1"]')
    expect(worker.locator(".worker-state")).to_have_text("IDLE")
    worker.locator(".worker-toggle-hidden").click()
    expect(worker).to_have_count(0)
    page.check("#wIncludeHidden")
    expect(worker).to_have_count(1)
    expect(worker).to_contain_text("hidden")
    worker.locator(".worker-toggle-hidden").click()
    wait_api(request, args.url, "/workers?scope=all&include_hidden=true",
             lambda ws: any(w["worker_id"] == "w1" and not w["hidden"] for w in ws), "w1 to be visible")
    page.uncheck("#wIncludeHidden")
    expect(worker).to_have_count(1)

    step("the approvals view lists waiting bundles; one is approved and one rejected from it")
    panel = page.locator("#approvalsPanel")
    if waiting:
        expect(panel).to_be_visible()
        approve_me, reject_me = waiting
        expect(page.locator(f'#approvalsList li[data-run-id="{approve_me}"]')).to_have_count(1)
        page.locator(f'#approvalsList li[data-run-id="{approve_me}"] button:not(.danger)').click()
        wait_api(request, args.url, f"/runs/{approve_me}",
                 lambda r: r["approval_status"] == "approved" and r["status"] == "PENDING", "the approval")
        expect(page.locator(f'#approvalsList li[data-run-id="{approve_me}"]')).to_have_count(0)
        page.locator(f'#approvalsList li[data-run-id="{reject_me}"] button.danger').click()
        wait_api(request, args.url, f"/runs/{reject_me}",
                 lambda r: r["approval_status"] == "rejected" and r["status"] == "CANCELLED", "the rejection")
        expect(page.locator(f'#approvalsList li[data-run-id="{reject_me}"]')).to_have_count(0)
    else:
        expect(panel).to_be_hidden()

    assert not problems, "\n".join(problems)
    browser.close()


def japanese(p, args):
    browser = launch(p)
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT)
    # Without a key every API call is a 401 by design; nothing else may go wrong.
    problems = watch_console(page, allowed=("status of 401",))
    request = page.request

    step("the page loads in Japanese on a phone")
    page.goto(args.url + "/")
    expect(page.locator("html")).to_have_attribute("lang", "ja")
    expect(page.locator(".subtitle")).to_contain_text("たのしい運用ルーム")

    step("without a key the filters answer 401")
    page.click("#runsFilters button[type=submit]")
    expect(page.locator("#errorLine")).to_contain_text("401")

    step("with the key the run appears and completes")
    run_id = submit(request, args.url, FLOW, "dash_ja", key=args.key)
    page.fill("#apiKey", args.key)
    page.click("#saveAuth")
    page.fill("#fTag", "default")
    page.click("#runsFilters button[type=submit]")
    card = run_card(page, run_id)
    expect(card).to_be_visible()
    card.click()
    expect(page.locator("#detailJson")).to_contain_text('"status": "COMPLETED"')
    expect(page.locator('#flowGraph .node[data-state="SUCCEEDED"]')).to_have_count(4)
    expect(page.locator("#errorLine")).to_have_text("")
    for kpi in ["#kpiRunning", "#kpiCompletedToday", "#kpiFailedToday"]:
        expect(page.locator(kpi)).not_to_have_text("-")
    expect(page.locator('#workersList li[data-worker-id="w1"] .worker-state')).to_be_visible()

    step("the phone layout does not scroll sideways")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the page is {width} px wide on a 390 px phone"
    page.screenshot(path=os.path.join(args.shots, "phone-ja.png"), full_page=True)
    page.locator("#detailPanel").screenshot(path=os.path.join(args.shots, "phone-ja-detail.png"))

    assert not problems, "\n".join(problems)
    browser.close()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--mode", choices=["en", "ja"], required=True)
    parser.add_argument("--shots", required=True)
    parser.add_argument("--key")
    parser.add_argument("--wheel")
    args = parser.parse_args()
    os.makedirs(args.shots, exist_ok=True)
    with sync_playwright() as p:
        (english if args.mode == "en" else japanese)(p, args)
    print("ok", flush=True)


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print(f"FAILED: {e}", file=sys.stderr, flush=True)
        sys.exit(1)
