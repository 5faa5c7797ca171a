"""What tests share: modules they import (``helpers.<module>``), and scripts and a Hydra callback they run in
subprocesses (``full_disk_train.py``, ``hold_train.py``, ``job_process.py``). Test modules import nothing from
each other (tests/test_layers.py checks it)."""
