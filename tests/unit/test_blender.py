import sys
import types
from pathlib import Path

import pytest
from pydantic import ValidationError

from farm_common.errors import BadRequest
from farm_common.protocol import JobRequest, SampleRange, image_format
from render_node.blender import (
    DEVELOP_ONE,
    ErrorLine,
    FrameStarted,
    OutputParser,
    SampleProgress,
    Saved,
    build_command,
    frames_for_one_command,
    output_file,
    parse_version,
)
from render_node.scene_checks import FREESTYLE_CHECK, asset_check

FIXTURE = Path(__file__).parent.parent / "fixtures" / "blender-3.4-cycles-2frames.txt"
PNG = image_format("PNG")
EXR = image_format("OPEN_EXR")


@pytest.mark.parametrize(
    ("frames", "tail"),
    [
        ([1, 2, 3], ["-s", "1", "-e", "3", "-j", "1", "-a"]),
        ([7], ["-f", "7"]),
        ([1, 5, 6], ["-f", "1,5,6"]),
    ],
)
def test_build_command_puts_scene_first_output_next_render_args_last(
    frames: list[int], tail: list[str]
) -> None:
    cmd = build_command("/usr/bin/blender", Path("/s/a.blend"), Path("/d/out"), frames, PNG, 4)
    assert cmd == [
        "/usr/bin/blender",
        "-b",
        "/s/a.blend",
        "--disable-autoexec",
        "--python-expr",
        FREESTYLE_CHECK,
        "--python-expr",
        asset_check(allow_missing=False),
        "-o",
        "/d/out/frame_#####",
        "-F",
        "PNG",
        "-t",
        "4",
        *tail,
    ]


def test_build_command_always_disables_autoexec_and_passes_threads_zero() -> None:
    cmd = build_command("blender", Path("a.blend"), Path("o"), [1], image_format("exr"), 0)
    assert "--disable-autoexec" in cmd
    assert cmd[cmd.index("-t") + 1] == "0"
    assert cmd[cmd.index("-F") + 1] == "OPEN_EXR"


def test_build_command_checks_freestyle_after_the_scene_and_before_rendering() -> None:
    cmd = build_command("blender", Path("a.blend"), Path("o"), [1, 2], PNG, 0)
    expr = cmd.index("--python-expr")
    assert cmd.index("a.blend") < expr < cmd.index("-o") < cmd.index("-a")
    assert "use_freestyle" in cmd[expr + 1] and "--allow-freestyle" in cmd[expr + 1]


def test_build_command_with_freestyle_allowed_runs_only_the_asset_check() -> None:
    cmd = build_command("blender", Path("a.blend"), Path("o"), [1], PNG, 0, allow_freestyle=True)
    exprs = [cmd[i + 1] for i, arg in enumerate(cmd) if arg == "--python-expr"]
    assert exprs == [asset_check(allow_missing=False)]
    assert "--disable-autoexec" in cmd


def test_freestyle_check_is_valid_python() -> None:
    compile(FREESTYLE_CHECK, "<freestyle-check>", "exec")


@pytest.mark.parametrize(
    ("name", "blender_name", "ext", "content_type"),
    [
        ("PNG", "PNG", ".png", "image/png"),
        ("png", "PNG", ".png", "image/png"),
        ("JPEG", "JPEG", ".jpg", "image/jpeg"),
        ("jpg", "JPEG", ".jpg", "image/jpeg"),
        ("OPEN_EXR", "OPEN_EXR", ".exr", "image/x-exr"),
        ("TIFF", "TIFF", ".tif", "image/tiff"),
        ("BMP", "BMP", ".bmp", "image/bmp"),
    ],
)
def test_image_format_maps_to_extension_and_content_type(
    name: str, blender_name: str, ext: str, content_type: str
) -> None:
    fmt = image_format(name)
    assert (fmt.name, fmt.extension, fmt.content_type) == (blender_name, ext, content_type)


