"""Transport adapters: what stands between the network and python-socketio.

`hardening` (the handshake gate, byte-counted frames, capped polling bodies), `protocol`
(Engine.IO behaving as the reference server), `fastpath` (the websocket loop and the cheap
prescan), `codec` (orjson for Socket.IO packets), `http` (plain HTTP routes beside Socket.IO)
and `patches` (the process-wide changes to hypercorn and python-engineio, installed once).
"""
