"""`voxd test`: conversation test suites for agents (YAML next to the agents), run as
calls through the real session and engines, or as text conversations with ``--text``.

A composition root like ``voxd.harness``: it builds call managers and engines itself.
"""