@pytest.mark.parametrize("name", ["GIF", "", "PNG; rm -rf /", "FFMPEG"])
def test_image_format_refuses_unknown_names_with_the_list(name: str) -> None:
    with pytest.raises(BadRequest, match="use one of PNG"):
        image_format(name)


def test_output_file_matches_the_hash_pattern() -> None:
    assert output_file(Path("/o"), 7, PNG) == Path("/o/frame_00007.png")
    assert output_file(Path("/o"), 123456, image_format("JPEG")) == Path("/o/frame_123456.jpg")


@pytest.mark.parametrize(
    ("text", "version"),
    [
        ("Blender 3.4.1\n\tbuild date: x", "3.4.1"),
        ("Blender 4.2.0 LTS\n", "4.2.0"),
        ("Read prefs\nBlender 5.0\n", "5.0"),
        ("garbage", None),
    ],
)
def test_parse_version_reads_first_blender_line(text: str, version: str | None) -> None:
    assert parse_version(text) == version


def feed_all(lines: list[str]) -> list[object]:
    parser = OutputParser()
    events: list[object] = []
    for line in lines:
        events.extend(parser.feed(line))
    return events


STATUS = (
    "Fra:{f} Mem:9.67M (Peak 10.30M) | Time:00:00.04 | Mem:0.76M, Peak:0.76M | Scene, ViewLayer"
)


@pytest.mark.parametrize(
    ("lines", "events"),
    [
        pytest.param(
            [STATUS.format(f=3) + " | Synchronizing object | Cube"],
            [FrameStarted(3)],
            id="fra-starts-frame",
        ),
        pytest.param(
            [STATUS.format(f=3) + " | Sample 4/16", STATUS.format(f=3) + " | Sample 5/16"],
            [FrameStarted(3), SampleProgress(3, 4, 16), SampleProgress(3, 5, 16)],
            id="samples",
        ),
        pytest.param(
            [STATUS.format(f=2) + " | Rendering 12 / 64 samples"],
            [FrameStarted(2), SampleProgress(2, 12, 64)],
            id="eevee-samples",
        ),
        pytest.param(
            [STATUS.format(f=1), "Saved: '/o/frame_00001.png'", " Time: 00:00.80 (Saving: 0)"],
            [FrameStarted(1), Saved(1, "/o/frame_00001.png")],
            id="saved-quoted-3x",
        ),
        pytest.param(
            [
                STATUS.format(f=2),
                "Saved: /o/my dir/frame_00002.png Time: 00:00.10 (Saving: 00:00.00)",
            ],
            [FrameStarted(2), Saved(2, "/o/my dir/frame_00002.png")],
            id="saved-unquoted-old",
        ),
        pytest.param(
            [
                "12:00:01.123  render | " + STATUS.format(f=4) + " | Sample 1/8",
                "render | Saved: '/o/frame_00004.png'",
            ],
            [FrameStarted(4), SampleProgress(4, 1, 8), Saved(4, "/o/frame_00004.png")],
            id="blender-5-render-prefix",
        ),
        pytest.param(
            [
                STATUS.format(f=5) + " | Sample 2/16",
                "Error: CUDA error: Out of memory in cuMemAlloc",
            ],
            [
                FrameStarted(5),
                SampleProgress(5, 2, 16),
                ErrorLine(5, "CUDA error: Out of memory in cuMemAlloc"),
            ],
            id="cuda-error-attached-to-frame",
        ),
        pytest.param(
            [STATUS.format(f=6) + " | Cancel | CUDA error: an illegal memory access"],
            [FrameStarted(6), ErrorLine(6, "CUDA error: an illegal memory access")],
            id="device-error-in-status",
        ),
        pytest.param(
            [STATUS.format(f=5), "Error: CUDA error: launch failed", "Saved: '/o/frame_00005.png'"],
            [
                FrameStarted(5),
                ErrorLine(5, "CUDA error: launch failed"),
                Saved(5, "/o/frame_00005.png"),
            ],
            id="error-then-saved-of-broken-frame",
        ),
        pytest.param(
            ["Error: Cannot read file '/x.blend': No such file or directory"],
            [ErrorLine(None, "Cannot read file '/x.blend': No such file or directory")],
            id="error-outside-a-frame",
        ),
        pytest.param(
            [STATUS.format(f=3), "Malloc returns null: len=2147483648 in imbuf, total 1024"],
            [
                FrameStarted(3),
                ErrorLine(
                    3, "out of memory (Malloc returns null: len=2147483648 in imbuf, total 1024)"
                ),
            ],
            id="allocator-out-of-memory",
        ),
        pytest.param(
            ["Warning: something", "Read blend: /x.blend", "", "Blender 3.4.1"],
            [],
            id="noise-ignored",
        ),
    ],
)
def test_parser_turns_lines_into_events(lines: list[str], events: list[object]) -> None:
    assert feed_all(lines) == events


