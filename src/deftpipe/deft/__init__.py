"""Phase 2, the DEFT loop: one module per stage (pure over tables) plus the driver in loop.py."""
