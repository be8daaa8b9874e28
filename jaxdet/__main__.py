import sys

from jaxdet.cli import main

sys.exit(main())
