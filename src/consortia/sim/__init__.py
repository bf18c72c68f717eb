"""Deterministic simulation of a whole consortium: one seed, one reproducible run.

Never used by a running node; it drives the same consensus core the node drives.
"""

from consortia.sim.harness import Simulation, run
from consortia.sim.scenario import RunResult, Scenario

__all__ = ["RunResult", "Scenario", "Simulation", "run"]
