"""Where and how trials run: the trainer behind ``train_on_gpu``, the trial backends (the fork
server's workers, in-process, Ray), each trial's resources, define-by-run objectives, and the
session's clock (real, or the virtual clock that simulates a table's training times).
"""
