"""The web UI in a real browser: headless Chromium (Selenium) against a real
``promptory serve`` child process over a git repository made here.

Every page visited is saved as a PNG in the folder named by ``PROMPTORY_UI_SCREENSHOTS``
(default: a temporary folder of the test run), for a reviewer to look at. Skipped, saying
why, when Chromium or its driver is not installed (``apt-get install chromium
chromium-driver``).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

import promptory
from promptory import PromptClient
from promptory.exceptions import AuthenticationError
from support.gitrepo import PromptRepo
from support.servers import copy_examples

selenium = pytest.importorskip("selenium", reason="selenium is not installed (dev extra)")

from selenium import webdriver  # noqa: E402
from selenium.common.exceptions import WebDriverException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.support.ui import Select  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="headless Chromium is not installed: apt-get install chromium chromium-driver",
)

SRC = str(Path(promptory.__file__).resolve().parents[1])
GREETING = "/ui/apps/myorg/myapp/greeting/production"
WAIT = 20.0  # seconds any page may take to show what is waited for


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROMPTORY_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [SRC, env.get("PYTHONPATH")]))
    env["HOME"] = str(home)
    return env


def _promptory(home: Path, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "promptory", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=_env(home),
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Served:
    """The `promptory serve` child and what the tests need to know about it."""

    def __init__(self, url: str, repo: PromptRepo, admin_key: str, shots: Path) -> None:
        self.url = url
        self.repo = repo
        self.admin_key = admin_key
        self.shots = shots


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("browser")
    repo = PromptRepo(root / "prompts")
    copy_examples(repo)
    repo.write_prompt(
        "myorg",
        "myapp",
        "broken_math",
        "Line one\nLine two {{ name }}\n{{ 10 // divisor }}\n",
        description="Fails to render when divisor is 0",
        tags=["demo"],
    )
    repo.commit("Example prompts")
    path = "myorg/myapp/greeting.md"
    text = (repo.path / path).read_text()
    repo.write(path, text.replace("2.0.0", "2.1.0").replace("welcome back", "good to see you"))
    repo.commit("Greeting 2.1.0: warmer words")
    keys_file = root / "keys.json"
    admin_key = _promptory(root, "keys", "create", "--admin", "--keys-file", str(keys_file))
    port = _free_port()
    log = (root / "serve.log").open("w")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "promptory",
            "serve",
            str(repo.path),
            "--port",
            str(port),
            "--keys-file",
            str(keys_file),
            "--poll-interval",
            "0.1",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=_env(root),
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    try:
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None, (root / "serve.log").read_text()
            assert time.monotonic() < deadline, "promptory serve did not start in 30 s"
            time.sleep(0.05)
        shots = Path(os.environ.get("PROMPTORY_UI_SCREENSHOTS") or root / "screenshots")
        shots.mkdir(parents=True, exist_ok=True)
        yield Served(url, repo, admin_key, shots)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        log.close()


def _driver(profile: Path, *, javascript: bool = True) -> WebDriver:
    options = webdriver.ChromeOptions()
    assert CHROMIUM is not None and CHROMEDRIVER is not None
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
        "--window-size=1280,900",
    ):
        options.add_argument(flag)
    if not javascript:
        options.add_experimental_option(
            "prefs", {"profile.managed_default_content_settings.javascript": 2}
        )
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(WAIT)
    return driver


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    try:
        driver = _driver(tmp_path / "profile")
    except WebDriverException as exc:  # pragma: no cover - a broken install
        pytest.fail(f"Chromium did not start: {exc.msg}")
    try:
        yield driver
    finally:
        driver.quit()


def _until(check: Callable[[], object], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not check():
        assert time.monotonic() < deadline, f"waited {WAIT:g} s for {what}"
        time.sleep(0.05)


def shot(driver: WebDriver, served: Served, name: str) -> None:
    """Save the page as <name>.png, whole height."""
    height = driver.execute_script("return document.documentElement.scrollHeight")
    width = driver.get_window_size()["width"]
    driver.set_window_size(width, min(max(900, int(height) + 150), 6000))
    driver.save_screenshot(str(served.shots / f"{name}.png"))


def sign_in(driver: WebDriver, served: Served, key: str, start: str = "/ui/apps") -> None:
    driver.get(served.url + start)
    _until(lambda: "/ui/login" in driver.current_url, "the sign-in page")
    field = driver.find_element(By.NAME, "api_key")
    field.send_keys(key)
    field.submit()
    _until(lambda: "/ui/login" not in driver.current_url, "signing in")


def click(driver: WebDriver, by: str, what: str) -> None:
    """Scroll an element to the middle of the window, then click it as a user would."""
    element = driver.find_element(by, what)
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)
    element.click()


def main_text(driver: WebDriver) -> str:
    return str(driver.find_element(By.TAG_NAME, "main").text)


# --- the tests ---------------------------------------------------------------------------------


def test_sign_in_and_browse(browser: WebDriver, served: Served) -> None:
    browser.get(served.url + "/ui/apps")
    _until(lambda: "/ui/login" in browser.current_url, "the sign-in page")
    assert browser.find_element(By.CSS_SELECTOR, "label[for=api_key]").text == "API key"
    shot(browser, served, "01-sign-in")
    sign_in(browser, served, served.admin_key)
    assert browser.current_url.endswith("/ui/apps")
    assert "myapp" in main_text(browser)
    shot(browser, served, "02-apps")
    click(browser, By.LINK_TEXT, "myapp")
    _until(lambda: browser.current_url.endswith("/ui/apps/myorg/myapp"), "the app page")
    rows = browser.find_elements(By.CSS_SELECTOR, "table.prompts tbody tr")
    assert len(rows) == 6
    shot(browser, served, "03-prompts")


def test_filter_prompts(browser: WebDriver, served: Served) -> None:
    sign_in(browser, served, served.admin_key, "/ui/apps/myorg/myapp")
    Select(browser.find_element(By.ID, "environment")).select_by_visible_text("development")
    click(browser, By.CSS_SELECTOR, ".filters button")
    _until(lambda: "environment=development" in browser.current_url, "the filter")
    names = [a.text for a in browser.find_elements(By.CSS_SELECTOR, "table.prompts tbody a")]
    assert set(names) == {"greeting", "broken_math"}
    search = browser.find_element(By.ID, "q")
    search.clear()
    search.send_keys("divisor", Keys.ENTER)
    _until(lambda: "q=divisor" in browser.current_url, "the search")
    names = [a.text for a in browser.find_elements(By.CSS_SELECTOR, "table.prompts tbody a")]
    assert names == ["broken_math"]
    assert "1 of" in browser.find_element(By.ID, "count").text
    shot(browser, served, "04-prompts-filtered")


def test_open_a_prompt_its_history_and_a_diff(browser: WebDriver, served: Served) -> None:
    sign_in(browser, served, served.admin_key, "/ui/apps/myorg/myapp?environment=production")
    click(browser, By.LINK_TEXT, "greeting")
    _until(lambda: browser.current_url.endswith(GREETING), "the prompt page")
    text = main_text(browser)
    assert "2.1.0" in text and "ETag" in text and "user_name" in text
    assert browser.find_elements(By.CSS_SELECTOR, "pre.code .jt")  # Jinja tags marked
    shot(browser, served, "05-prompt")
    click(browser, By.LINK_TEXT, "History")
    _until(lambda: browser.current_url.endswith("/history"), "the history page")
    assert "Greeting 2.1.0: warmer words" in main_text(browser)
    shot(browser, served, "06-history")
    click(browser, By.ID, "from-2")
    click(browser, By.ID, "to-1")
    click(browser, By.CSS_SELECTOR, "fieldset button")
    _until(lambda: "/diff?" in browser.current_url, "the diff page")
    added = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "pre.diff .add")]
    removed = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "pre.diff .del")]
    assert "+version: 2.1.0" in added and "-version: 2.0.0" in removed
    assert any("good to see you" in line for line in added)
    shot(browser, served, "07-diff")


def test_preview_with_variables_and_a_render_error(browser: WebDriver, served: Served) -> None:
    sign_in(browser, served, served.admin_key, "/ui/apps/myorg/myapp/coach_checkin/production")
    click(browser, By.LINK_TEXT, "Preview")
    _until(lambda: browser.current_url.endswith("/preview"), "the preview page")
    box = browser.find_element(By.ID, "variables")
    box.clear()
    box.send_keys('{"user_name": "Ada", "goal": "a 10 minute walk"}')
    box.send_keys(Keys.CONTROL, Keys.ENTER)  # the script's shortcut submits the form
    _until(lambda: browser.find_elements(By.ID, "rendered"), "the rendered text")
    rendered = browser.find_element(By.ID, "rendered").text
    assert "Ada" in rendered and "a 10 minute walk" in rendered
    shot(browser, served, "08-preview")
    browser.get(served.url + "/ui/apps/myorg/myapp/broken_math/development/preview")
    box = browser.find_element(By.ID, "variables")
    box.clear()
    box.send_keys('{"name": "x", "divisor": 0}')
    click(browser, By.CSS_SELECTOR, "#preview button")
    _until(lambda: browser.find_elements(By.ID, "render-error"), "the render error")
    assert "line 3" in browser.find_element(By.ID, "render-error").text
    assert browser.find_element(By.CSS_SELECTOR, "pre.code .l.bad").get_attribute("id") == "L3"
    shot(browser, served, "09-render-error")


def test_mint_a_key_use_it_then_revoke_it(browser: WebDriver, served: Served) -> None:
    sign_in(browser, served, served.admin_key, "/ui/keys")
    scope = browser.find_element(By.ID, "scope")
    scope.clear()
    scope.send_keys("myorg/myapp")
    browser.find_element(By.ID, "label").send_keys("browser test")
    click(browser, By.XPATH, "//button[text()='Create key']")
    _until(lambda: browser.find_elements(By.ID, "secret"), "the new key")
    key = browser.find_element(By.ID, "secret").get_attribute("value")
    assert key is not None and key.startswith("pm_live_")
    shot(browser, served, "10-key-created")
    with PromptClient(served.url, key, cache_ttl=0) as client:
        assert client.get_by_name("myorg", "myapp", "greeting").version == "2.1.0"
        key_id = browser.find_element(By.CSS_SELECTOR, ".secret h2").text.split()[-1]
        click(browser, By.CSS_SELECTOR, f"button[aria-label='Revoke key {key_id}']")
        _until(lambda: "revoked=" in browser.current_url, "the revocation")
        assert f"Key {key_id} is revoked" in main_text(browser)
        shot(browser, served, "11-key-revoked")
        with pytest.raises(AuthenticationError):
            client.get_by_name("myorg", "myapp", "greeting")


def test_sign_out_and_be_refused_without_a_session_or_with_a_stale_token(
    browser: WebDriver, served: Served
) -> None:
    sign_in(browser, served, served.admin_key, "/ui/keys")
    stale_tab = browser.current_window_handle
    browser.switch_to.new_window("tab")
    browser.get(served.url + "/ui/apps")
    click(browser, By.XPATH, "//button[text()='Sign out']")
    _until(lambda: "/ui/login" in browser.current_url, "signing out")
    browser.get(served.url + "/ui/status")
    _until(lambda: "/ui/login" in browser.current_url, "the refusal without a session")
    shot(browser, served, "12-signed-out")
    sign_in(browser, served, served.admin_key)
    browser.switch_to.window(stale_tab)  # its forms carry the ended session's token
    browser.find_element(By.ID, "label").send_keys("stale")
    click(browser, By.XPATH, "//button[text()='Create key']")
    _until(lambda: "Stale form" in browser.page_source, "the stale-token refusal")
    assert "out of date" in main_text(browser)
    shot(browser, served, "13-stale-token")


def test_keyboard_reaches_the_content_and_the_navigation(
    browser: WebDriver, served: Served
) -> None:
    sign_in(browser, served, served.admin_key)
    body = browser.find_element(By.TAG_NAME, "body")
    body.send_keys(Keys.TAB)
    active = browser.switch_to.active_element
    assert active.text == "Skip to content"
    active.send_keys(Keys.TAB)
    assert browser.switch_to.active_element.text == "Apps"
    browser.get(served.url + "/ui/apps/myorg/myapp")
    browser.find_element(By.TAG_NAME, "body").send_keys("/")  # the script focuses search
    assert browser.switch_to.active_element.get_attribute("id") == "q"


def test_reading_pages_fit_a_phone_and_work_without_javascript(
    served: Served, tmp_path: Path
) -> None:
    driver = _driver(tmp_path / "nojs", javascript=False)
    try:
        driver.set_window_size(390, 844)
        sign_in(driver, served, served.admin_key, "/ui/apps/myorg/myapp")
        for path, name in (
            ("/ui/apps/myorg/myapp", "14-phone-prompts"),
            (GREETING, "15-phone-prompt"),
            (GREETING + "/history", "16-phone-history"),
        ):
            driver.get(served.url + path)
            assert driver.find_element(By.TAG_NAME, "main").text
            overflow = driver.execute_script(
                "return document.documentElement.scrollWidth - window.innerWidth"
            )
            assert overflow is None or int(overflow) <= 1, (path, overflow)
            shot(driver, served, name)
        driver.get(served.url + GREETING + "/history")
        click(driver, By.CSS_SELECTOR, "fieldset button")  # a plain GET form
        _until(lambda: "/diff?" in driver.current_url, "the diff without JavaScript")
        assert driver.find_elements(By.CSS_SELECTOR, "pre.diff .add")
    finally:
        driver.quit()
