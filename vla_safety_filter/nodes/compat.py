"""Differences between the ROS 2 distributions we support (Jazzy, Kilted), kept in one place."""
from __future__ import annotations


def harden_change_state(node) -> None:
    """Make the lifecycle change_state service answer success=False on invalid transitions.

    Placeholder: filled in by the distro work (issue 10, defect 16).
    """
