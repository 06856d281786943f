"""``python -m engine ...``."""

from engine.cli import entry

if __name__ == "__main__":  # not again in a Dask worker process that spawn starts from here
    entry()
