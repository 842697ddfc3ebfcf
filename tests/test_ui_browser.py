"""The operator's page in a real browser: headless Chromium (Debian's chromium and chromium-driver) through
selenium, against gunicorn. Each page's screenshot lands in var/test-screens/.

The browser and its driver are given by path, so selenium never tries to download one.
"""

import os
import shutil
import threading
from email.message import EmailMessage
from pathlib import Path

import pytest
from conftest import (
    PYTHON,
    ROOT,
    TEST_REDIS_URL,
    Processes,
    WebhookReceiver,
    answers,
    free_port,
    make_key,
    run_jobs,
    run_webhooks,
    send_ok,
    wait_for,
)
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

pytestmark = pytest.mark.browser
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
SCREENS = Path(ROOT) / "var" / "test-screens"
HOSTILE_HTML = """<h1 id="greeting">Your order has shipped</h1>
<p>Track it <a href="https://example.com/track">here</a>.</p><img src="PIXEL" alt="">
<script>document.title = "script ran"; document.body.setAttribute("data-script-ran", "yes");
try { parent.document.title = "escaped the frame"; } catch (e) {}</script>"""


@pytest.fixture(scope="module")
def server(database, tmp_path_factory):
    """gunicorn serving the app with the page on, and the folder it shows as the development sink's."""
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        pytest.fail("the browser tests need Debian's chromium and chromium-driver (.ci/run installs them)")
    logs, mail = tmp_path_factory.mktemp("web"), tmp_path_factory.mktemp("mail")
    port = free_port()
    processes = Processes({"DATABASE_URL": database, "REDIS_URL": TEST_REDIS_URL, "TEST_LOG_DIR": str(logs),
                           "SECRET_KEY": "browser-test-secret-key-0123456789abcdef", "SESSION_COOKIE_SECURE": "false",
                           "DEV_MAIL_DIR": str(mail), "WEB_CONCURRENCY": "2"})  # fmt: skip
    processes.start(PYTHON, "-m", "gunicorn", "-c", "gunicorn.conf.py", "--bind", f"127.0.0.1:{port}", "wsgi:app",
                    name="web")  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    wait_for(lambda: answers(base + "/healthz"), message="gunicorn to answer")
    yield base, mail
    processes.stop_all()


@pytest.fixture(scope="module")
def screens():
    shutil.rmtree(SCREENS, ignore_errors=True)
    SCREENS.mkdir(parents=True)
    return SCREENS


@pytest.fixture
def browser(server):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # to see CSP reports in the console
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.base = server[0]
    yield driver
    driver.quit()


def visit(driver, path):
    driver.get(driver.base + path)


def sign_in(driver, key, path="/ui/"):
    visit(driver, path)
    driver.find_element(By.NAME, "key").send_keys(key)
    driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    wait_for(lambda: "/ui/sign-in" not in driver.current_url, message="the sign-in to finish")


def texts(driver, css):
    """The text of every element matching `css`, read again when the page was replaced while it was read."""

    def read():
        try:
            return ([element.text for element in driver.find_elements(By.CSS_SELECTOR, css)],)
        except StaleElementReferenceException:
            return None

    return wait_for(read, message=f"the text of {css}")[0]


def text(driver):
    """The text of the page's body, read again while a navigation has left the page without one."""
    return wait_for(lambda: texts(driver, "body"), message="the page's body")[0]


def csp_violations(driver):
    return [entry["message"] for entry in driver.get_log("browser") if "Content Security Policy" in entry["message"]]


@pytest.fixture
def pixel_server():
    """An HTTP server that notes every GET: a tracking pixel's server."""
    pixel = WebhookReceiver()
    pixel.gets = []
    pixel.server.RequestHandlerClass.do_GET = lambda handler: pixel.gets.append(handler.path) or handler.send_error(404)
    thread = threading.Thread(target=pixel.server.serve_forever, daemon=True)
    thread.start()
    yield pixel
    pixel.server.shutdown()
    pixel.server.server_close()


