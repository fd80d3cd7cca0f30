"""The process-wide transport patches check the libraries they change before installing."""

from __future__ import annotations

import pytest


def test_transport_patches_refuse_a_library_of_another_shape(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An upgrade that moves what the patches replace fails at start with the reason."""
    from hypercorn.protocol import ws_stream

    from engine.transport import patches

    monkeypatch.delattr(ws_stream.Handshake, "accept")
    with pytest.raises(patches.IncompatibleLibrary, match=r"Handshake\.accept is gone"):
        patches.check_shapes()


def test_transport_patches_accept_the_pinned_libraries() -> None:
    from engine.transport import patches

    patches.check_shapes()
