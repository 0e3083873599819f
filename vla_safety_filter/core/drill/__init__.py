"""Closed-loop drills: a gymnasium world, a policy in the loop, paired conditions and measures."""
