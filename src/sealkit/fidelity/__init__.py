"""Fidelity: the model held to the real kernel.

=====================  ========================================================
:mod:`.target`         the :class:`~.target.Target` interface every target
                       implements (the kernel, each model policy), the one
                       shape of a run (:class:`~.target.TraceRun`), and the
                       registry of targets by name
:mod:`.executor`       the ``kernel`` target: traces on the real kernel, in
                       disposable workers
:mod:`.differential`   two runs of a trace compared; the first divergence
:mod:`.conformance`    scenarios with expected results and layouts
                       (``sealkit conform``)
:mod:`.fuzz`           differential fuzzing (``sealkit fuzz``)
:mod:`.replay`         a trace file step by step (``sealkit replay``)
:mod:`.strategies`     Hypothesis strategies for ops and traces
=====================  ========================================================

Replay, the comparison, the conformance suite, the fuzzer and the analyzer's
``--replay`` run traces only through :mod:`.target`.
"""
