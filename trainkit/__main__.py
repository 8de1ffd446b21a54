"""``python -m trainkit``: the ``trainkit`` command line, for an environment whose scripts are not on PATH."""

from trainkit.cli import main

if __name__ == "__main__":
    main()
