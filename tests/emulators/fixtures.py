"""Fixtures: a real small MP4 for the emulators to serve, and factories for emulators."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from kensa_gql.adapters.providers.render import render_video
from tests.emulators.ark import ArkEmulator
from tests.emulators.common import Emulator
from tests.emulators.dashscope import DashScopeEmulator
from tests.emulators.evolink import EvolinkEmulator
from tests.emulators.gemini import GeminiEmulator
from tests.emulators.openai import OpenAIEmulator

KEYS = {
    "evolink": "sk-evo-test-Zq81mX0aLr5wT2",
    "openai": "sk-proj-test-Hh3kPq9Vz7Lm0n",
    "gemini": "AIzaSyTest-Gm5Rk2Wq8Xv0Yb3Nc",
    "dashscope": "sk-ds-test-7fJ2kL9pQ4rS1t",
    "ark": "ark-test-4e8b1c9d-0a2f-Ark",
}
EMULATORS: dict[str, type[Emulator]] = {
    "evolink": EvolinkEmulator, "openai": OpenAIEmulator, "gemini": GeminiEmulator,
    "dashscope": DashScopeEmulator, "ark": ArkEmulator,
}


@pytest.fixture(scope="session")
def sample_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real, small H.264 MP4: what every emulator hands out as the finished video."""
    path = tmp_path_factory.mktemp("vendor-media") / "result.mp4"
    render_video(str(path), "emulated vendor result", 1, "480p", "16:9", fps=6)
    return path


@pytest.fixture(scope="session")
def sample_bytes(sample_video: Path) -> bytes:
    return sample_video.read_bytes()


@pytest.fixture
def emulator_for(sample_video: Path) -> Iterator[object]:
    def make(vendor: str) -> Emulator:
        return EMULATORS[vendor](key=KEYS[vendor], video=sample_video)

    yield make
