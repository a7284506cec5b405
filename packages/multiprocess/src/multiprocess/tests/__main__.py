"""``python -m multiprocess.tests``: run the installed package's self-test."""

import sys

from multiprocess.tests import main

if __name__ == "__main__":
    sys.exit(main())
