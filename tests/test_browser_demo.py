"""What a newcomer sees in the demo, in Debian's chromium: a sample import that succeeds."""

import pytest

from tests.conftest import browser_login

pytestmark = pytest.mark.browser


def test_the_demo_sample_import_succeeds(app, users, live_server, page, tmp_path):
    assert app.test_cli_runner().invoke(args=["demo", "seed", "--invoices", "20"]).exit_code == 0
    browser_login(page, live_server, "sender")
    page.goto(live_server.url + "/import/")
    link = page.locator("a[href$='.zip']")
    with page.expect_download() as download:
        link.click()
    path = tmp_path / download.value.suggested_filename
    download.value.save_as(path)
    page.set_input_files("input[type=file]", str(path))
    page.click("main button[type=submit]")
    results = page.locator("#import-results tr.imported")
    results.first.wait_for()
    assert results.count() == 3
    assert page.locator("#import-results tr.refused").count() == 0
    # The imported invoice opens from its result.
    results.first.locator("a").click()
    page.wait_for_url("**/invoices/*")
    assert "TDD" in page.locator("h1").inner_text()
