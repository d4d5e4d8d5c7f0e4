"""One module per array library; each exposes ``backend``, a :class:`~._base.Backend`.

Modules here are imported lazily by :mod:`subpixel._dispatch`, on the first
array of their library.
"""
