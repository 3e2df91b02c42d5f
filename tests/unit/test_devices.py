"""Slots and devices: `--device` / `--gpus` against what Cycles finds; the engine named by
`--blender`; which free slot a job takes."""

from __future__ import annotations

import asyncio
import importlib.util
import re
import sys
from types import SimpleNamespace

import pytest

from render_node.devices import DeviceError, describe, kind, plan_slots
from render_node.engine import parse_engine
from render_node.slots import SlotPool

CUDA = [
    {"type": "CUDA", "id": "CUDA_0", "name": "RTX A"},
    {"type": "CUDA", "id": "CUDA_1", "name": "RTX B"},
]
OPTIX = [{"type": "OPTIX", "id": "OPTIX_0", "name": "RTX A"}]


def test_cpu_and_auto_without_a_gpu_render_on_the_cpu() -> None:
    assert plan_slots("cpu", [], CUDA, 2) == [None, None]
    assert plan_slots("auto", [], [], 3) == [None, None, None]
    assert kind(plan_slots("auto", [], [], 1)) == "cpu"


def test_auto_takes_the_first_gpu_type_found_for_every_slot() -> None:
    plan = plan_slots("auto", [], CUDA + OPTIX, 2)
    assert plan == [{"type": "OPTIX", "ids": [], "names": ["RTX A"]}] * 2
    assert describe(plan[0]) == "OPTIX: RTX A" and kind(plan) == "gpu"


def test_gpus_give_a_slot_bound_to_each() -> None:
    plan = plan_slots("cuda", [1, 0], CUDA, 1)
    assert [d["ids"] for d in plan if d] == [["CUDA_1"], ["CUDA_0"]]
    assert [describe(d) for d in plan] == ["CUDA: RTX B", "CUDA: RTX A"]


@pytest.mark.parametrize(
    ("choice", "gpus", "found", "message"),
    [
        ("hip", [], CUDA, "no HIP device on this node (GPU types found: CUDA)"),
        ("cuda", [2], CUDA, "there is no CUDA GPU 2 here (2 found"),
        ("auto", [0], [], "Cycles finds no GPU"),
        ("cpu", [0], CUDA, "--gpus needs a GPU --device"),
    ],
)
def test_devices_that_are_not_there_are_named(
    choice: str, gpus: list[int], found: list[dict[str, str]], message: str
) -> None:
    with pytest.raises(DeviceError, match=re.escape(message)):
        plan_slots(choice, gpus, found, 1)  # type: ignore[arg-type]


def test_auto_is_bpy_when_it_is_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: object())
    assert parse_engine("auto").kind == "bpy"
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    assert parse_engine("auto").kind == "binary"


def test_the_engine_is_named_by_blender() -> None:
    assert parse_engine("bpy").kind == "bpy" and parse_engine("bpy").path == sys.executable
    other = parse_engine("bpy:/opt/py311/bin/python")
    assert (other.kind, other.path, other.warm) == ("bpy", "/opt/py311/bin/python", True)
    binary = parse_engine("/usr/bin/blender")
    assert (binary.kind, binary.warm, binary.version_command()[-1]) == (
        "binary",
        False,
        "--version",
    )


def worker(key: object, alive: bool = True) -> SimpleNamespace:
    return SimpleNamespace(key=key, alive=alive)


def test_a_job_takes_the_free_slot_warm_for_it_then_an_empty_one_then_the_longest_idle() -> None:
    async def main() -> None:
        clock = iter(range(100))
        pool = SlotPool.of([None] * 3, clock=lambda: float(next(clock)))
        slots = [await pool.acquire(None) for _ in range(3)]
        slots[0].worker, slots[1].worker = worker("job-a"), worker("job-b")
        for slot in (slots[1], slots[0], slots[2]):  # freed in this order
            await pool.release(slot)
        assert pool.choose("job-a") is slots[0]
        assert pool.choose("job-c") is slots[2]  # no worker to stop there
        taken = await pool.acquire("job-c")
        assert pool.choose("job-d") is slots[1]  # idle longest of those with a worker
        slots[0].worker = worker("job-a", alive=False)  # a dead worker is warm for nobody
        assert pool.choose("job-a") is slots[0]
        assert pool.busy == 1 and taken is slots[2]

    asyncio.run(main())


def test_take_idle_takes_only_workers_idle_long_enough() -> None:
    async def main() -> None:
        now = [0.0]
        pool = SlotPool.of([None, None], clock=lambda: now[0])
        a, b = await pool.acquire(None), await pool.acquire(None)
        a.worker = worker("x")
        await pool.release(a)
        await pool.release(b)
        now[0] = 5.0
        assert pool.take_idle(10) == []
        now[0] = 11.0
        assert pool.take_idle(10) == [a] and pool.busy == 1

    asyncio.run(main())
