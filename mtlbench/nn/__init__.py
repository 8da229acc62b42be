"""How every method runs: the ``MTLMethod`` contract (``method``), the layer plan a backbone spec expands to
(``layer_plan``), backbones and stems, per-task towers, kernel sharing and tensor factorisations, and the helpers
methods share (``method_helpers``). The methods themselves live in ``mtlbench.methods``, one file each."""
