"""Helpers shared by several test folders (importable as ``_support``: pyproject puts
``tests`` on the path)."""
