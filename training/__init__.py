"""The run machinery, one topic a module: the training loop (``runner``) and episode collection (``collect``);
config to objects (``build``), the run entry of ``scripts/train.py`` (``cli``), resuming (``resume``), option
checks (``options``), HParams (``hparams``); checkpoints, metrics and TensorBoard, Ctrl-C handling (``signals``),
run dirs, data-parallel training over ``torch.distributed``; policy evaluation (``evaluate``) and video
(``video``); curves, the sweep summary, stopping a sweep as a whole (``sweep_stop``), the results report (``report``,
with its tables ``report_tables``, README's figures ``report_readme``, a run's committed results ``run_results``,
the FLOPs of its updates ``update_cost`` and the statistics across seeds ``statistics``) and the benchmark
(``benchmark``).

It sits above the replay core (``her``), ``envs`` and ``agents``, and below ``scripts/``, whose entry points parse
their arguments and call it; it imports nothing from the scripts.
"""
