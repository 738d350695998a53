import sys

from asap.cli.main import main

sys.exit(main())
