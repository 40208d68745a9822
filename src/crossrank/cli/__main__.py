import sys

from crossrank.cli import main

sys.exit(main())
