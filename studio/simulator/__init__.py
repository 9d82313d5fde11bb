"""A stand-in RunAPI on loopback: routes, task state machine, faults and Pillow rendering.

Imports starlette, uvicorn, httpx (fetching source links) and Pillow; nothing else of ours.
"""

from studio.simulator.faults import Faults
from studio.simulator.routes import create_app
from studio.simulator.server import Simulator, serve
from studio.simulator.tasks import LatencyProfile, RecordedRequest, SimState, SimTask

__all__ = [
    "Faults",
    "LatencyProfile",
    "RecordedRequest",
    "SimState",
    "SimTask",
    "Simulator",
    "create_app",
    "serve",
]
