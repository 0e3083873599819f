"""vla_safety_filter: make a VLA policy's actions executable and checked before they reach the arm."""

__version__ = '0.1.0'
