"""A run's bookkeeping: its directory and checkpoints, named seed streams,
metric recording and the callbacks a run calls.

Nothing here trains: the loops (:mod:`qtrl.loops`) use these pieces, the same
ones in sync and async mode. This file imports nothing, so that lower layers
(the environments' reset streams) can use :mod:`qtrl.run.seeds` without
pulling in the rest.
"""