def test_parser_reads_the_real_blender_34_fixture() -> None:
    lines = FIXTURE.read_text().splitlines()
    parser = OutputParser()
    events = [e for line in lines for e in parser.feed(line)]
    assert [e for e in events if isinstance(e, FrameStarted)] == [FrameStarted(1), FrameStarted(2)]
    assert [e for e in events if isinstance(e, Saved)] == [
        Saved(1, "/work/job/frame_00001.png"),
        Saved(2, "/work/job/frame_00002.png"),
    ]
    samples = [e for e in events if isinstance(e, SampleProgress)]
    assert SampleProgress(1, 16, 16) in samples and SampleProgress(2, 1, 16) in samples
    assert not [e for e in events if isinstance(e, ErrorLine)]
    assert parser.quit


def test_parser_after_saved_errors_belong_to_no_frame() -> None:
    parser = OutputParser()
    parser.feed(STATUS.format(f=1))
    parser.feed("Saved: '/o/frame_00001.png'")
    assert parser.feed("Error: Not freed memory blocks: 3") == [
        ErrorLine(None, "Not freed memory blocks: 3")
    ]
    assert parser.last_error == "Not freed memory blocks: 3"


def test_long_frame_lists_are_split_to_fit_a_command_line() -> None:
    scattered = [*range(1, 70_000, 7), 5]
    part = frames_for_one_command(scattered, limit=1000)
    assert part == scattered[: len(part)]
    assert len(",".join(map(str, part))) <= 1000
    assert len(",".join(map(str, scattered[: len(part) + 1]))) > 1000


def test_even_ranges_are_never_split() -> None:
    frames = list(range(1, 100_001))
    assert frames_for_one_command(frames, limit=100) == frames


