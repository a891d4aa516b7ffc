"""Fidelity: the model held to the real kernel.

* :mod:`.executor`: runs traces on the real kernel, in disposable workers;
* :mod:`.differential`: runs a trace on the model and the kernel, finds the
  first divergence;
* :mod:`.conformance`: scenarios with expected results and layouts
  (``sealkit conform``);
* :mod:`.fuzz`: differential fuzzing (``sealkit fuzz``);
* :mod:`.replay`: a trace file step by step (``sealkit replay``);
* :mod:`.strategies`: Hypothesis strategies for ops and traces.
"""
