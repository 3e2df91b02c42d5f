"""The dashboard in a real headless Chromium, against a stand-in orchestrator on loopback.

Needs Debian's `chromium` (apt-get install chromium); Playwright drives it through
`executable_path`, since browsers can't be downloaded here. Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from orchestrator.video import encode_video, ffmpeg_available, frame_file
from tests.browser.standin import FakeFarm, Job, create_app, frame_png, serve

pytestmark = pytest.mark.browser

TOKEN = "s3cret-token"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
RUNNING = "j-shot010"

if CHROMIUM is None:
    pytest.skip(
        "Chromium is not installed (apt-get install chromium): browser tests skipped",
        allow_module_level=True,
    )

from playwright.sync_api import Browser, Page, expect, sync_playwright  # noqa: E402


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        # --no-sandbox: tests often run as root in containers, where Chromium's sandbox can't.
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path | None:
    if not ffmpeg_available():
        return None
    folder = tmp_path_factory.mktemp("video")
    for n in range(1, 49):
        frame_file(folder, n).write_bytes(frame_png(n))
    # Playwright's sync API keeps an event loop on this thread: encode on another one.
    with ThreadPoolExecutor(1) as pool:
        encode = encode_video(folder, list(range(1, 49)), folder / "video.mp4")
        return pool.submit(asyncio.run, encode).result()


@pytest.fixture
def farm(video: Path | None) -> FakeFarm:
    return FakeFarm(video=video)


@pytest.fixture
def base_url(farm: FakeFarm) -> Iterator[str]:
    with serve(create_app(farm, token=TOKEN)) as url:
        yield url


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


def job_row(page: Page, job_id: str):  # type: ignore[no-untyped-def]
    return page.locator(f'#jobs tbody tr[data-key="{job_id}"]')


def test_overview_shows_the_running_job_its_progress_and_the_nodes(
    page: Page, base_url: str, farm: FakeFarm
) -> None:
    page.goto(f"{base_url}/?token={TOKEN}")
    row = job_row(page, RUNNING)
    expect(row).to_contain_text("shot_010_lighting.blend")
    expect(row.locator(".badge")).to_have_text("running")
    counts = farm.jobs[RUNNING].counts()
    pct = f"{round(100 * counts['done'] / counts['total'])}%"
    expect(row.locator(".pct")).to_have_text(pct)
    expect(row).to_contain_text(f"{counts['done']} / {counts['total']}")
    expect(row).to_contain_text(f"{counts['failed']} failed")
    width = row.locator(".progress .seg-d").evaluate("e => e.getBoundingClientRect().width")
    assert width > 0
    expect(row.locator("button", has_text="Cancel")).to_be_visible()
    expect(job_row(page, "j-turntable").locator(".badge")).to_have_text("completed")
    nodes = page.locator("#nodes tbody")
    expect(nodes).to_contain_text("render-01")
    expect(nodes.locator("tr", has_text="render-03").locator(".badge")).to_have_text("lost")
    expect(nodes).to_contain_text("97-104")
    expect(page.locator("#sum-nodes")).to_have_text("2 / 3")
    # render-02's Blender runs without a sandbox: said, in the warning colour.
    open_cell = nodes.locator("tr", has_text="render-02").locator("td.warn")
    expect(open_cell.locator(".name")).to_have_text("4.2.3 · no sandbox")
    expect(nodes.locator("tr", has_text="render-01").locator("td.warn")).to_have_count(0)
    # Each node's engine and its slots' devices (render-01: bpy on two slots of one GPU).
    engine_cell = nodes.locator("tr", has_text="render-01").locator("td").nth(5)
    expect(engine_cell.locator(".name")).to_have_text("4.2.3 (bpy)")
    expect(engine_cell.locator(".sub")).to_have_text("OPTIX: RTX 4090 · tags: gpu, highmem")
    expect(nodes.locator("tr", has_text="render-02").locator("td").nth(5)).to_contain_text("CPU")
    expect(page.locator("#live")).to_have_attribute("data-state", "live")
    # The token left the address bar (history, screenshots, shoulder-surfers).
    assert "token" not in page.url
    shot(page, "dashboard-overview.png")
    page.set_viewport_size({"width": 820, "height": 1000})
    page.goto(f"{base_url}/jobs/{RUNNING}")  # the token stays in this tab's sessionStorage
    expect(page.locator("#job-state")).to_have_text("running")
    page.wait_for_function("() => document.querySelectorAll('#thumbs img[src^=\"blob:\"]').length")
    shot(page, "dashboard-job-narrow.png")


def test_job_page_shows_grid_thumbnails_timeline_and_failed_frames(
    page: Page, base_url: str, farm: FakeFarm
) -> None:
    page.goto(f"{base_url}/jobs/{RUNNING}?token={TOKEN}")
    expect(page.locator("#job-scene")).to_have_text("shot_010_lighting.blend")
    expect(page.locator("#job-state")).to_have_text("running")
    counts = farm.jobs[RUNNING].counts()
    legend = page.locator("#grid-legend")
    expect(legend.locator('[data-count="d"]')).to_have_text(str(counts["done"]))
    expect(legend.locator('[data-count="f"]')).to_have_text(str(counts["failed"]))
    # Real thumbnails: fetched with the token as blobs and decoded.
    page.wait_for_function(
        "() => [...document.querySelectorAll('#thumbs img')]"
        ".some(i => i.src.startsWith('blob:') && i.complete && i.naturalWidth > 0)"
    )
    assert page.locator("#thumbs figure").count() == 8
    page.wait_for_function(
        "() => [...document.querySelectorAll('#thumbs img')]"
        ".every(i => i.src.startsWith('blob:') && i.complete && i.naturalWidth > 0)"
    )
    # The grid's first cell is frame 1, done: green.
    pixel = page.evaluate(
        "() => Array.from(document.getElementById('grid').getContext('2d')"
        ".getImageData(3, 3, 1, 1).data.slice(0, 3))"
    )
    assert pixel == [0x3F, 0xB9, 0x50]
    # Failed frames with Blender's words, markup and all, as text.
    failed = page.locator("#failed tbody")
    expect(failed).to_contain_text("CUDA error: out of memory")
    expect(failed).to_contain_text("'/textures/<missing> tree_bark.exr'")
    expect(failed).to_contain_text("failed on render-01, render-02")
    expect(page.locator("#job-mixed")).to_be_hidden()
    expect(page.locator("#timeline")).to_be_visible()
    shot(page, "dashboard-job.png")

    # The canvas maps the pointer back to frames: hover frame 37 (failed), click frame 1 (done).
    grid = page.locator("#grid")
    cols = int(grid.get_attribute("data-cols") or 0)
    cell = float(grid.get_attribute("data-cell") or 0)
    assert cols > 37
    grid.hover(position={"x": 36 * cell + cell / 2, "y": cell / 2})
    expect(page.locator("#grid-readout")).to_have_text("Frame 37 · failed")
    grid.click(position={"x": cell / 2, "y": cell / 2})
    expect(page.locator("#viewer-title")).to_have_text("Frame 1")
    page.keyboard.press("ArrowRight")
    expect(page.locator("#viewer-title")).to_have_text("Frame 2")
    page.locator("#viewer-close").click()
    expect(page.locator("#viewer")).to_be_hidden()

    page.locator("#thumbs figure button").first.click()
    viewer = page.locator("#viewer")
    expect(viewer).to_be_visible()
    page.wait_for_function(
        "() => { const i = document.querySelector('#viewer-body img');"
        " return i && i.complete && i.naturalWidth === 320; }"
    )
    shot(page, "dashboard-frame-viewer.png")


def test_progress_updates_live_without_a_reload(page: Page, base_url: str, farm: FakeFarm) -> None:
    page.goto(f"{base_url}/?token={TOKEN}")
    pct = job_row(page, RUNNING).locator(".pct")

    def shown() -> str:
        counts = farm.jobs[RUNNING].counts()
        return f"{round(100 * counts['done'] / counts['total'])}%"

    expect(pct).to_have_text(shown())
    page.evaluate("() => { window.sameDocument = true; }")
    before = shown()
    farm.finish_frames(RUNNING, 60)
    assert shown() != before
    expect(pct).to_have_text(shown(), timeout=8000)
    assert page.evaluate("() => window.sameDocument") is True


def test_without_a_token_the_page_asks_for_it(page: Page, base_url: str) -> None:
    page.goto(base_url)
    form = page.locator("#token-form")
    expect(form).to_be_visible()
    expect(page.locator("#live")).to_have_text("waiting for the token")
    shot(page, "dashboard-token-prompt.png")
    page.fill("#token-input", "wrong")
    page.click("#token-form button")
    expect(page.locator("#token-label")).to_contain_text("refused", timeout=8000)
    page.fill("#token-input", TOKEN)
    page.click("#token-form button")
    expect(job_row(page, RUNNING)).to_be_visible()
    expect(form).to_be_hidden()


def test_user_controlled_text_is_shown_as_text(page: Page, base_url: str, farm: FakeFarm) -> None:
    evil = '<img src=x onerror="window.pwned=1">.blend'
    job = Job(
        id="j-evil",
        scene=evil,
        frames=[1, 2],
        states=["done", "failed"],
        state="running",
        created=time.time() - 30,
        started=time.time() - 20,
    )
    job.errors[2] = "<script>window.pwned=2</script> Error: boom"
    farm.add_job(job)
    page.goto(f"{base_url}/?token={TOKEN}")
    expect(job_row(page, "j-evil")).to_contain_text(evil)
    page.goto(f"{base_url}/jobs/j-evil")
    expect(page.locator("#job-scene")).to_have_text(evil)
    expect(page.locator("#failed tbody")).to_contain_text("<script>window.pwned=2</script>")
    assert page.evaluate("() => window.pwned") is None


def test_cancel_button_cancels_the_job(page: Page, base_url: str, farm: FakeFarm) -> None:
    page.goto(f"{base_url}/?token={TOKEN}")
    page.on("dialog", lambda dialog: dialog.accept())
    job_row(page, RUNNING).locator("button", has_text="Cancel").click()
    expect(job_row(page, RUNNING).locator(".badge")).to_have_text("cancelled")
    assert farm.jobs[RUNNING].state == "cancelled"
    expect(job_row(page, RUNNING).locator("button", has_text="Cancel")).to_be_hidden()


def test_jobs_are_filtered_searched_and_acted_on_together(
    page: Page, base_url: str, farm: FakeFarm
) -> None:
    page.goto(f"{base_url}/?token={TOKEN}")
    expect(job_row(page, "j-forest")).to_be_visible()
    page.select_option("#jobs-state", "completed")
    expect(job_row(page, "j-turntable")).to_be_visible()
    expect(job_row(page, RUNNING)).to_have_count(0)
    page.select_option("#jobs-state", "")
    page.fill("#jobs-search", "FOREST")  # the scene's name, whatever the case
    expect(job_row(page, "j-forest")).to_be_visible()
    expect(job_row(page, "j-turntable")).to_have_count(0)
    page.fill("#jobs-search", "nothing-like-it")
    expect(page.locator("#jobs-none-match")).to_be_visible()
    page.fill("#jobs-search", "")

    expect(page.locator("#jobs-bulk")).to_be_hidden()
    job_row(page, "j-turntable").locator("input.pick").check()
    job_row(page, RUNNING).locator("input.pick").check()
    expect(page.locator("#jobs-selected")).to_have_text("2 selected")
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.accept()))
    page.locator("#bulk-delete").click()  # the running one is left alone
    expect(job_row(page, "j-turntable")).to_have_count(0)
    assert farm.deleted == ["j-turntable"]
    assert dialogs[0] == "Delete 1 job and its frames from the farm for good?"
    expect(page.locator("#jobs-selected")).to_have_text("1 selected")
    page.locator("#bulk-cancel").click()
    expect(job_row(page, RUNNING).locator(".badge")).to_have_text("cancelled")
    page.locator("#bulk-requeue").click()
    expect(job_row(page, RUNNING).locator(".badge")).to_have_text("queued")
    assert farm.jobs[RUNNING].requeues[0]["failed"] is True


def test_a_node_is_drained_paused_and_resumed_from_the_overview(
    page: Page, base_url: str, farm: FakeFarm
) -> None:
    page.goto(f"{base_url}/?token={TOKEN}")
    row = page.locator("#nodes tbody tr", has_text="render-01")
    expect(row.locator("button", has_text="Resume")).to_be_hidden()
    row.locator("button", has_text="Drain").click()
    expect(row.locator(".badge")).to_have_text("draining")
    expect(row.locator("button", has_text="Drain")).to_be_hidden()
    row.locator("button", has_text="Resume").click()
    expect(row.locator(".badge")).to_have_text("healthy")
    row.locator("button", has_text="Pause").click()
    expect(row.locator(".badge")).to_have_text("paused")
    url = next(n["url"] for n in farm.nodes if n["name"] == "render-01")
    assert farm.node_actions == [("drain", url), ("resume", url), ("pause", url)]
    lost = page.locator("#nodes tbody tr", has_text="render-03")
    expect(lost.locator("button", has_text="Pause")).to_be_hidden()  # nothing to stop


def test_node_tags_show_and_a_job_no_node_can_take_says_why(
    page: Page, base_url: str, farm: FakeFarm
) -> None:
    page.goto(f"{base_url}/?token={TOKEN}")
    row = page.locator("#nodes tbody tr", has_text="render-01")
    expect(row.locator("td").nth(5)).to_contain_text("tags: gpu, highmem")
    page.goto(f"{base_url}/jobs/{RUNNING}")
    expect(page.locator("#job-scene")).not_to_have_text("Job " + RUNNING)  # loaded
    expect(page.locator("#job-waiting")).to_be_hidden()
    farm.jobs[RUNNING].waiting = "waiting for a node with the tags <b>gpu</b>: no live node"
    expect(page.locator("#job-waiting")).to_have_text(
        "waiting for a node with the tags <b>gpu</b>: no live node"  # as text, not markup
    )


def test_a_finished_job_is_requeued_from_its_page(
    page: Page, base_url: str, farm: FakeFarm
) -> None:
    page.goto(f"{base_url}/jobs/{RUNNING}?token={TOKEN}")
    expect(page.locator("#job-cancel")).to_be_visible()
    expect(page.locator("#job-requeue")).to_be_hidden()  # a running job renders on
    farm.jobs[RUNNING].state = "cancelled"
    page.reload()
    answers = iter(["2-3", ""])
    page.on("dialog", lambda dialog: dialog.accept(next(answers)))
    page.locator("#job-requeue").click()
    expect(page.locator("#job-requeues")).to_contain_text("Requeued once;")
    expect(page.locator("#job-requeues")).to_contain_text("frames 2-3 (2)")
    assert [r["frames"] for r in farm.jobs[RUNNING].requeues] == ["2-3"]
    expect(page.locator("#job-state")).to_have_text("queued")
    farm.jobs[RUNNING].state = "failed"
    expect(page.locator("#job-requeue")).to_be_visible()
    page.locator("#job-requeue").click()  # empty: every frame not done
    expect(page.locator("#job-requeues")).to_contain_text("Requeued 2 times;")
    assert "failed" in farm.jobs[RUNNING].requeues[1]


def test_a_100000_frame_job_draws_its_grid(page: Page, base_url: str, farm: FakeFarm) -> None:
    n = 100_000
    states = ["done"] * 41_234 + ["rendering"] * 16 + ["pending"] * (n - 41_250)
    states[777] = "failed"
    farm.add_job(
        Job(
            id="j-huge",
            scene="crowd_sim.blend",
            frames=list(range(1, n + 1)),
            states=states,
            state="running",
            created=time.time() - 4000,
            started=time.time() - 3600,
        )
    )
    page.goto(f"{base_url}/jobs/j-huge?token={TOKEN}")
    expect(page.locator('#grid-legend [data-count="d"]')).to_have_text("41,233")
    page.wait_for_function(
        "() => [...document.querySelectorAll('#thumbs img')]"
        ".every(i => i.src.startsWith('blob:') && i.complete && i.naturalWidth > 0)",
        timeout=20000,
    )
    size = page.evaluate(
        "() => { const r = document.getElementById('grid').getBoundingClientRect();"
        " return [r.width, r.height]; }"
    )
    assert size[0] > 600 and 100 < size[1] <= 400
    shot(page, "dashboard-job-100k.png")


def test_preview_video_plays_from_the_job_page(
    page: Page, base_url: str, video: Path | None
) -> None:
    if video is None:
        pytest.skip("ffmpeg is not installed: no preview video to play")
    page.goto(f"{base_url}/jobs/j-turntable?token={TOKEN}")
    button = page.locator("#job-video")
    expect(button).to_be_visible()
    button.click()
    page.wait_for_function(
        "() => { const v = document.querySelector('#viewer-body video');"
        " return v && v.src.startsWith('blob:') && v.readyState >= 1 && v.videoWidth === 320; }",
        timeout=15000,
    )
    shot(page, "dashboard-video.png")


def test_job_page_works_without_the_framemap_endpoint(page: Page, farm: FakeFarm) -> None:
    with serve(create_app(farm, token=TOKEN, with_framemap=False)) as url:
        page.goto(f"{url}/jobs/{RUNNING}?token={TOKEN}")
        counts = farm.jobs[RUNNING].counts()
        expect(page.locator('#grid-legend [data-count="d"]')).to_have_text(str(counts["done"]))
        page.wait_for_function(
            "() => [...document.querySelectorAll('#thumbs img')]"
            ".some(i => i.src.startsWith('blob:') && i.naturalWidth > 0)"
        )


def test_an_empty_farm_says_how_to_start(page: Page) -> None:
    farm = FakeFarm()
    farm.jobs.clear()
    farm.nodes.clear()
    with serve(create_app(farm)) as url:
        page.goto(url)
        expect(page.locator("#jobs-empty")).to_be_visible()
        expect(page.locator("#nodes-empty")).to_be_visible()
        expect(page.locator("#token-form")).to_be_hidden()
        shot(page, "dashboard-empty.png")


def test_a_vanished_orchestrator_shows_offline_and_keeps_the_last_data(page: Page) -> None:
    farm = FakeFarm()
    with serve(create_app(farm)) as url:
        page.goto(url)
        expect(job_row(page, RUNNING)).to_be_visible()
    expect(page.locator("#live")).to_have_text(
        "offline: cannot reach the orchestrator (retrying)", timeout=20000
    )
    expect(job_row(page, RUNNING)).to_be_visible()


@pytest.fixture(scope="module")
def helpers_page(browser: Browser) -> Iterator[Page]:
    """One page for the table of pure-function cases; the modules load from the stand-in."""
    with serve(create_app(FakeFarm())) as url:
        context = browser.new_context()
        page = context.new_page()
        page.goto(f"{url}/static/style.css")  # same origin, and no CSP to forbid `new Function`
        yield page
        context.close()


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ('farm.parseSpec("1-8")', [1, 2, 3, 4, 5, 6, 7, 8]),
        ('farm.parseSpec("1-10x3")', [1, 4, 7, 10]),
        ('farm.parseSpec("1,3,7")', [1, 3, 7]),
        ('farm.parseSpec("1-3,20-24x2")', [1, 2, 3, 20, 22, 24]),
        ('farm.parseSpec("nonsense")', []),
        ("farm.duration(42)", "42 s"),
        ("farm.duration(125)", "2 min 05 s"),
        ("farm.duration(3 * 3600 + 60 * 7)", "3 h 07 min"),
        ("farm.duration(undefined)", "\u2013"),  # an en dash: "no value"
        ("farm.timecode(75)", "1:15"),
        ("farm.timecode(3725)", "1:02:05"),
        ("farm.listOf([1], 'jobs')", [1]),
        ("farm.listOf({jobs: [2]}, 'jobs')", [2]),
        ("farm.listOf(null, 'jobs')", []),
        ("farm.progressOf({frames: {total: 4, done: 1}})", 0.25),
        ("farm.progressOf({progress: 1.5})", 1),
        ('new canvas.FrameMap({first: 5, states: "dp"}).frameAt(1)', 6),
        ('new canvas.FrameMap({first: 1, step: 2, states: "ddd"}).indexOf(5)', 2),
        ('new canvas.FrameMap({first: 1, step: 2, states: "ddd"}).indexOf(4)', -1),
        ('new canvas.FrameMap({first: 9, frames: [9, 2], states: "df"}).stateOf(2)', "f"),
        (
            'new canvas.FrameMap({first: 1, states: "ddrpf"}).counts()',
            {"p": 1, "r": 1, "d": 2, "f": 1, "c": 0},
        ),
    ],
)
def test_dashboard_helpers(helpers_page: Page, expression: str, expected: object) -> None:
    result = helpers_page.evaluate(
        "async (expr) => {"
        " const farm = await import('/static/farm.js');"
        " const canvas = await import('/static/canvas.js');"
        " return new Function('farm', 'canvas', `return (${expr});`)(farm, canvas); }",
        expression,
    )
    assert result == expected


def test_a_job_rendered_by_mixed_blender_versions_says_so(
    page: Page, base_url: str, farm: FakeFarm
) -> None:
    farm.jobs[RUNNING].blender_versions = ["3.6.5", "4.2.3"]
    page.goto(f"{base_url}/jobs/{RUNNING}?token={TOKEN}")
    expect(page.locator("#job-mixed")).to_have_text(
        "Nodes with different Blender versions rendered this job (3.6.5, 4.2.3): frames may differ."
        " To render with one, submit with blender_version (farm render --blender-version)."
    )


def test_a_job_split_by_samples_shows_its_parts(page: Page, base_url: str, farm: FakeFarm) -> None:
    page.goto(f"{base_url}/jobs/{RUNNING}?token={TOKEN}")
    expect(page.locator("#job-scene")).not_to_have_text("Job " + RUNNING)  # loaded
    expect(page.locator("#job-split-row")).to_be_hidden()  # whole frames
    farm.jobs[RUNNING].samples = {
        "per_frame": 4, "samples": 1024, "total": 8, "done": 3, "failed": 0, "rendering": 2,
    }  # fmt: skip
    page.reload()
    expect(page.locator("#job-split")).to_have_text("4 parts of 1,024 samples: 3 of 8 in")
    expect(page.locator("#tiles-panel")).to_be_hidden()


@pytest.mark.parametrize(
    ("role", "writes", "admin_only"), [("view", False, False), ("submit", True, False)]
)
def test_the_page_says_whose_token_it_uses_and_offers_only_what_it_may_do(
    page: Page, base_url: str, farm: FakeFarm, role: str, writes: bool, admin_only: bool
) -> None:
    farm.tokens["vi-token"] = ("vi", role)
    page.goto(f"{base_url}/?token=vi-token")
    expect(page.locator("#whoami")).to_have_text(f"vi · {role}")
    cancel = page.locator("#jobs tbody button", has_text="Cancel").first
    expect(cancel).to_be_attached()
    expect(cancel).to_be_visible() if writes else expect(cancel).to_be_hidden()
    drain = page.locator("button", has_text="Drain").first
    expect(drain).to_be_attached()
    expect(drain).to_be_hidden()
    page.goto(f"{base_url}/jobs/{RUNNING}")
    expect(page.locator("#whoami")).to_have_text(f"vi · {role}")
    expect(page.locator("#job-cancel")).to_be_visible() if writes else expect(
        page.locator("#job-cancel")
    ).to_be_hidden()


def test_an_admin_token_sees_every_control(page: Page, base_url: str) -> None:
    page.goto(f"{base_url}/?token={TOKEN}")
    expect(page.locator("#whoami")).to_have_text("admin · admin")
    expect(page.locator("button", has_text="Drain").first).to_be_visible()


def test_a_video_job_links_to_the_job_whose_frames_it_encodes(
    page: Page, base_url: str, farm: FakeFarm
) -> None:
    page.goto(f"{base_url}/jobs/{RUNNING}?token={TOKEN}")
    expect(page.locator("#job-scene")).not_to_have_text("Job " + RUNNING)  # loaded
    expect(page.locator("#job-source-row")).to_be_hidden()  # a render
    job = farm.jobs[RUNNING]
    job.source, job.fps = "0123456789ab", 12
    page.reload()
    source = page.locator("#job-source")
    first, last = job.frames[0], job.frames[-1]
    expect(source).to_have_text(f"job 0123456789ab: frames {first}-{last} at 12 fps")
    expect(source).to_have_attribute("href", "/jobs/0123456789ab")


def test_a_packed_shot_shows_its_files_and_its_missing_file_warnings(
    page: Page, base_url: str, farm: FakeFarm
) -> None:
    page.goto(f"{base_url}/jobs/{RUNNING}?token={TOKEN}")
    expect(page.locator("#job-scene")).not_to_have_text("Job " + RUNNING)  # loaded
    expect(page.locator("#job-assets-row")).to_be_hidden()
    expect(page.locator("#job-asset-warnings")).to_be_hidden()
    farm.jobs[RUNNING].assets = {
        "files": 11,
        "bytes": 657_221,
        "warnings": ["missing when packed: /p/tex/<b>checker</b>.png"],
    }
    page.reload()
    expect(page.locator("#job-assets")).to_have_text("11 files, 657 kB")
    expect(page.locator("#job-asset-warnings li")).to_have_text(
        ["missing when packed: /p/tex/<b>checker</b>.png"]  # as text, never as markup
    )


def test_a_farm_of_mixed_blender_versions_is_flagged(
    page: Page, base_url: str, farm: FakeFarm
) -> None:
    farm.nodes[1]["blender_version"] = "3.6.5"
    farm.nodes[2]["blender_version"] = "2.93.0"  # lost: not part of the farm right now
    page.goto(f"{base_url}/?token={TOKEN}")
    expect(page.locator("#mixed-versions")).to_have_text(
        "Mixed Blender versions on the farm: 4.2.3 (1 node), 3.6.5 (1 node). "
        "Frames of one job may differ."
    )