def test_a_tile_renders_its_border_cropped_set_after_the_scene_opens(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import sys
    import types

    from farm_common.tiles import border

    region = border(3, 3, 1, 0)  # the top middle third: y from 2/3 to 1
    cmd = build_command("blender", Path("a.blend"), Path("o"), [1], PNG, 0, border=region)
    exprs = [i + 1 for i, arg in enumerate(cmd) if arg == "--python-expr"]
    tile_expr = cmd[exprs[-1]]
    assert cmd.index("a.blend") < exprs[-1] < cmd.index("-o")
    # Run it against a stand-in scene, its border set the other way round first.
    render = types.SimpleNamespace(
        use_border=False, use_crop_to_border=False,
        border_min_x=0.9, border_max_x=0.95, border_min_y=0.0, border_max_y=0.1,
    )  # fmt: skip
    scene = types.SimpleNamespace(render=render)
    monkeypatch.setitem(
        sys.modules, "bpy", types.SimpleNamespace(context=types.SimpleNamespace(scene=scene))
    )
    exec(tile_expr, {})
    assert (render.border_min_x, render.border_max_x) == (1 / 3, 2 / 3)
    assert (render.border_min_y, render.border_max_y) == (2 / 3, 1.0)
    assert render.use_border and render.use_crop_to_border
    # Without a tile, no border is touched.
    plain = build_command("blender", Path("a.blend"), Path("o"), [1], PNG, 0)
    assert not any("border" in arg for arg in plain)


def _run_samples_expr(
    monkeypatch: pytest.MonkeyPatch, engine: str, **cycles: object
) -> types.SimpleNamespace:
    """The command's sample range (4 of 16 from 12 on), run against a stand-in scene whose
    Cycles settings also have `cycles`; returns the scene."""
    cmd = build_command("blender", Path("a.blend"), Path("o"), [1], EXR, 0, samples=(12, 4, 16))
    exprs = [i + 1 for i, arg in enumerate(cmd) if arg == "--python-expr"]
    assert cmd.index("a.blend") < exprs[-1] < cmd.index("-o")
    layers = [types.SimpleNamespace(cycles=types.SimpleNamespace(use_denoising=True))] * 2
    scene = types.SimpleNamespace(
        render=types.SimpleNamespace(
            engine=engine,
            image_settings=types.SimpleNamespace(
                file_format="PNG", color_depth="8", exr_codec="DWAA"
            ),
        ),
        cycles=types.SimpleNamespace(
            samples=128, sample_offset=0, use_adaptive_sampling=True, use_denoising=True, **cycles
        ),
        view_layers=layers,
    )
    bpy = types.SimpleNamespace(context=types.SimpleNamespace(scene=scene))
    monkeypatch.setitem(sys.modules, "bpy", bpy)
    exec(cmd[exprs[-1]], {})
    return scene


def test_a_sample_part_renders_its_samples_alone_in_float_exr(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    scene = _run_samples_expr(monkeypatch, "CYCLES")  # Blender 3.x: samples from an offset
    cycles = scene.cycles
    assert (cycles.samples, cycles.sample_offset) == (4, 12)
    subset = _run_samples_expr(  # Blender 4.2 on: a subset of the total's sampling pattern
        monkeypatch, "CYCLES", use_sample_subset=False, sample_subset_length=2048
    ).cycles
    assert (subset.samples, subset.use_sample_subset) == (16, True)
    assert (subset.sample_offset, subset.sample_subset_length) == (12, 4)
    assert not cycles.use_adaptive_sampling and not cycles.use_denoising
    assert not any(layer.cycles.use_denoising for layer in scene.view_layers)
    f = scene.render.image_settings
    assert (f.file_format, f.color_depth, f.exr_codec) == ("OPEN_EXR", "32", "ZIP")


def test_a_sample_part_of_a_scene_not_on_cycles_stops_blender_saying_why(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stopped:
        _run_samples_expr(monkeypatch, "BLENDER_EEVEE")
    assert stopped.value.code == 1
    assert "Error: a sample split renders with Cycles" in capsys.readouterr().out


def test_a_sample_part_is_asked_for_as_exr() -> None:
    body = {"scene": "a.blend", "frames": "1", "samples": {"start": 0, "count": 8, "total": 16}}
    asked = JobRequest(**body, format="OPEN_EXR").samples
    assert asked == SampleRange(start=0, count=8, total=16)
    with pytest.raises(ValidationError, match="rendered as format OPEN_EXR"):
        JobRequest(**body, format="PNG")
    with pytest.raises(ValidationError):
        JobRequest(**{**body, "samples": {"start": 0, "count": 0, "total": 16}}, format="EXR")
    with pytest.raises(ValidationError, match="samples 12 to 19 are past the frame's 16"):
        SampleRange(start=12, count=8, total=16)


class _Image:
    def __init__(self, path: str, saved: list[tuple[str, str, object]]) -> None:
        self.path, self.saved = path, saved
        self.colorspace_settings = types.SimpleNamespace(name="sRGB")

    def save_render(self, path: str, scene: object = None) -> None:
        if "broken" in self.path:
            raise RuntimeError("Error: Cannot read image")
        self.saved.append((self.path, path, (self.colorspace_settings.name, scene)))


def _develop_in_stand_in(
    monkeypatch: pytest.MonkeyPatch, images: dict[int, Path], version: tuple[int, int, int]
) -> tuple[list[str], list[tuple[str, str, object]], list[int]]:
    """The develop command run against a stand-in Blender; returns (its command, what it
    saved: (source, target, (colour space, scene)), the frames it was set to)."""
    cmd = build_command("blender", Path("a.blend"), Path("/o"), sorted(images), PNG, 0,
                        develop=images)  # fmt: skip
    saved: list[tuple[str, str, object]] = []
    frames: list[int] = []
    scene = types.SimpleNamespace(
        frame_set=frames.append,
        render=types.SimpleNamespace(frame_path=lambda frame: f"/o/frame_{frame:05d}.png"),
    )
    removed: list[object] = []
    data = types.SimpleNamespace(
        images=types.SimpleNamespace(load=lambda p: _Image(p, saved), remove=removed.append)
    )
    bpy = types.SimpleNamespace(
        context=types.SimpleNamespace(scene=scene), data=data,
        app=types.SimpleNamespace(version=version),
    )  # fmt: skip
    monkeypatch.setitem(sys.modules, "bpy", bpy)
    exec(cmd[-1], {})
    assert len(removed) == len(saved)  # every image it loaded is let go
    return cmd, saved, frames


def test_developing_saves_each_image_as_the_scene_saves_its_frame(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    images = {3: Path("/store/ab/merged3"), 1: Path("/store/cd/broken1")}
    cmd, saved, frames = _develop_in_stand_in(monkeypatch, images, (5, 0, 1))
    # No render arguments and none of the render checks: the script is the last argument.
    assert cmd[:4] == ["blender", "-b", "a.blend", "--disable-autoexec"]
    assert cmd[cmd.index("-o") + 1] == "/o/frame_#####" and cmd[-2] == "--python-expr"
    assert "-f" not in cmd and "-a" not in cmd and FREESTYLE_CHECK not in cmd
    assert frames == [1, 3]  # each at its frame (animated exposure, say)
    ((source, target, (space, _)),) = saved
    assert (source, target, space) == ("/store/ab/merged3", "/o/frame_00003.png", "Linear Rec.709")
    parser = OutputParser()
    events = [e for line in capsys.readouterr().out.splitlines() for e in parser.feed(line)]
    assert events == [
        FrameStarted(1), ErrorLine(1, "cannot develop frame 1: Error: Cannot read image"),
        FrameStarted(3), Saved(3, "/o/frame_00003.png"),
    ]  # fmt: skip
    _, saved, _ = _develop_in_stand_in(monkeypatch, {2: Path("/s/m")}, (3, 4, 1))
    assert saved[0][2][0] == "Linear"  # Blender 3's name for it
    assert "save_render(path, scene=s)" in DEVELOP_ONE


def test_develop_names_an_image_for_each_frame_and_nothing_else() -> None:
    with pytest.raises(ValueError, match="develop images for frames"):
        build_command("blender", Path("a.blend"), Path("o"), [1, 2], PNG, 0,
                      develop={1: Path("m")})  # fmt: skip
    sha = "a" * 64
    assert JobRequest(scene="a.blend", frames="1", develop={"1": sha}).develop == {1: sha}
    with pytest.raises(ValidationError, match="no `tile` or `samples`"):
        JobRequest(scene="a.blend", frames="1", develop={1: sha}, format="OPEN_EXR",
                   samples={"start": 0, "count": 1, "total": 2})  # fmt: skip
    with pytest.raises(ValidationError, match="sha256"):
        JobRequest(scene="a.blend", frames="1", develop={1: "../etc/passwd"})
