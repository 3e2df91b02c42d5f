"""The dashboard against the real orchestrator, with fake render nodes rendering a live job.

The stand-in tests (test_dashboard.py) pin every widget on canned data; this one proves the
real API feeds them: a running job, its progress moving and a real thumbnail appear.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.fake_node import FakeNode, fake_farm_app, serve_in_thread
from tests.integration import farm_procs
from tests.orch_helpers import fast_settings, orchestrator_in_thread, wait_job, wait_until

pytestmark = pytest.mark.browser

TOKEN = "live-token"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

if CHROMIUM is None:
    pytest.skip(
        "Chromium is not installed (apt-get install chromium): browser tests skipped",
        allow_module_level=True,
    )

from playwright.sync_api import Page, expect, sync_playwright  # noqa: E402


@pytest.fixture
def page() -> Iterator[Page]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        yield page
        browser.close()
        assert not errors, f"JavaScript errors on the page: {errors}"


def test_a_running_job_its_progress_and_a_thumbnail_appear_from_the_real_api(
    page: Page, tmp_path: Path
) -> None:
    nodes = [FakeNode(f"n{i}", slots=1, seconds_per_frame=0.25, token=TOKEN) for i in range(3)]
    with (
        serve_in_thread(fake_farm_app(nodes)) as farm,
        orchestrator_in_thread(
            fast_settings(tmp_path, [f"{farm}/n/{i}" for i in range(3)], token=TOKEN)
        ) as url,
        httpx.Client(
            base_url=url, timeout=10, headers={"Authorization": f"Bearer {TOKEN}"}
        ) as client,
    ):
        wait_until(lambda: len(client.get("/nodes").json()) == 3, what="three nodes")
        job_id = client.post(
            "/render", json={"scene": "demo.blend", "frames": "1-60", "batch_size": 4}
        ).json()["id"]
        wait_job(client, job_id, states=("running",))

        page.goto(f"{url}/?token={TOKEN}")
        row = page.locator(f'#jobs tbody tr[data-key="{job_id}"]')
        expect(row.locator(".badge")).to_have_text("running")
        expect(row).to_contain_text("demo.blend")
        expect(page.locator("#nodes tbody")).to_contain_text(f"{farm}/n/0")

        page.goto(f"{url}/jobs/{job_id}")
        expect(page.locator("#job-state")).to_have_text("running")
        page.wait_for_function(
            "() => [...document.querySelectorAll('#thumbs img')]"
            ".some(img => img.src.startsWith('blob:') && img.naturalWidth > 0)",
            timeout=15_000,
        )
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "dashboard-live-job.png"), full_page=True)
        status = wait_job(client, job_id, timeout=60)
        assert status["state"] == "completed"
        # The page follows the job to its end without a reload.
        expect(page.locator("#job-state")).to_have_text("completed", timeout=10_000)


def test_a_tiled_still_fills_in_region_by_region_then_shows_stitched(
    page: Page, tmp_path: Path
) -> None:
    with farm_procs.farm(tmp_path) as f:
        f.start_orchestrator(token=TOKEN)
        for _ in range(2):
            f.start_node(token=TOKEN, SIZE="160x120", SECONDS="1.5")
        client = f.client()
        client.headers["Authorization"] = f"Bearer {TOKEN}"
        f.wait_nodes(client, 2)
        job_id = farm_procs.submit(client, frames="4", tiles=9)
        page.goto(f"{f.url}/jobs/{job_id}?token={TOKEN}")
        # Some regions in, as images, while others still render or wait.
        page.wait_for_function(
            "() => { const imgs = [...document.querySelectorAll('#tiles .tile img')]"
            ".filter(img => img.src.startsWith('blob:') && img.naturalWidth > 0);"
            " const open = document.querySelectorAll('#tiles .tile:not(.d)').length;"
            " return imgs.length >= 1 && open >= 1; }",
            timeout=30_000,
        )
        expect(page.locator("#tiles-title")).to_contain_text("Frame 4: ")
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "dashboard-tiles-filling.png"), full_page=True)
        assert wait_job(client, job_id, timeout=60)["state"] == "completed"
        expect(page.locator("#tiles-title")).to_have_text("Frame 4: 9 of 9 regions", timeout=10_000)
        page.wait_for_function(
            "() => { const img = document.querySelector('#tiles img.whole');"
            " return img && img.naturalWidth === 160 && img.naturalHeight === 120; }",
            timeout=10_000,
        )
        expect(page.locator("#tiles-readout")).to_have_text("Stitched.")
