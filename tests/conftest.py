"""The backends under test come from ``SUBPIXEL_TEST_BACKENDS`` (comma-separated,
default ``numpy``).  An unknown or uninstallable name fails the run at once:
a backend that was asked for is never skipped silently.
"""

from __future__ import annotations

import os

import pytest

from adapters import ADAPTERS, GPUUnavailable, check_installed, devices_for, requested_backends

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def pytest_configure(config):
    config.addinivalue_line("markers", "framework(name): test needs that backend requested")
    for name in requested_backends():
        try:
            check_installed(name)
        except Exception as exc:
            raise pytest.UsageError(
                f"SUBPIXEL_TEST_BACKENDS asks for {name!r}, which cannot be used: {exc!r}"
            ) from exc


def _adapter_params():
    params = []
    for name in requested_backends():
        for device in devices_for(name):
            params.append(pytest.param((name, device), id=f"{name}-{device}"))
    return params


_adapters: dict = {}


@pytest.fixture(params=_adapter_params(), scope="session")
def adapter(request):
    """An :class:`adapters.Adapter` for every requested backend and device."""
    key = request.param
    if key not in _adapters:
        try:
            _adapters[key] = ADAPTERS[key[0]](key[1])
        except GPUUnavailable as exc:
            _adapters[key] = exc
    if isinstance(_adapters[key], GPUUnavailable):
        pytest.skip(f"needs a GPU: {_adapters[key]}")
    return _adapters[key]


def pytest_runtest_setup(item):
    for mark in item.iter_markers("framework"):
        if mark.args[0] not in requested_backends():
            pytest.skip(f"{mark.args[0]} is not in SUBPIXEL_TEST_BACKENDS")
