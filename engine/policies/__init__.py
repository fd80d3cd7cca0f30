"""Pure security decisions.

Nothing here performs I/O or imports socketio/anyio: every function takes the current time as
an argument, so the server adapter owns the clock and tests need no monkeypatching.
"""
