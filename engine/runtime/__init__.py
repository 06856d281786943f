"""Stage 3, running a ``Graph``: compiled once into a plan of steps over slots, then run
forward and backward on an array namespace, with feeds checked and defaults made."""
