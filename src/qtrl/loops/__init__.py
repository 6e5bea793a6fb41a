"""The training loops: N agents (processes, one QPU each) and one algorithm.

:mod:`qtrl.loops.sync` averages every update's gradients over all agents;
:mod:`qtrl.loops.asynchronous` has workers push gradients to a learner. Both
call the algorithm through its seam (:mod:`qtrl.algos`) without knowing which
it is, and keep their books with :mod:`qtrl.run`.
"""
