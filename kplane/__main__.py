import sys

from kplane.cli import main

sys.exit(main())