def test_an_operator_reads_the_log_a_message_and_its_preview_and_removes_a_suppression(
    app, client, server, browser, screens, receiver, pixel_server
):
    key = make_key(app)
    auth = {"Authorization": f"Bearer {key}"}
    client.post("/webhooks", json={"url": receiver.url}, headers=auth)
    shipped = send_ok(client, auth, to="Carol <carol@example.com>", subject="Your order has shipped",
                      body="Your order has shipped.\n<b>not bold</b>",
                      html=HOSTILE_HTML.replace("PIXEL", pixel_server.url.replace("/hooks", "/pixel.gif")))  # fmt: skip
    for n in range(3):
        send_ok(client, auth, to=f"dave{n}@example.com", subject=f"Receipt {n}")
    run_jobs(app)
    run_webhooks(app)
    client.post("/suppressions", json={"address": "gone@example.com", "reason": "manual"}, headers=auth)

    visit(browser, "/ui/log?status=SENT")  # signed out: sent to sign in, and back afterwards
    assert "/ui/sign-in?next=" in browser.current_url
    browser.save_screenshot(screens / "sign-in.png")
    sign_in(browser, key, "/ui/log?status=SENT")
    assert browser.current_url.endswith("/ui/log?status=SENT") and "Receipt 2" in text(browser)
    browser.save_screenshot(screens / "log.png")

    field = browser.find_element(By.NAME, "to")
    field.clear()
    field.send_keys("carol@example.com")
    browser.find_element(By.CSS_SELECTOR, ".filters button").click()
    wait_for(lambda: "to=carol" in browser.current_url, message="the filtered log")
    wait_for(lambda: [row for row in texts(browser, "table.log tbody tr") if "Receipt" not in row],
             message="the filtered log's rows")  # fmt: skip
    rows = texts(browser, "table.log tbody tr")
    assert len(rows) == 1 and "Your order has shipped" in rows[0]
    browser.save_screenshot(screens / "log-filtered.png")

    browser.find_element(By.CSS_SELECTOR, "table.log tbody tr").find_element(
        By.LINK_TEXT, "Your order has shipped"
    ).click()
    wait_for(lambda: shipped in browser.current_url, message="the message page")
    page = text(browser)
    assert "carol@example.com" in page and "accepted" in page and "250" in page and "sent" in page
    assert browser.find_element(By.CSS_SELECTOR, "pre.text-body").text.endswith("<b>not bold</b>")  # escaped text
    frame = browser.find_element(By.CSS_SELECTOR, "iframe.preview")
    assert frame.get_attribute("sandbox") == ""  # no allow-scripts, no allow-same-origin
    browser.save_screenshot(screens / "message.png")
    browser.switch_to.frame(frame)
    assert browser.find_element(By.ID, "greeting").text == "Your order has shipped"
    assert browser.find_element(By.TAG_NAME, "body").get_attribute("data-script-ran") is None
    assert browser.title != "script ran"
    browser.switch_to.default_content()
    assert browser.title == "Your order has shipped · emailsvc"  # nor did it reach the page around it
    assert pixel_server.gets == []  # the remote image was not fetched: no one learns the mail was looked at

    browser.find_element(By.LINK_TEXT, "Suppressions").click()
    wait_for(lambda: "gone@example.com" in text(browser), message="the suppression list")
    browser.save_screenshot(screens / "suppressions.png")
    browser.find_element(By.CSS_SELECTOR, "button.danger").click()
    wait_for(lambda: "is no longer suppressed" in text(browser), message="the removal's notice")
    assert client.get("/suppressions", headers=auth).get_json()["items"] == []

    browser.find_element(By.LINK_TEXT, "Webhooks").click()
    wait_for(lambda: receiver.url in text(browser), message="the webhook endpoints")
    assert "succeeded" in text(browser) and ": 200 (" in text(browser)
    browser.save_screenshot(screens / "webhooks.png")
    assert csp_violations(browser) == []  # the page itself needs nothing its policy forbids

    browser.find_element(By.CSS_SELECTOR, ".sign-out button").click()
    wait_for(lambda: "/ui/sign-in" in browser.current_url, message="signing out")
    visit(browser, f"/ui/log/{shipped}")
    assert "/ui/sign-in" in browser.current_url


def test_a_key_of_another_project_sees_none_of_its_mail(app, client, browser, screens):
    email_id = send_ok(client, {"Authorization": f"Bearer {make_key(app)}"}, subject="Private to default")
    sign_in(browser, make_key(app, project="other"))
    assert "Private to default" not in text(browser) and "No messages" in text(browser)
    visit(browser, f"/ui/log/{email_id}")
    assert "No email with this id" in text(browser) and "Private to default" not in browser.page_source
    browser.save_screenshot(screens / "not-found.png")
    visit(browser, f"/ui/log/{email_id}/preview")
    assert "Private to default" not in browser.page_source


def test_a_form_without_the_sessions_token_is_refused(app, client, browser):
    auth = {"Authorization": f"Bearer {make_key(app)}"}
    client.post("/suppressions", json={"address": "kept@example.com"}, headers=auth)
    sign_in(browser, auth["Authorization"][7:], "/ui/suppressions")
    browser.execute_script("""const form = document.createElement("form");
        form.method = "post"; form.action = "/ui/suppressions/remove";
        form.innerHTML = '<input name="address" value="kept@example.com">';
        document.body.append(form); form.submit();""")  # a forged form: everything but the token
    wait_for(lambda: "expired" in text(browser), message="the refusal")
    assert [e["address"] for e in client.get("/suppressions", headers=auth).get_json()["items"]] == ["kept@example.com"]


def test_a_developer_browses_the_sinks_mail_and_an_operator_the_queues(app, client, server, browser, screens):
    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"] = "shop@example.com", "Bob <bob@example.com>", "Welcome, Bob"
    mail.set_content("Welcome aboard.")
    mail.add_alternative("<h1 id='welcome'>Welcome aboard</h1><script>document.title='ran'</script>", subtype="html")
    (server[1] / "20261203T120000-0badc0de.eml").write_bytes(b"X-Envelope-From: shop@example.com\r\n" + bytes(mail))
    send_ok(client, {"Authorization": f"Bearer {make_key(app)}"})  # a job waiting on the queue

    sign_in(browser, make_key(app), "/ui/dev/mail")
    assert "Welcome, Bob" in text(browser)
    browser.save_screenshot(screens / "dev-mail.png")
    browser.find_element(By.LINK_TEXT, "Welcome, Bob").click()
    wait_for(lambda: "0badc0de" in browser.current_url, message="the caught message")
    assert "Welcome aboard." in browser.find_element(By.CSS_SELECTOR, "pre.text-body").text
    browser.save_screenshot(screens / "dev-mail-message.png")
    browser.switch_to.frame(browser.find_element(By.CSS_SELECTOR, "iframe.preview"))
    assert browser.find_element(By.ID, "welcome").text == "Welcome aboard" and browser.title != "ran"
    browser.switch_to.default_content()

    visit(browser, "/ui/queues/")
    assert "only an operator key" in text(browser)
    browser.find_element(By.CSS_SELECTOR, ".sign-out button").click()
    sign_in(browser, make_key(app, scopes=("operator",)))
    assert "/ui/queues/" in browser.current_url
    # rq-dashboard's own scripts fill in the queues: its path's policy lets them run
    wait_for(lambda: "email" in text(browser) and "1" in text(browser), message="rq-dashboard's queue table")
    browser.save_screenshot(screens / "queues.png")
    assert csp_violations(browser) == []
